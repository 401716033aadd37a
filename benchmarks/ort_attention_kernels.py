"""Why the ONNX decoder is slower than the PyTorch backend on CPU: one causal attention call, every ONNX Runtime
kernel that can express it, against the PyTorch backend's SDPA, in one process.

The decoder graph of an export runs every layer through ONNX's ``Attention`` (opset 23) with a 4-D additive mask
(padding and causality together). Profiling the exported tiny-qwen3vl decoder with ONNX Runtime's profiler puts
about three quarters of its time in that node. This benchmark asks whether another ONNX Runtime kernel would
close the gap, at the decoder's own shapes (batch 8 users of one slate, T = 372 tokens, grouped-query heads):

- ``Attention-23`` with a 4-D float mask [B, 1, T, T] (what the exported graph does today), with a 2-D [T, T] mask,
  and with ``is_causal=1`` and no mask;
- the contrib ops ``com.microsoft.MultiHeadAttention`` (``unidirectional=1``) and ``GroupQueryAttention``
  (causal by construction, keys right-padded through ``seqlens_k``);
- the unfused ``MatMul → Add(mask) → Softmax → MatMul`` decomposition (O(T²) memory);
- ``MultiHeadAttention`` without any mask: ONNX Runtime's CPU flash-attention path. It is **not causal**, so a
  decoder cannot use it; it is timed to show what ONNX Runtime's fastest CPU kernel costs at this shape;
- fixate-rt's own ``fixate_rt.CausalAttention`` custom op (C++, O(T) scratch; what ``simulate`` runs an ONNX
  decoder's attention on), run by ONNX Runtime like the others;
- the baseline: ``torch.nn.functional.scaled_dot_product_attention(is_causal=True, enable_gqa=True)``, the kernel
  the PyTorch backend's unpadded batches run.

Every causal candidate's output is checked against the baseline (max |Δ|). One intra-op thread by default, so the
comparison is kernel against kernel; ``--threads`` changes it for both runtimes.

    python benchmarks/ort_attention_kernels.py [--rounds 9] [--threads 1]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np
import torch
from harness import interleaved, new_result, paired_ratios, ratio, spread_ms, write_result

QUESTION = ("One causal attention call at the exported decoders' shapes: how fast is each ONNX Runtime CPU kernel "
            "that can express it, against the PyTorch backend's SDPA?")
# (name, B, query heads, key/value heads, T, head dim): the tiny and mid Qwen3-VL decoders at batch 8 and the
# demo slate's sequence length.
SHAPES = [("tiny-qwen3vl", 8, 4, 2, 372, 16), ("mid-qwen3vl", 8, 8, 4, 372, 64)]
BASELINE = "torch SDPA (causal, GQA)"
FUSED = "fixate_rt.CausalAttention (custom op, what simulate runs)"


def session(nodes, inputs, initializers=(), *, contrib: bool = False, threads: int = 1, fixate_ops: bool = False):
    """An ONNX Runtime CPU session of a one-purpose graph with a single output ``o`` (``fixate_ops``: with
    fixate-rt's custom-op library registered)."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from fixate_rt.backends import ort_attention

    graph = helper.make_graph(nodes, "attention", inputs, [helper.make_tensor_value_info("o", TensorProto.FLOAT, None)],
                              initializer=list(initializers))
    opsets = [helper.make_opsetid("", 23)] + ([helper.make_opsetid("com.microsoft", 1)] if contrib else [])
    opsets += [helper.make_opsetid(ort_attention.DOMAIN, 1)] if fixate_ops else []
    options = ort.SessionOptions()
    if fixate_ops:
        options.register_custom_ops_library(str(ort_attention.library_path()))
    options.intra_op_num_threads = threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(helper.make_model(graph, opset_imports=opsets).SerializeToString(), options,
                                providers=["CPUExecutionProvider"])


def candidates(B: int, Hq: int, Hkv: int, T: int, d: int, threads: int):
    """{name: (call, layout, causal)}: each call returns the attention output; layout "bhtd" or "btd"."""
    from onnx import TensorProto, helper

    rng = np.random.default_rng(0)
    q = rng.standard_normal((B, Hq, T, d), dtype=np.float32)
    k = rng.standard_normal((B, Hkv, T, d), dtype=np.float32)
    v = rng.standard_normal((B, Hkv, T, d), dtype=np.float32)
    causal = np.triu(np.full((T, T), -np.inf, np.float32), 1)  # [T, T] additive
    mask4 = np.ascontiguousarray(np.broadcast_to(causal, (B, 1, T, T)))

    def value(name, shape, dtype=TensorProto.FLOAT):
        return helper.make_tensor_value_info(name, dtype, shape)

    bhtd = [value("q", [B, Hq, T, d]), value("k", [B, Hkv, T, d]), value("v", [B, Hkv, T, d])]
    group = Hq // Hkv

    def btd(x):  # [B, H, T, d] -> [B, T, H·d], the contrib ops' layout
        return np.ascontiguousarray(x.transpose(0, 2, 1, 3).reshape(B, T, -1))

    out: dict[str, tuple[Callable[[], np.ndarray], str, bool]] = {}
    s = session([helper.make_node("Attention", ["q", "k", "v", "m"], ["o"])], bhtd + [value("m", [B, 1, T, T])],
                threads=threads)
    out["Attention-23, 4-D mask (today's graph)"] = (lambda s=s: s.run(None, dict(q=q, k=k, v=v, m=mask4))[0], "bhtd", True)
    s = session([helper.make_node("Attention", ["q", "k", "v", "m"], ["o"])], bhtd + [value("m", [T, T])],
                threads=threads)
    out["Attention-23, 2-D mask"] = (lambda s=s: s.run(None, dict(q=q, k=k, v=v, m=causal))[0], "bhtd", True)
    s = session([helper.make_node("Attention", ["q", "k", "v"], ["o"], is_causal=1)], bhtd, threads=threads)
    out["Attention-23, is_causal"] = (lambda s=s: s.run(None, dict(q=q, k=k, v=v))[0], "bhtd", True)

    wide = [value(n, [B, T, Hq * d]) for n in ("q", "k", "v")]
    kq, vq = btd(np.repeat(k, group, 1)), btd(np.repeat(v, group, 1))  # MHA wants as many KV heads as Q heads
    s = session([helper.make_node("MultiHeadAttention", ["q", "k", "v"], ["o"], domain="com.microsoft", num_heads=Hq,
                                  unidirectional=1)], wide, contrib=True, threads=threads)
    out["MultiHeadAttention (contrib), unidirectional"] = (lambda s=s: s.run(None, dict(q=btd(q), k=kq, v=vq))[0],
                                                          "btd", True)
    s = session([helper.make_node("GroupQueryAttention", ["q", "k", "v", "", "", "seqlens_k", "total"], ["o", "pk", "pv"],
                                  domain="com.microsoft", num_heads=Hq, kv_num_heads=Hkv)],
                [value("q", [B, T, Hq * d]), value("k", [B, T, Hkv * d]), value("v", [B, T, Hkv * d]),
                 value("seqlens_k", [B], TensorProto.INT32), value("total", [], TensorProto.INT32)],
                contrib=True, threads=threads)
    feed = dict(q=btd(q), k=btd(k), v=btd(v), seqlens_k=np.full(B, T - 1, np.int32), total=np.array(T, np.int32))
    out["GroupQueryAttention (contrib)"] = (lambda s=s: s.run(None, feed)[0], "btd", True)

    nodes = [helper.make_node("Reshape", ["q", "q_shape"], ["q_grouped"]),  # [B, Hkv, group·T, d]: no K/V copies
             helper.make_node("Transpose", ["k"], ["k_t"], perm=[0, 1, 3, 2]),
             helper.make_node("MatMul", ["q_grouped", "k_t"], ["scores"]),
             helper.make_node("Mul", ["scores", "scale"], ["scaled"]),
             helper.make_node("Reshape", ["scaled", "s_shape"], ["per_query"]),
             helper.make_node("Add", ["per_query", "m"], ["masked"]),
             helper.make_node("Softmax", ["masked"], ["probs"], axis=-1),
             helper.make_node("Reshape", ["probs", "p_shape"], ["probs_grouped"]),
             helper.make_node("MatMul", ["probs_grouped", "v"], ["o_grouped"]),
             helper.make_node("Reshape", ["o_grouped", "o_shape"], ["o"])]
    consts = [helper.make_tensor("q_shape", TensorProto.INT64, [4], [B, Hkv, group * T, d]),
              helper.make_tensor("scale", TensorProto.FLOAT, [], [d ** -0.5]),
              helper.make_tensor("s_shape", TensorProto.INT64, [5], [B, Hkv, group, T, T]),
              helper.make_tensor("p_shape", TensorProto.INT64, [4], [B, Hkv, group * T, T]),
              helper.make_tensor("o_shape", TensorProto.INT64, [4], [B, Hq, T, d])]
    s = session(nodes, bhtd + [value("m", [T, T])], consts, threads=threads)
    out["unfused MatMul+Softmax+MatMul (T² memory)"] = (lambda s=s: s.run(None, dict(q=q, k=k, v=v, m=causal))[0],
                                                        "bhtd", True)
    from fixate_rt.backends import ort_attention

    if ort_attention.library_path() is not None:  # the C++ build is there
        s = session([helper.make_node(ort_attention.OP, ["q", "k", "v", "mask"], ["o", "lse"], domain=ort_attention.DOMAIN,
                                      scale=d ** -0.5)], bhtd + [value("mask", [B, T], TensorProto.INT64)],
                    threads=threads, fixate_ops=True)
        keys = np.ones((B, T), np.int64)
        out[FUSED] = (lambda s=s: s.run(None, dict(q=q, k=k, v=v, mask=keys))[0], "bhtd", True)
    s = session([helper.make_node("MultiHeadAttention", ["q", "k", "v"], ["o"], domain="com.microsoft", num_heads=Hq)],
                wide, contrib=True, threads=threads)
    out["MultiHeadAttention, no mask (flash path; NOT causal)"] = (
        lambda s=s: s.run(None, dict(q=btd(q), k=kq, v=vq))[0], "btd", False)

    tq, tk, tv = (torch.from_numpy(x) for x in (q, k, v))

    def sdpa() -> np.ndarray:
        with torch.inference_mode():
            return torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, is_causal=True, enable_gqa=True).numpy()

    out[BASELINE] = (sdpa, "bhtd", True)
    return out, btd


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--threads", type=int, default=1, help="intra-op threads of both runtimes")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for model, B, Hq, Hkv, T, d in SHAPES:
        calls, btd = candidates(B, Hq, Hkv, T, d, args.threads)
        reference = calls[BASELINE][0]()
        times = interleaved({name: call for name, (call, _, _) in calls.items()}, rounds=args.rounds)
        base = spread_ms(times[BASELINE])
        for name, (call, layout, causal) in calls.items():
            got = call()
            want = reference if layout == "bhtd" else btd(reference)
            timing = spread_ms(times[name])
            row = {"model": model, "shape": {"B": B, "Hq": Hq, "Hkv": Hkv, "T": T, "d": d}, "kernel": name,
                   "causal": causal, "ms": timing, "speed_vs_torch": ratio(base, timing),
                   "paired_time_ratio_vs_torch": paired_ratios(times[name], times[BASELINE]),
                   "max_abs_diff_vs_torch": float(np.abs(got - want).max()) if causal else None}
            rows.append(row)
            print(f"{model:13s} {name:52s} {timing['ms_median']:8.2f} ms ({timing['ms_min']:.2f}–{timing['ms_max']:.2f})"
                  f"  {row['speed_vs_torch']:.2f}× torch" + (f"  max|Δ| {row['max_abs_diff_vs_torch']:.1e}" if causal else ""))
    best = {}
    for row in rows:
        if row["causal"] and row["kernel"] not in (BASELINE, FUSED):
            current = best.get(row["model"])
            if current is None or row["speed_vs_torch"] > current["speed_vs_torch"]:
                best[row["model"]] = {"kernel": row["kernel"], "speed_vs_torch": row["speed_vs_torch"]}
    path = write_result("ort_attention_kernels", new_result(
        QUESTION, f"python benchmarks/ort_attention_kernels.py --rounds {args.rounds} --threads {args.threads}", rows,
        settings={"threads": args.threads, "rounds": args.rounds}, best_causal_ort_kernel=best,
        fused_kernel={row["model"]: {"ms": row["ms"], "speed_vs_torch": row["speed_vs_torch"]}
                      for row in rows if row["kernel"] == FUSED}))
    print(f"fastest causal ONNX Runtime kernel per shape: {best}\nwrote {path}")


if __name__ == "__main__":
    main()
