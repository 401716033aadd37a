"""`fixate-rt compare` at scale: two runs of 10,000 users on 5 slates of 15 items (planted click shares),
compared end to end (read, pair, per-user shares, 2,000 paired bootstrap resamples, Wilcoxon, report files).

    python benchmarks/bench_compare.py [--users 10000] [--slates 5] [--resamples 2000] [--reps 3]
Prints the wall time of each step (median and min–max of the repetitions); writes
benchmarks/results/bench_compare.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from harness import new_result, spread_ms, write_result

ROOT = Path(__file__).resolve().parents[1]
QUESTION = ("How long does `fixate-rt compare` take on two runs of this size (bootstrap intervals included), "
            "and writing its report?")


def planted_run(folder: Path, users: int, slates: int, shift: float, seed: int) -> None:
    """One click per (user, slate); item k of a slate at position k, with shares tilted by ``shift``."""
    rng = np.random.default_rng(seed)
    logits = -0.2 * np.arange(15) + shift * (np.arange(15) % 3 == 0)
    p = np.exp(logits) / np.exp(logits).sum()
    n = users * slates
    clicks = rng.choice(15, size=n, p=p)
    labels = np.array([chr(ord("A") + k) for k in range(15)])
    folder.mkdir(parents=True)
    pq.write_table(pa.table({
        "user_id": np.repeat([f"u{i:05d}" for i in range(users)], slates),
        "slate_id": np.tile([f"s{j}" for j in range(slates)], users),
        "click_slot": pa.array(clicks, pa.int32()), "click_label": labels[clicks],
        "p_click": pa.array([p.tolist()] * n, pa.list_(pa.float32())),
        "slot_relevance": pa.array([np.full(15, 1 / 15).tolist()] * n, pa.list_(pa.float32())),
    }), folder / "simulations.parquet")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=10_000)
    ap.add_argument("--slates", type=int, default=5)
    ap.add_argument("--resamples", type=int, default=2000)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()

    from fixate_rt.experiments.compare import compare_runs
    from fixate_rt.experiments.reports import write_compare

    work = Path(tempfile.mkdtemp(prefix="bench-compare-"))
    planted_run(work / "a", args.users, args.slates, 0.0, 1)
    planted_run(work / "b", args.users, args.slates, 0.5, 2)
    compare_s, report_s = [], []
    for rep in range(args.reps):
        t0 = time.perf_counter()
        result = compare_runs(work / "a", work / "b", resamples=args.resamples)
        t1 = time.perf_counter()
        write_compare(work / f"cmp{rep}", result)
        compare_s.append(t1 - t0)
        report_s.append(time.perf_counter() - t1)
    shutil.rmtree(work, ignore_errors=True)
    row = {"users": args.users, "slates": args.slates, "rows_per_run": args.users * args.slates,
           "items": len(result["per_item"]), "resamples": args.resamples, "compare": spread_ms(compare_s),
           "write_report": spread_ms(report_s)}
    payload = new_result(QUESTION, "python benchmarks/bench_compare.py", [row])
    write_result("bench_compare", payload)
    print(json.dumps(payload["rows"]))


if __name__ == "__main__":
    main()
