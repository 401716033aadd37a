"""Per-pair latency on a shared machine: the same simulate_slate batch as bench_export_cpu.py (PyTorch backend,
tiny-qwen3vl, batch 8, rollout), while a documented background load keeps one CPU busy, for several thread
settings, each in a fresh process (OpenMP reads its wait policy when it starts). Also the idle figures.

Background load: one process spinning in pure Python on CPU 0 (pinned with sched_setaffinity) for the whole
measurement — the kind of neighbour a CI job or another service is.

Settings (all usable CPUs unless said): `unset` (OpenMP's own default wait: fixate-rt before this change), `active`
(OMP_WAIT_POLICY=ACTIVE: spin forever), `passive` (OMP_WAIT_POLICY=PASSIVE), `spin-10k` (the default policy with
GOMP_SPINCOUNT=10000: spin briefly, then sleep), `spin-1k`, `one-thread` (passive, --threads 1), and `adaptive`
(the default of `fixate-rt simulate`: spin-10k plus `fixate_rt.threads.AdaptiveThreads`, which picks all threads
or one batch by batch from measured speed; its exploration batches are inside the timing). Interleaved rounds:
each round runs every setting once.

    python benchmarks/bench_contended.py [--rounds 5] [--pairs 256] [--backend onnx]

``--backend onnx`` runs the same batches on the tiny model's ONNX export (benchmarks/work/export-qk2/, written by
bench_export_cpu.py or here): ONNX Runtime's pool spins between nodes unless OMP_WAIT_POLICY=PASSIVE
(`fixate_rt.backends.graph_runtime.session_options`), and --threads sizes it; `adaptive` changes torch's threads
only, so for ONNX it is the CLI's spin-10k default.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from harness import new_result, write_result

ROOT = Path(__file__).resolve().parents[1]
QUESTION = ("Per-pair simulate time with one of the two cores busy, for each thread setting: is the default "
            "within 1.5x of the best of one thread and all threads, and unchanged when idle?")
SETTINGS = {"unset": {"OMP_WAIT_POLICY": ""}, "active": {"OMP_WAIT_POLICY": "ACTIVE"},
            "passive": {"OMP_WAIT_POLICY": "PASSIVE"}, "spin-10k": {"OMP_WAIT_POLICY": "", "GOMP_SPINCOUNT": "10000"},
            "spin-1k": {"OMP_WAIT_POLICY": "", "GOMP_SPINCOUNT": "1000"},
            "one-thread": {"OMP_WAIT_POLICY": "PASSIVE", "FIXATE_RT_BENCH_THREADS": "1"},
            "adaptive": {"OMP_WAIT_POLICY": "", "GOMP_SPINCOUNT": "10000", "FIXATE_RT_BENCH_ADAPTIVE": "1"}}
DEFAULT = "adaptive"  # what `fixate-rt simulate` does without --threads or a user-set wait policy
CHILD = r"""
import os, sys, time
if os.environ.get("OMP_WAIT_POLICY") == "":
    del os.environ["OMP_WAIT_POLICY"]  # "unset": OpenMP's own default
from fixate_rt.threads import apply_threads
import numpy as np
threads = int(os.environ["FIXATE_RT_BENCH_THREADS"]) if os.environ.get("FIXATE_RT_BENCH_THREADS") else None
info = apply_threads(threads)
from fixate_rt.simulate import Simulator
from fixate_rt.data.layout import recgaze_layout
from fixate_rt.data.render import render_slate
image = render_slate([{"title": "Blue Moon", "genre": "Drama"}] * 15, ["Drama", "Comedy", "Crime"], np.random.default_rng(0))
sim = Simulator(os.environ["FIXATE_RT_BENCH_MODEL"], device="cpu", batch_size=8,
                backend=os.environ["FIXATE_RT_BENCH_BACKEND"])
if os.environ.get("FIXATE_RT_BENCH_ADAPTIVE"):  # as run_simulation attaches it; its exploration is timed too
    from fixate_rt.threads import AdaptiveThreads
    sim.thread_controller = AdaptiveThreads(info["threads"])
