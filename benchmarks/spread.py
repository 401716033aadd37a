"""The one way every benchmark here reports a timing: the median of repeated runs with its spread.

On a shared machine one run can differ from the next by up to 2×, so a single figure says little; the median
with the min–max of the repetitions says how far to trust it. Scripts import this as ``from spread import …``
(they run as ``python benchmarks/<script>.py``, which puts this folder on the path).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def spread_ms(seconds: list[float], per: int = 1) -> dict:
    """``{"ms_median", "ms_min", "ms_max", "reps"}`` of timings in seconds, each divided by ``per`` (e.g. the
    pairs in a batch, for a per-pair figure)."""
    if not seconds:
        raise ValueError("no timings")
    ms = [1000 * s / per for s in seconds]
    return {"ms_median": round(statistics.median(ms), 3), "ms_min": round(min(ms), 3), "ms_max": round(max(ms), 3),
            "reps": len(ms)}


def repeat(fn: Callable[[], object], reps: int, warmup: int = 1) -> list[float]:
    """Seconds of ``reps`` calls of ``fn`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def ratio(baseline: dict, candidate: dict) -> float:
    """How many times faster ``candidate`` is than ``baseline``, by medians."""
    return round(baseline["ms_median"] / candidate["ms_median"], 3)
