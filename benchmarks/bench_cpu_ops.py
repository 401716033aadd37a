"""C++ (fixate_rt._C) vs torch CPU implementations of the probe/scoring ops, in one process.

Sizes (issue 6): rollout rows B=64, L=6, T=800; slot pooling B=256, P=646, S=15; scoring 1,000,000 rows × 15
slots (plus the per-sample numpy reference on a 20,000-row slice, reported per row). Writes
benchmarks/results/cpu_ops.{json,csv} with device, versions and date.

    python benchmarks/bench_cpu_ops.py [--quick]
"""

from __future__ import annotations

import argparse
import csv
import datetime
import os
import platform
from pathlib import Path

import numpy as np
import torch
from harness import new_result, ratio, repeat, spread_ms, write_result

from fixate_rt import metrics as M
from fixate_rt import ops

RESULTS = Path(__file__).parent / "results"
QUESTION = ("How fast are the C++ ops (rollout row, slot pooling, batch metrics) against their torch and numpy "
            "baselines on this CPU?")


def timeit(fn, reps: int, per: float = 1.0) -> dict:
    """Median and min–max (ms) of ``reps`` calls after a warm-up, each scaled by ``per``."""
    return spread_ms([t * per for t in repeat(fn, reps)])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    if not ops.cpp_available():
        raise SystemExit("fixate_rt._C is not built; nothing to compare")
    q = args.quick
    rows = []
    gen = torch.Generator().manual_seed(0)

    def record(op, size, impl, timing: dict, baseline: dict | None = None):
        rows.append({"op": op, "size": size, "impl": impl, **timing,
                     "speedup_vs_torch": None if baseline is None else ratio(baseline, timing)})
        print(f"{op:14s} {size:28s} {impl:14s} {timing['ms_median']:10.2f} ms ({timing['ms_min']:.2f}–"
              f"{timing['ms_max']:.2f})" + ("" if baseline is None else f"   {ratio(baseline, timing):6.2f}x vs torch"),
              flush=True)

    # Rollout rows: head-averaged causal attention of the probed layers.
    B, L, T = (8, 6, 200) if q else (64, 6, 800)
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    attn = torch.softmax(torch.randn(B, L, T, T, generator=gen).masked_fill(~causal, -torch.inf), -1)
    qpos = torch.full((B,), T - 1)
    size = f"B={B} L={L} T={T}"
    t_torch = timeit(lambda: ops.rollout_row(attn, qpos, impl="torch"), args.reps)
    record("rollout_row", size, "torch", t_torch)
    record("rollout_row", size, "cpp", timeit(lambda: ops.rollout_row(attn, qpos, impl="cpp"), args.reps), t_torch)
    attn = None  # freed before the next benchmark

    # Slot pooling: Qwen3-VL's 19×34 merged grid over an 1100×619 slate, 15 RecGaze slots.
    from fixate_rt.data.layout import recgaze_boxes

    Bp, (h, w) = (32 if q else 256), (19, 34)
    jj, ii = np.meshgrid(np.arange(w), np.arange(h))
    tok = torch.tensor(np.stack([jj.ravel() * 1100 / w, ii.ravel() * 619 / h, (jj.ravel() + 1) * 1100 / w,
                                 (ii.ravel() + 1) * 619 / h], 1), dtype=torch.float32)
    rel = torch.rand(Bp, h * w, generator=gen)
    slots = torch.from_numpy(recgaze_boxes()).expand(Bp, -1, -1).contiguous()
    for mode in ("exclusive", "area"):
        size = f"B={Bp} P={h * w} S=15 {mode}"
        t_torch = timeit(lambda: ops.slot_pool(rel, tok, slots, mode=mode, impl="torch"), args.reps)
        record("slot_pool", size, "torch", t_torch)
        record("slot_pool", size, "cpp", timeit(lambda: ops.slot_pool(rel, tok, slots, mode=mode, impl="cpp"), args.reps),
               t_torch)

    # Scoring: R rows × 15 slots with ragged n_cand.
    R, S = (20_000 if q else 1_000_000), 15
    rng = np.random.default_rng(0)
    a = rng.random((R, S)) ** 3
    g = M.gaze_target(np.where(rng.random((R, S)) < 0.4, 0.0, rng.random((R, S)) * 1000))
    p = rng.dirichlet(np.ones(S), R)
    n = rng.choice([5, 10, 15], R)
    c = (rng.random(R) * n).astype(np.int64)
    tensors = [torch.from_numpy(x) for x in (a, g, p, c, n)]
    size = f"R={R} S={S}"
    t_torch = timeit(lambda: ops.batch_metrics(*tensors, impl="torch"), max(1, args.reps - 2))
    record("batch_metrics", size, "torch", t_torch)
    record("batch_metrics", size, "cpp", timeit(lambda: ops.batch_metrics(*tensors, impl="cpp"), args.reps), t_torch)
    sl = 20_000 if not q else 2_000

    def loop():
        for r in range(sl):
            M.sample_metrics(a[r, :n[r]], g[r, :n[r]], p[r, :n[r]], int(c[r]))

    t_loop = timeit(loop, 1, per=R / sl)
    record("batch_metrics", size + f" (numpy loop, {sl} rows ×{R // sl})", "numpy-loop", t_loop, t_torch)

    import fixate_rt
    from fixate_rt import _C

    meta = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "device": f"cpu ({platform.machine()}, {os.cpu_count()} cores)", "torch_threads": torch.get_num_threads(),
            "openmp": bool(_C.has_openmp), "torch": torch.__version__, "numpy": np.__version__,
            "fixate_rt": fixate_rt.__version__, "python": platform.python_version(),
            "command": "python benchmarks/bench_cpu_ops.py" + (" --quick" if q else "")}
    RESULTS.mkdir(exist_ok=True)
    stem = "cpu_ops_quick" if q else "cpu_ops"
    write_result(stem, new_result(QUESTION, meta["command"], rows, settings={k: v for k, v in meta.items() if k != "command"}))
    with open(RESULTS / f"{stem}.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=[*rows[0], *meta])
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, **meta})
    print(f"wrote {RESULTS / stem}.json/.csv")


if __name__ == "__main__":
    main()
