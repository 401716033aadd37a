"""Per-pair latency on CPU: ONNX Runtime (fp32 and int8) and torch.export programs vs the PyTorch backend, same
process, same inputs, interleaved rounds (each round times every backend once, so a slower period of a shared
machine hits all of them alike; a short pause before each call lets the previous backend's threads stop spinning).

For each model: export (once, cached under benchmarks/work/), then time `Simulator.simulate_slate` for a batch of
users on one slate with every backend (vision encoding excluded: it is once per slate in all), rollout probe. The
exports carry probe contract qk v2: the decoder graph returns the probed layers' Q and K and the rollout row is
computed by the same C++ op as the PyTorch backend's.

    python benchmarks/bench_export_cpu.py [--models tiny-qwen3vl mid-qwen3vl] [--users 8] [--rounds 7]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import time
from pathlib import Path

import numpy as np
from harness import new_result, ratio, spread_ms, write_result

QUESTION = ("Per pair, batch 8, rollout probe: how fast are the exported artefacts (ONNX Runtime fp32 and int8, "
            "torch.export) against the PyTorch backend, and do their outputs agree?")

ROOT = Path(__file__).resolve().parents[1]
# Idle time before each timed call: the thread pools of the backend timed before it (ONNX Runtime's and OpenMP's
# spin for a while after their work) go to sleep first, as they would in a process that runs one backend.
PAUSE_S = 0.05
# name: (format, quantisation, attention kernel of the ONNX decoder: fixate-rt's fused op or ONNX Runtime's own)
BACKENDS = {"onnx": ("onnx", None, "fused"), "onnx_int8": ("onnx", "int8", "fused"), "export": ("export", None, ""),
            "onnx_ort_attention": ("onnx", None, "onnxruntime"), "onnx_int8_ort_attention": ("onnx", "int8", "onnxruntime")}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", default=["tiny-qwen3vl", "mid-qwen3vl"])
    ap.add_argument("--users", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    import onnxruntime
    import torch

    from fixate_rt.backends import ort_attention
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
        row_kernel: dict[str, str] = {}
        sims = {"torch": Simulator(model, device="cpu", batch_size=args.users)}
        for name, (fmt, quantize, attention) in BACKENDS.items():
            folder = ROOT / "benchmarks" / "work" / "export-qk2" / f"{model}-{name.replace('_ort_attention', '')}"
            if not (folder / "manifest.json").is_file():
                export_model(model, folder, fmt=fmt, quantize=quantize, overwrite=True)
            os.environ[ort_attention.SWITCH] = attention  # read when the session is created
            sims[name] = Simulator(str(folder), device="cpu", batch_size=args.users, backend=fmt,
                                   trust_export=fmt == "export")  # this script wrote the folder
            os.environ.pop(ort_attention.SWITCH)
            if fmt == "onnx":
                row_kernel[name] = sims[name].backend.runtime_options["decoder_attention"]
        feats = {name: sim.encode_slate(image) for name, sim in sims.items()}
        times: dict[str, list[float]] = {name: [] for name in sims}
        last = {}
        for round_ in range(args.rounds + 1):  # round 0 warms every backend up and is not counted
            for name, sim in sims.items():
                time.sleep(PAUSE_S)
                t0 = time.perf_counter()
                last[name] = sim.simulate_slate(feats[name], layout, users, profiles)
                if round_:
                    times[name].append(time.perf_counter() - t0)
        row = {"model": model, "users_per_batch": args.users, "torch_per_pair": spread_ms(times["torch"], per=args.users),
               "decoder_attention": row_kernel}
        base = last["torch"]
        for name in BACKENDS:
            row[f"{name}_per_pair"] = spread_ms(times[name], per=args.users)
            row[f"speedup_{name}_vs_torch"] = ratio(row["torch_per_pair"], row[f"{name}_per_pair"])
            row[f"paired_ratio_{name}"] = round(float(np.median(np.array(times["torch"]) / np.array(times[name]))), 3)
            row[f"max_p_click_diff_{name}"] = float(np.abs(base.p_click - last[name].p_click).max())
            row[f"max_relevance_diff_{name}"] = float(np.abs(base.slot_relevance - last[name].slot_relevance).max())
        rows.append(row)
        print(row, flush=True)
    meta = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "device": f"cpu ({platform.machine()}, {os.cpu_count()} cores)", "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__, "probe_contract": "qk v2 (Q/K out of the graph, C++ row)",
            "decoder_attention": "onnx*: fixate_rt.CausalAttention (fused at session creation); "
                                 "*_ort_attention: ONNX Runtime's own Attention kernel, same folder",
            "command": "python benchmarks/bench_export_cpu.py" + (f" --rounds {args.rounds}" if args.rounds != 7 else "")}
    out = write_result("export_cpu", new_result(QUESTION, meta.pop("command"), rows, settings=meta))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
