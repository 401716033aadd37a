"""Ray Data engine vs the local engine, same process, same data: pairs/s and Ray's overhead per pair.

Runs, on synthetic data with the tiny model on CPU: the local engine (`Simulator.run`), then
`fixate_rt.distributed.simulate_dataset` on a local Ray cluster with 1 and 2 workers. Each Ray figure is a
whole job (actor start and model load included, as a user pays them), and also the job minus its actors'
start-up measured with an empty job, so the per-pair overhead of Ray is visible apart from fixed costs.
Results: benchmarks/results/ray_cpu.json.

    python benchmarks/bench_ray.py [--users 24] [--slates 10] [--reps 3]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from harness import new_result, write_result

QUESTION = "How do Ray Data runs (start-up and steady state) compare with the local engine on one machine?"

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=24)
    ap.add_argument("--slates", type=int, default=10)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import pyarrow as pa
    import ray

    from fixate_rt.data.join import load_inputs
    from fixate_rt.data.synth import SynthConfig, write_synth
    from fixate_rt.distributed import simulate_dataset
    from fixate_rt.simulate import Simulator
    from fixate_rt.versions import versions

    work = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    write_synth(work, SynthConfig(n_users=args.users, n_slates=args.slates, seed=0))
    data = load_inputs(users=work / "users.parquet", images=work / "slates")
    pairs = data.all_pairs()
    table = pa.table({"pair": pa.array(range(len(pairs)), pa.int64()), "user_id": [u for u, _ in pairs],
                      "slate_id": [s for _, s in pairs]})

    sim = Simulator("tiny-qwen3vl", device="cpu", batch_size=8)
    sim.run(data.users, data.slates, pairs[:8])  # warm-up
    local = []
    for _ in range(args.reps):
        t0 = time.perf_counter()
        sim.run(data.users, data.slates, pairs)
        local.append(time.perf_counter() - t0)

    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, configure_logging=False)
    rows = {"local": {"seconds_median": statistics.median(local), "runs": local}}

    def job(workers: int, n: int) -> float:
        ds = ray.data.from_arrow(table.slice(0, n))
        t0 = time.perf_counter()
        simulate_dataset(ds, images=work / "slates", users=work / "users.parquet", device="cpu", workers=workers,
                         batch_size=8).materialize()
        return time.perf_counter() - t0

    for workers in (1, 2):
        full = [job(workers, len(pairs)) for _ in range(args.reps)]
        fixed = [job(workers, workers) for _ in range(args.reps)]  # actors start, load, one pair each
        rows[f"ray_{workers}_workers"] = {"seconds_median": statistics.median(full), "runs": full,
                                          "fixed_cost_seconds_median": statistics.median(fixed)}
    ray.shutdown()
    n = len(pairs)
    for row in rows.values():
        row["pairs_per_s"] = round(n / row["seconds_median"], 2)
        if "fixed_cost_seconds_median" in row:
            steady = max(row["seconds_median"] - row["fixed_cost_seconds_median"], 1e-9)
            row["pairs_per_s_after_startup"] = round(n / steady, 2)
            row["overhead_ms_per_pair_vs_local"] = round(1000 * (steady - rows["local"]["seconds_median"]) / n, 3)
    ratios = {f"{k}_vs_local_pairs_per_s": round(rows[k]["pairs_per_s"] / rows["local"]["pairs_per_s"], 3)
              for k in rows if k != "local"}
    ratios.update({f"{k}_after_startup_vs_local": round(rows[k]["pairs_per_s_after_startup"]
                                                         / rows["local"]["pairs_per_s"], 3)
                   for k in rows if k != "local"})
    meta = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "versions": versions(),
            "ray": ray.__version__, "model": "tiny-qwen3vl", "pairs": n, "reps": args.reps,
            "command": "python benchmarks/bench_ray.py " + " ".join(f"--{k} {v}" for k, v in vars(args).items())}
    out = write_result("ray_cpu", new_result(QUESTION, meta["command"], [{"name": k, **v} for k, v in rows.items()],
                                                  settings=meta, ratios=ratios))
    print(json.dumps(rows, indent=2))
    print("ratios", ratios)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