feats = sim.encode_slate(image)
users = [f"u{i}" for i in range(8)]
profiles = [f"Top_genre: Drama, Preferred_genres: Crime {i}" for i in range(8)]
sim.simulate_slate(feats, recgaze_layout(), users, profiles)
batches = int(sys.argv[1]) // 8
t0 = time.perf_counter()
for _ in range(batches):
    sim.simulate_slate(feats, recgaze_layout(), users, profiles)
print(1000 * (time.perf_counter() - t0) / (8 * batches), info["threads"], info["omp_wait_policy"])
"""


def _spin() -> subprocess.Popen:
    code = "import os\nos.sched_setaffinity(0, {0})\nwhile True:\n    pass\n"
    return subprocess.Popen([sys.executable, "-c", code])


def _measure(setting: str, pairs: int, model: str, backend: str) -> tuple[float, int, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "FIXATE_RT_BENCH_THREADS",
                                                             "GOMP_SPINCOUNT", "FIXATE_RT_BENCH_ADAPTIVE")}
    env.update(SETTINGS[setting], FIXATE_RT_BENCH_MODEL=model, FIXATE_RT_BENCH_BACKEND=backend)
    out = subprocess.run([sys.executable, "-c", CHILD, str(pairs)], env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    return float(out[0]), int(out[1]), out[2]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--pairs", type=int, default=256,
                    help="pairs per measurement (batches of 8; the adaptive setting's first 5 batches explore)")
    ap.add_argument("--backend", choices=["torch", "onnx"], default="torch")
    args = ap.parse_args()
    model = "tiny-qwen3vl"
    if args.backend == "onnx":
        folder = ROOT / "benchmarks" / "work" / "export-qk2" / "tiny-qwen3vl-onnx"
        if not (folder / "manifest.json").is_file():
            from fixate_rt.exporters.export import export_model

            export_model(model, folder, fmt="onnx", overwrite=True)
        model = str(folder)
    results: dict[str, dict[str, list[float]]] = {"idle": {s: [] for s in SETTINGS},
                                                  "one_cpu_busy": {s: [] for s in SETTINGS}}
    seen = {}
    for load in ("idle", "one_cpu_busy"):
        spinner = _spin() if load == "one_cpu_busy" else None
        try:
            for _ in range(args.rounds):
                for setting in SETTINGS:
                    ms, threads, policy = _measure(setting, args.pairs, model, args.backend)
                    results[load][setting].append(ms)
                    seen[setting] = {"threads": threads, "omp_wait_policy": policy}
        finally:
            if spinner is not None:
                spinner.kill()
                spinner.wait()
    table = {load: {s: {"ms_median": round(statistics.median(v), 3), "ms_min": round(min(v), 3),
                        "ms_max": round(max(v), 3), "reps": len(v)} for s, v in rows.items()}
             for load, rows in results.items()}
    busy = table["one_cpu_busy"]
    best = min(busy["one-thread"]["ms_median"], busy["unset"]["ms_median"])
    command = ("python benchmarks/bench_contended.py" + (f" --rounds {args.rounds}" if args.rounds != 5 else "")
               + (f" --pairs {args.pairs}" if args.pairs != 256 else "")
               + (f" --backend {args.backend}" if args.backend != "torch" else ""))
    payload = new_result(
        QUESTION, command, [{"load": load, "setting": s, **v} for load, per in table.items() for s, v in per.items()],
        settings={"model": "tiny-qwen3vl", "backend": args.backend, "batch": 8, "pairs_per_measurement": args.pairs,
                  "background_load": "one pure-Python spin loop pinned to CPU 0"},
        thread_settings=seen, per_pair=table,
        vs_best_of_one_thread_and_all_threads_under_load={
            s: round(busy[s]["ms_median"] / best, 3) for s in SETTINGS},
        vs_unset_idle={s: round(table["idle"][s]["ms_median"] / table["idle"]["unset"]["ms_median"], 3)
                       for s in SETTINGS},
        default=DEFAULT,
        default_meets_targets={
            "within_1.5x_of_best_under_load": busy[DEFAULT]["ms_median"] <= 1.5 * best,
            "within_5pct_of_unset_idle": table["idle"][DEFAULT]["ms_median"]
            <= 1.05 * table["idle"]["unset"]["ms_median"]},
    )
    write_result("contended_cpu" if args.backend == "torch" else f"contended_cpu_{args.backend}", payload)
    print(json.dumps(payload["per_pair"], indent=1))


if __name__ == "__main__":
    main()
