"""Probing cost: fixate-rt's capture paths vs the reference approach, in the same script, per probe.

reference = every decoder layer eager with ``output_attentions=True`` (what FixATE's code does), autograd.grad
over the returned maps for the gradient probes, and the full-matrix operator (R as a product of T×T matrices).
fixate-rt  = ``fixate_rt.probes.operators.probe``: probed layers only (others SDPA), row propagation, and for
AttnLRP only the answer row (A[last] from q_last·K, ∂s/∂A[last] = dO[last]·Vᵀ).

Each (model, probe, method) runs in its own subprocess so peak memory is clean: "peak MB" is the growth of
the process's peak RSS during the probe calls, over what loading + vision encoding already needed.

    python benchmarks/bench_probe_capture.py [--models tiny-qwen3vl mid-qwen3vl] [--batch 2] [--reps 5]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

from harness import new_result, spread_ms, write_result

QUESTION = "What does each way of capturing the probed layers cost against the plain decoder forward?"

RESULTS = Path(__file__).parent / "results"


def worker(model: str, probe_name: str, method: str, batch: int, reps: int) -> dict:
    import numpy as np
    import torch

    from fixate_rt.backbones import load
    from fixate_rt.data.layout import LETTERS
    from fixate_rt.data.render import render_slate
    from fixate_rt.plan import plan_ops
    from fixate_rt.probes.eager import eager_reference
    from fixate_rt.probes.operators import probe

    torch.manual_seed(0)
    bb = load(model, device="cpu")
    rng = np.random.default_rng(0)
    items = [{"title": "Blue Moon", "genre": "Drama"}] * 15
    feats = bb.encode_slate(render_slate(items, ["Drama", "Comedy", "Crime"], rng))
    inputs = bb.build_inputs([f"Top_genre: Drama {i}" for i in range(batch)], LETTERS, feats, 16)
    prompts = torch.randn(batch, 16, bb.hidden_size, generator=torch.Generator().manual_seed(0)) * 0.01
    label_ids = bb.label_token_ids(LETTERS)
    layers = bb.default_probe_layers
    plan = plan_ops(probe_name, "auto", bb.device)

    def reference_call():  # FixATE's approach: fp32 full-matrix rollout, as the reference code forms it
        return eager_reference(bb, inputs, feats, prompts, layers, probe_name, label_ids, full_rollout=True,
                               rollout_dtype=torch.float32)[1]

    def fast_call():
        return probe(bb, inputs, feats, prompts, label_ids, plan, layers=layers).token_relevance

    call = reference_call if method == "reference" else fast_call
    base_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    for _ in range(reps):  # no warm-up call: the first call's peak memory is part of what this measures
        t0 = time.perf_counter()
        rel = call()
        times.append(time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"model": model, "probe": probe_name, "method": method, "batch": batch, "T": inputs.input_ids.shape[1],
            "layers_total": bb.num_layers, "layers_probed": len(layers), "image_tokens": feats.n_tokens,
            **spread_ms(times), "peak_mb": (peak - base_peak) / 1024, "relevance_checksum": float(rel.float().sum())}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", default=["tiny-qwen3vl", "mid-qwen3vl"])
    ap.add_argument("--probes", nargs="+", default=["rollout", "attnlrp", "glimpse"])
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--worker", nargs=3, metavar=("MODEL", "PROBE", "METHOD"))
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(*args.worker, args.batch, args.reps)))
        return
    import torch
    import transformers

    rows = []
    for model in args.models:
        for probe_name in args.probes:
            pair = {}
            for method in ("reference", "fixate-rt"):
                cmd = [sys.executable, __file__, "--worker", model, probe_name, method, "--batch", str(args.batch),
                       "--reps", str(args.reps)]
                out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=os.environ.copy())
                pair[method] = json.loads(out.stdout.strip().splitlines()[-1])
                rows.append(pair[method])
            r, f = pair["reference"], pair["fixate-rt"]
            print(f"{model:14s} {probe_name:8s} T={r['T']:4d} B={args.batch}  reference {r['ms_median']:8.1f} ms "
                  f"{r['peak_mb']:8.1f} MB | fixate-rt {f['ms_median']:8.1f} ms {f['peak_mb']:8.1f} MB | "
                  f"speed-up {r['ms_median'] / f['ms_median']:5.2f}x  memory {r['peak_mb'] / max(f['peak_mb'], 1e-3):5.2f}x"
                  f"  (checksums {r['relevance_checksum']:.5f} / {f['relevance_checksum']:.5f})", flush=True)
    RESULTS.mkdir(exist_ok=True)
    meta = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "device": f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)",
            "torch": torch.__version__, "transformers": transformers.__version__, "python": platform.python_version(),
            "command": "python benchmarks/bench_probe_capture.py " + " ".join(sys.argv[1:])}
    write_result("probe_capture_cpu", new_result(QUESTION, meta.pop("command"), rows, settings=meta))
    print(f"wrote {RESULTS / 'probe_capture_cpu.json'}")


if __name__ == "__main__":
    main()
