"""The one harness of every benchmark here: timings as the median of repeated (interleaved) runs with their
spread, and one result schema, so `scripts/readme_figures.py` reads every result the same way.

Each benchmark keeps its own question and rows; the harness gives it:
- `repeat` / `interleaved`: repeated runs; interleaved rounds run every candidate once per round, in an order
  rotated round by round, so the drift of a shared machine falls on all candidates alike;
- `spread_ms` (median with min–max), `ratio` (by medians) and `paired_ratios` (round by round: median and
  quartiles of candidate / baseline, which cancels most of that drift);
- `environment`: the device, machine and versions a result was measured with;
- `write_result` / `load_result`: the schema ``fixate-rt/benchmark/1``:

      {"schema": "fixate-rt/benchmark/1",
       "question": "what this benchmark answers",
       "meta": {"command": "python benchmarks/...", "date": "YYYY-MM-DD", "environment": {...}, ...settings},
       "rows": [ {...}, ... ],            # one per measured configuration
       ...                                # the benchmark's own summary keys (ratios, agreement, ...)}

Scripts run as ``python benchmarks/<script>.py``, which puts this folder on the path: ``from harness import …``.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

SCHEMA = "fixate-rt/benchmark/1"
RESULTS = Path(__file__).resolve().parent / "results"


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


def interleaved(candidates: dict[str, Callable[[], object]], rounds: int, warmup: int = 1) -> dict[str, list[float]]:
    """Seconds per call of every candidate, ``rounds`` times each: round r runs them all once, starting at the
    r-th (rotated), after ``warmup`` untimed calls of each."""
    names = list(candidates)
    for name in names:
        for _ in range(warmup):
            candidates[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            t0 = time.perf_counter()
            candidates[name]()
            times[name].append(time.perf_counter() - t0)
    return times


def ratio(baseline: dict, candidate: dict) -> float:
    """How many times faster ``candidate`` is than ``baseline``, by medians."""
    return round(baseline["ms_median"] / candidate["ms_median"], 3)


def paired_ratios(numerator: list[float], denominator: list[float]) -> dict:
    """Round-by-round ratios of two interleaved candidates: median and quartiles."""
    ratios = sorted(n / d for n, d in zip(numerator, denominator, strict=True))
    q1, _, q3 = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else (ratios[0],) * 3
    return {"median": round(statistics.median(ratios), 3), "q1": round(q1, 3), "q3": round(q3, 3), "rounds": len(ratios)}


def environment(device: str = "cpu") -> dict:
    """Where and with what a result was measured: device, machine, usable CPUs and the relevant versions."""
    import importlib.metadata as md

    versions = {}
    for package in ("fixate-rt", "torch", "transformers", "numpy", "onnxruntime", "ray", "triton"):
        try:
            versions[package] = md.version(package)
        except md.PackageNotFoundError:
            pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"device": device, "machine": platform.machine(), "platform": platform.platform(),
            "cpus_usable": usable, "python": platform.python_version(), "versions": versions}


def new_result(question: str, command: str, rows: list[dict], *, device: str = "cpu", settings: dict | None = None,
           **summary) -> dict:
    """A result in the schema, measured now (``settings``: the benchmark's own parameters)."""
    meta = {"command": command, "date": datetime.date.today().isoformat(), "environment": environment(device),
            **(settings or {})}
    return check({"schema": SCHEMA, "question": question, "meta": meta, "rows": rows, **summary})


def check(payload: dict, source: object = "result") -> dict:
    """The schema's required keys, or a ValueError naming the first one missing."""
    if payload.get("schema") != SCHEMA:
        raise ValueError(f"{source}: schema is {payload.get('schema')!r}, not {SCHEMA}")
    for key in ("question", "meta", "rows"):
        if key not in payload:
            raise ValueError(f"{source}: missing '{key}'")
    for key in ("command", "date", "environment"):
        if key not in payload["meta"]:
            raise ValueError(f"{source}: missing 'meta.{key}'")
    if not isinstance(payload["rows"], list):
        raise ValueError(f"{source}: 'rows' is not a list")
    return payload


def write_result(name: str, payload: dict) -> Path:
    """Write ``results/<name>.json`` (checked against the schema); returns its path."""
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(check(payload, path), indent=2, default=str) + "\n")
    return path


def load_result(name: str) -> dict:
    """``results/<name>.json``, checked against the schema."""
    path = RESULTS / (name if name.endswith(".json") else f"{name}.json")
    return check(json.loads(path.read_text()), path)
