"""Per-pair latency on CPU: ONNX Runtime and torch.export programs (exported graphs) vs PyTorch, same process,
same inputs.

For each model: export (once, cached under benchmarks/work/), then time `Simulator.simulate_slate` for a batch of
users on one slate with both backends (vision encoding excluded: it is once per slate in both), rollout probe.

    python benchmarks/bench_export_cpu.py [--models tiny-qwen3vl mid-qwen3vl] [--users 8] [--reps 3]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
from pathlib import Path

import numpy as np
from spread import ratio, repeat, spread_ms

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", default=["tiny-qwen3vl", "mid-qwen3vl"])
    ap.add_argument("--users", type=int, default=8)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    import onnxruntime
    import torch

    from fixate_rt.data.layout import recgaze_layout
    from fixate_rt.data.render import render_slate
    from fixate_rt.exporters.export import export_model
    from fixate_rt.simulate import Simulator

    rng = np.random.default_rng(0)
    image = render_slate([{"title": "Blue Moon", "genre": "Drama"}] * 15, ["Drama", "Comedy", "Crime"], rng)
    layout = recgaze_layout()
    users = [f"u{i}" for i in range(args.users)]
    profiles = [f"Top_genre: Drama, Preferred_genres: Crime {i}" for i in range(args.users)]
    rows = []
    for model in args.models:
        sims = {"torch": Simulator(model, device="cpu", batch_size=args.users)}
        for fmt in ("onnx", "export"):
            folder = ROOT / "benchmarks" / "work" / "export" / f"{model}-{fmt}"
            if not (folder / "manifest.json").is_file():
                export_model(model, folder, fmt=fmt)
            sims[fmt] = Simulator(str(folder), device="cpu", batch_size=args.users, backend=fmt)
        result = {}
        for backend, sim in sims.items():
            feats = sim.encode_slate(image)
            last = []  # the timed calls' results: the last one is compared across backends
            times = repeat(lambda: last.append(sim.simulate_slate(feats, layout, users, profiles)), args.reps)
            result[backend] = (spread_ms(times, per=args.users), last[-1])
        row = {"model": model, "users_per_batch": args.users, "torch_per_pair": result["torch"][0]}
        for fmt in ("onnx", "export"):
            row[f"{fmt}_per_pair"] = result[fmt][0]
            row[f"speedup_{fmt}_vs_torch"] = ratio(result["torch"][0], result[fmt][0])
            row[f"max_p_click_diff_{fmt}"] = float(np.abs(result["torch"][1].p_click - result[fmt][1].p_click).max())
        rows.append(row)
        print(row, flush=True)
    meta = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "device": f"cpu ({platform.machine()}, {os.cpu_count()} cores)", "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__,
            "command": "python benchmarks/bench_export_cpu.py" + (f" --reps {args.reps}" if args.reps != 5 else "")}
    out = ROOT / "benchmarks" / "results" / "export_cpu.json"
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
