"""How many threads fixate-rt computes with, and how they wait: chosen for a shared machine, not an idle one.

Production simulators share cores (other services, Ray actors, CI). Two defaults hurt there:
- thread counts taken from the machine's core count, while the process may run on fewer CPUs (an affinity mask,
  a container's CPU quota): threads then queue behind each other;
- OpenMP's spinning wait (torch's and the C++ module's GNU OpenMP pools): an idle thread spins for 300,000
  iterations before it sleeps, fighting every other process for its core.

Measured (benchmarks/bench_contended.py, tiny model, batch 8, 2 cores, one kept busy by another process), per pair:
OpenMP's default wait 77–120 ms, a spin of 10,000 iterations 24 ms, a passive wait 14 ms, one thread 13 ms; idle:
default 8.3 ms, spin 10,000 8.2 ms, passive 11.3 ms, one thread 12.8 ms. No one setting is best in both, so the CLI
bounds the spin (``GOMP_SPINCOUNT=10000``, unless the user set ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT``; it must
be set before the OpenMP runtime starts, hence in `fixate_rt.cli` before torch is imported) and `simulate` picks
all threads or one batch by batch from measured speed (`AdaptiveThreads`: 13.6 ms loaded, 8.4 ms idle). Every
command sizes its thread pools from the CPUs this process may really use
(`usable_cpus`), or from ``--threads``; run.json records the choice.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from contextlib import contextmanager
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


class AdaptiveThreads:
    """Chooses, batch by batch, between all usable CPUs and one thread, by the time per pair it measures.

    Why: no static setting is best both on an idle machine (all threads: ~1.6× faster than one) and on a shared
    one (one thread: several times faster than threads that queue behind a busy core), and the load of a shared
    host changes during a run. Batch 0 warms up on ``many`` threads (not timed: lazy initialisation); batches 1–4
    alternate ``many`` and one thread (each keeps the lower of its two, so one slow batch misleads nothing); from
    then on every batch runs the faster, except every
    ``explore_every``-th, which re-measures the other so that a change of load is noticed within that many
    batches. The incumbent's estimate is an exponential moving average (``alpha``); the other's is its latest
    measurement. Only torch's pool (and the C++ module's, which shares its OpenMP runtime) is resized.
    """

    INITIAL_ROUNDS = 2  # alternating measurements of each candidate before the first choice

    def __init__(self, many: int, *, explore_every: int = 32, alpha: float = 0.3,
                 clock: Callable[[], float] = time.perf_counter, set_threads: Callable[[int], None] | None = None):
        if many < 2:
            raise ValueError(f"adaptive threads need at least 2 CPUs to choose from, got {many}")
        self.candidates = (many, 1)
        self.explore_every, self.alpha, self.clock = explore_every, alpha, clock
        self._set = set_threads or _set_torch_threads
        self.estimate: dict[int, float] = {}  # seconds per pair, per thread count
        self.batches = {many: 0, 1: 0}
        self.switches, self._index, self._current = 0, 0, None

    def best(self) -> int:
        """The thread count with the lower estimate (``many`` until both are measured)."""
        if len(self.estimate) < 2:
            return self.candidates[0]
        return min(self.candidates, key=lambda c: self.estimate[c])

    def _next(self) -> tuple[int, bool]:
        """(threads for the next batch, whether its time is recorded)."""
        i = self._index
        if i == 0:
            return self.candidates[0], False
        if i <= 2 * self.INITIAL_ROUNDS:
            return self.candidates[(i - 1) % 2], True
        best = self.best()
        if i % self.explore_every == 0:
            return self.candidates[1] if best == self.candidates[0] else self.candidates[0], True
        return best, True

    @contextmanager
    def batch(self, pairs: int):
        """Run one batch of ``pairs`` (user, slate) pairs on the chosen thread count, and time it."""
        threads, recorded = self._next()
        if threads != self._current:
            self._set(threads)
            self.switches += self._current is not None
            self._current = threads
        start = self.clock()
        yield threads
        per_pair = (self.clock() - start) / max(1, pairs)
        self._index += 1
        self.batches[threads] += 1
        if not recorded:
            return
        previous = self.estimate.get(threads)
        if previous is None or self._index <= 1 + 2 * self.INITIAL_ROUNDS:
            self.estimate[threads] = per_pair if previous is None else min(previous, per_pair)  # one slow start
        elif threads == self.best():
            self.estimate[threads] = self.alpha * per_pair + (1 - self.alpha) * previous
        else:
            self.estimate[threads] = per_pair  # re-measured after a while: the old figure is stale

    def summary(self) -> dict:
        """What run.json records: the candidates, batches run on each, switches and the last estimates."""
        return {"mode": "adaptive", "candidates": list(self.candidates), "explore_every": self.explore_every,
                "batches": {str(k): v for k, v in self.batches.items()}, "switches": self.switches,
                "ms_per_pair": {str(k): round(1000 * v, 3) for k, v in self.estimate.items()},
                "final": self.best()}


def _set_torch_threads(count: int) -> None:
    import torch

    torch.set_num_threads(count)
