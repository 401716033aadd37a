"""How many threads fixate-rt computes with, and how they wait: chosen for a shared machine, not an idle one.

Production simulators share cores (other services, Ray actors, CI). Two defaults hurt there:
- thread counts taken from the machine's core count, while the process may run on fewer CPUs (an affinity mask,
  a container's CPU quota): threads then queue behind each other;
- OpenMP's spinning wait (torch's and the C++ module's GNU OpenMP pools): an idle thread spins for 300,000
  iterations before it sleeps, fighting every other process for its core.

Measured (benchmarks/bench_contended.py, tiny model, batch 8, 2 cores, one kept busy by another process), per pair:
OpenMP's default wait 75–77 ms, a passive wait 14 ms, one thread 13–15 ms, a spin of 10,000 iterations 24 ms; idle:
default 8.7 ms, spin 10,000 8.3–9.3 ms, passive 12.5–13 ms. No one setting is best in both, so the CLI bounds the
spin (``GOMP_SPINCOUNT=10000``: idle speed kept, 3× faster than before under load) unless the user set
``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT``; on a host that is always shared, ``OMP_WAIT_POLICY=PASSIVE`` (or
``--threads 1``) is faster still. It must be set before the OpenMP runtime starts, hence in `fixate_rt.cli` before
torch is imported. Every command sizes its thread pools from the CPUs this process may really use
(`usable_cpus`), or from ``--threads``; run.json records the choice.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

WAIT_POLICY = "OMP_WAIT_POLICY"
SPIN_COUNT = "GOMP_SPINCOUNT"
BOUNDED_SPIN = "10000"


def _cgroup_quota() -> float | None:
    """CPUs allowed by the cgroup's CPU quota (v2 ``cpu.max`` or v1 ``cfs_quota_us``), None when unlimited."""
    try:
        text = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if text and text[0] != "max":
            return int(text[0]) / int(text[1])
    except (OSError, ValueError, IndexError):
        pass
    try:
        quota = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        if quota > 0 and period > 0:
            return quota / period
    except (OSError, ValueError):
        pass
    return None


def usable_cpus() -> int:
    """CPUs this process may run on: its affinity mask, capped by the cgroup CPU quota (rounded up), at least 1."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        count = os.cpu_count() or 1
    quota = _cgroup_quota()
    if quota is not None:
        count = min(count, max(1, math.ceil(quota)))
    return max(1, count)


def bound_spin_wait() -> None:
    """Bound OpenMP's spin before an idle thread sleeps, unless the user chose a wait (call before torch loads)."""
    if WAIT_POLICY not in os.environ:
        os.environ.setdefault(SPIN_COUNT, BOUNDED_SPIN)


def apply_threads(threads: int | None = None) -> dict:
    """Size torch's intra-op pool (and, through `chosen`, ONNX Runtime's) to ``threads`` or `usable_cpus`; returns
    what run.json records."""
    import torch

    global _CHOSEN
    count = threads if threads else usable_cpus()
    torch.set_num_threads(count)
    _CHOSEN = count
    return {"threads": count, "chosen_by": "--threads" if threads else "CPU affinity and cgroup quota",
            "omp_wait_policy": os.environ.get(WAIT_POLICY, "unset"), "gomp_spincount": os.environ.get(SPIN_COUNT,
                                                                                                    "unset")}


_CHOSEN: int | None = None


def chosen() -> int:
    """The thread count `apply_threads` set, else `usable_cpus`."""
    return _CHOSEN if _CHOSEN is not None else usable_cpus()
