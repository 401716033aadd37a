"""Rollout probe cost on CPU: the fused C++ row from Q/K (every layer SDPA) vs the probe-free SDPA forward, vs the
previous eager capture of the probed layers, vs the reference approach — in one process, per model.

Methods (one batch of B users on one slate, the soft prompt spliced in, medians of interleaved repetitions):
  sdpa       the decoder forward alone, no probe (the floor);
  fused_cpp  the rollout probe as `simulate` runs it on CPU now: Q/K and the forward's log-sum-exp captured in
             the probed layers, the row computed blockwise in C++ (no T×T anywhere);
  eager_cpp  the previous CPU path: the probed layers run eager attention to keep mean_h(A) [B, T, T], then the
             C++ row;
  reference  FixATE's approach: every layer eager with output_attentions, full-matrix rollout.
Memory: what each probe holds beyond the forward, computed from the shapes (B batch, L probed layers, Hq/Hkv
heads, T tokens, d head size, fp32): fused_cpp keeps Q, K and the log-sum-exp of the probed layers,
L·B·(Hq + Hkv)·T·d + L·B·Hq·T floats, plus O(T) scratch per thread; eager_cpp keeps mean_h(A) of every probed
layer, L·B·T² floats, and builds one layer's B·H·T² probabilities at a time; the reference keeps B·H·T² for
every layer. (RSS growth was tried first and is useless here: the process peak is reached while loading.)

With ``--padded`` the batch's user profiles differ in length (left padding, as every real batch has) and the
methods are: sdpa; fused_cpp (every layer of the padded forward on fixate-rt's C++ causal kernel, which reads the
key mask [B, T] as it is, what `simulate` runs now); fused_flash (the previous padded path: the probed layers on
torch's flash kernel with the 4-D mask); results go to results/rollout_cpu_padded.json.

    python benchmarks/bench_rollout_cpu.py [--models tiny-qwen3vl mid-qwen3vl] [--batch 2] [--reps 21] [--padded]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

from harness import new_result, spread_ms, write_result

QUESTION = ("How close is the fused rollout probe (every layer SDPA, the row in C++ from Q/K) to the plain "
            "forward, against the eager capture and the reference implementation?")

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("sdpa", "fused_cpp", "eager_cpp", "reference")
PADDED_METHODS = ("sdpa", "fused_cpp", "fused_flash")


def _cpp_variant() -> str:
    """Which compiled variant of the C++ row ran ("avx2+fma" or "portable"), or why none did."""
    from fixate_rt import ops

    if not ops.cpp_available():
        return "not built"
    from fixate_rt import _C

    return _C.rollout_qk_variant()


def paired_ratio(numerator: list[float], denominator: list[float]) -> dict:
    """Median, quartiles and min–max of the per-round ratios numerator[i] / denominator[i]."""
    ratios = [a / b for a, b in zip(numerator, denominator)]
    q1, _, q3 = statistics.quantiles(ratios, n=4)
    return {"median": round(statistics.median(ratios), 3), "q1": round(q1, 3), "q3": round(q3, 3),
            "min": round(min(ratios), 3), "max": round(max(ratios), 3), "rounds": len(ratios)}


def _setup(model: str, batch: int, padded: bool = False):
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
    items = [{"title": "Blue Moon", "genre": "Drama"}] * 15
    feats = bb.encode_slate(render_slate(items, ["Drama", "Comedy", "Crime"], np.random.default_rng(0)))
    # padded: profiles of 0, 3, 6, ... extra words, so every row but the longest is left-padded
    profiles = [f"Top_genre: Drama {i}" + " and more" * (3 * i if padded else 0) for i in range(batch)]
    inputs = bb.build_inputs(profiles, LETTERS, feats, 16)
    prompts = torch.randn(batch, 16, bb.hidden_size, generator=torch.Generator().manual_seed(0)) * 0.01
    label_ids = bb.label_token_ids(LETTERS)
    layers = bb.default_probe_layers
    fused, eager = plan_ops("rollout", "cpp", "cpu"), plan_ops("rollout", "auto", "cpu")
    eager = type(eager)(eager.probe, "rollout_row", "cpp", "mean", eager.device, eager.pool_impl, eager.pool_device)
    flash = type(fused)(fused.probe, "rollout_row_qk", "cpp", "qk", fused.device, fused.pool_impl, fused.pool_device)

    def run(method: str):
        with torch.no_grad():
            if method == "sdpa":
                return bb.decode(inputs, feats, prompts, label_ids).label_logits
            if method == "reference":
                return eager_reference(bb, inputs, feats, prompts, layers, "rollout", label_ids, full_rollout=True,
                                       rollout_dtype=torch.float32)[1]
            plan = {"fused_cpp": fused, "fused_flash": flash, "eager_cpp": eager}[method]
            return probe(bb, inputs, feats, prompts, label_ids, plan, layers=layers).token_relevance

    text = bb.model.config.text_config
    heads = (int(text.num_attention_heads), int(text.num_key_value_heads),
             int(getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads))
    padding = int((inputs.attention_mask == 0).sum(1).max())
    return run, int(inputs.input_ids.shape[1]), len(layers), bb.num_layers, heads, padding


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", default=["tiny-qwen3vl", "mid-qwen3vl"])
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--reps", type=int, default=21)
    ap.add_argument("--padded", action="store_true", help="profiles of different lengths (left-padded batch)")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from fixate_rt.versions import versions

    methods = PADDED_METHODS if args.padded else METHODS
    results = []
    for model in args.models:
        run, T, probed, total, (hq, hkv, d), padding = _setup(model, args.batch, args.padded)
        for method in methods:
            run(method)  # warm-up
        times = {m: [] for m in methods}
        for _ in range(args.reps):  # interleaved, so drift on a shared machine hits every method alike
            for method in methods:
                t0 = time.perf_counter()
                run(method)
                times[method].append(time.perf_counter() - t0)
        row = {"model": model, "batch": args.batch, "T": T, "layers_probed": probed, "layers_total": total}
        for method in methods:
            row[method] = spread_ms(times[method])
        sdpa = row["sdpa"]["ms_median"]
        if args.padded:
            row["max_padding_tokens"] = padding
            row["ratios"] = {f"{m}_over_sdpa": round(row[m]["ms_median"] / sdpa, 3) for m in methods[1:]}
            row["paired_ratios"] = {f"{m}_over_sdpa": paired_ratio(times[m], times["sdpa"]) for m in methods[1:]}
            print(json.dumps(row), flush=True)
            results.append(row)
            continue
        B, L = args.batch, probed
        row["probe_holds_mb_computed"] = {
            "fused_cpp": round(4 * (L * B * (hq + hkv) * T * d + L * B * hq * T) / 2**20, 2),
            "eager_cpp": round(4 * L * B * T * T / 2**20, 2),
            "reference": round(4 * total * B * hq * T * T / 2**20, 2)}
        row["ratios"] = {"fused_cpp_over_sdpa": round(row["fused_cpp"]["ms_median"] / sdpa, 3),
                         "eager_cpp_over_sdpa": round(row["eager_cpp"]["ms_median"] / sdpa, 3),
                         "reference_over_fused_cpp": round(row["reference"]["ms_median"] / row["fused_cpp"]["ms_median"], 3)}
        # The same ratios rep by rep (each pair of timings from one interleaved round): on a shared machine the
        # load drifts between rounds, so these are steadier than the ratio of the medians.
        row["paired_ratios"] = {"fused_cpp_over_sdpa": paired_ratio(times["fused_cpp"], times["sdpa"]),
                                "eager_cpp_over_sdpa": paired_ratio(times["eager_cpp"], times["sdpa"]),
                                "reference_over_fused_cpp": paired_ratio(times["reference"], times["fused_cpp"])}
        print(json.dumps(row), flush=True)
        results.append(row)
    meta = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "versions": versions(),
            "cpp_rollout_variant": _cpp_variant(),
            "command": "python benchmarks/bench_rollout_cpu.py " + " ".join(sys.argv[1:])}
    name = "rollout_cpu_padded" if args.padded else "rollout_cpu"
    out = write_result(name, new_result(QUESTION, meta.pop("command"), results, settings=meta))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
