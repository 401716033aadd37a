"""Rollout probe cost per layer stack: eager probabilities + torch rollout vs chunked torch recompute vs the fused
Triton kernel, with one SDPA forward of the same attention as the yardstick — all in one process.

GPU (the intended run): 32 query heads, 8 key heads, d = 128, T ∈ {784, 2048, 8192}, m ∈ {6, 36} layers, bf16.
CPU smoke run: `TRITON_INTERPRET=1 python benchmarks/bench_rollout_gpu.py --tiny` (tiny shapes; timings meaningless).
Writes benchmarks/results/rollout_{gpu,tiny}.json with device, versions, date.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import time
from pathlib import Path

import torch
from harness import new_result, write_result

QUESTION = "How fast is the Triton rollout row against the torch row and the SDPA forward on the GPU?"

ROOT = Path(__file__).resolve().parents[1]


def _timed(fn, device, reps):
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    peak = (torch.cuda.max_memory_allocated() - base) / 2**30 if device.type == "cuda" else None
    return 1000 * sorted(times)[len(times) // 2], peak


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tiny", action="store_true", help="tiny shapes (CPU smoke test under TRITON_INTERPRET=1)")
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    from fixate_rt import ops
    from fixate_rt.probes.capture import sdpa_with_lse
    from fixate_rt.reference import attention_from_qk, rollout_row_reference

    device = torch.device("cuda" if torch.cuda.is_available() and not args.tiny else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    HQ, HKV, D = (4, 2, 16) if args.tiny else (32, 8, 128)
    Ts, Ls, B = ((64,), (2,), 2) if args.tiny else ((784, 2048, 8192), (6, 36), 1)
    rows = []
    for T in Ts:
        for L in Ls:
            g = torch.Generator(device=device).manual_seed(0)
            q = torch.randn(B, L, HQ, T, D, generator=g, device=device, dtype=dtype)
            k = torch.randn(B, L, HKV, T, D, generator=g, device=device, dtype=dtype)
            v = torch.randn(B, L, HKV, T, D, generator=g, device=device, dtype=dtype)
            last = torch.full((B,), T - 1, device=device)
            row = {"T": T, "layers": L, "B": B}

            def sdpa():
                for layer in range(L):
                    torch.nn.functional.scaled_dot_product_attention(
                        q[:, layer], k[:, layer].repeat_interleave(HQ // HKV, 1), v[:, layer].repeat_interleave(HQ // HKV, 1),
                        is_causal=True)

            row["sdpa_ms"], row["sdpa_gib"] = _timed(sdpa, device, args.reps)
            if T * T * HQ * L * 4 < 24 * 2**30 or args.tiny:  # eager probabilities only where they fit
                row["eager_ms"], row["eager_gib"] = _timed(
                    lambda: rollout_row_reference(attention_from_qk(q, k), last), device, args.reps)
            row["chunked_ms"], row["chunked_gib"] = _timed(lambda: ops.rollout_row_qk(q, k, last, impl="torch"),
                                                           device, args.reps)
            row["triton_ms"], row["triton_gib"] = _timed(lambda: ops.rollout_row_qk(q, k, last, impl="triton"),
                                                         device, args.reps)
            row["triton_vs_sdpa"] = round(row["triton_ms"] / row["sdpa_ms"], 3)
            # The forward's own log-sum-exp reused (what simulate's capture hands over): one pass over QKᵀ.
            lse = torch.stack([sdpa_with_lse(q[:, layer], k[:, layer], v[:, layer], None, D ** -0.5)[1]
                               for layer in range(L)], 1)
            row["triton_lse_reused_ms"], row["triton_lse_reused_gib"] = _timed(
                lambda: ops.rollout_row_qk(q, k, last, lse=lse, impl="triton"), device, args.reps)
            row["triton_lse_reused_vs_sdpa"] = round(row["triton_lse_reused_ms"] / row["sdpa_ms"], 3)
            rows.append(row)
            print(row, flush=True)
    meta = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "device": torch.cuda.get_device_name() if device.type == "cuda" else f"cpu ({platform.machine()}, interpreter)",
            "torch": torch.__version__, "triton": __import__("triton").__version__, "dtype": str(dtype),
            "command": "python benchmarks/bench_rollout_gpu.py" + (" --tiny" if args.tiny else "")}
    out = write_result(f"rollout_{'tiny' if args.tiny else 'gpu'}",
                       new_result(QUESTION, meta.pop("command"), rows, device=str(meta.get("device")), settings=meta))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
