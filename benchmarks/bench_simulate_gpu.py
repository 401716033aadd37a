"""End-to-end click simulation with the rollout probe: the reference approach vs fixate-rt, same process.

32 users × 8 slates on the Qwen3-VL-4B-shaped random model (`qwen3vl-4b-shape`, bf16) on a GPU:
  (a) reference approach (FixATE's code path): the vision tower for every (user, slate) row, every decoder
      layer eager with `output_attentions=True`, rollout as full matrix products over the probed layers in
      PyTorch, then slot pooling;
  (b) fixate-rt `Simulator.run`: vision once per slate, SDPA everywhere, the fused rollout (Triton on CUDA) on
      the probed layers' Q/K, C++/torch pooling, seeded clicks;
  (c) yardstick: the plain SDPA decoder forward of the same batches (vision once per slate), no probe.
Reports pairs/s, ms per pair and peak memory of each, and the ratios. Targets on an H100 (issue 9):
(b) ≥ 3.5× (a)'s pairs/s, ≤ 18 ms per pair, peak ≤ 16 GB at batch 32.

CPU smoke run: `python benchmarks/bench_simulate_gpu.py --tiny` (tiny model, small counts; timings meaningless
for the targets). Writes benchmarks/results/simulate_{gpu,tiny}.json with device, versions, date, command.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch
from harness import new_result, write_result

QUESTION = "End-to-end simulate throughput on the GPU against the reference approach and the SDPA forward alone."

ROOT = Path(__file__).resolve().parents[1]


def _peak_reset(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _peak_gb(device: torch.device) -> float | None:
    return round(torch.cuda.max_memory_allocated() / 1e9, 2) if device.type == "cuda" else None


def _timed(fn, device: torch.device) -> tuple[float, float | None]:
    _peak_reset(device)
    t0 = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0, _peak_gb(device)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tiny", action="store_true", help="tiny model on CPU (smoke test)")
    ap.add_argument("--users", type=int, default=None)
    ap.add_argument("--slates", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=32)
    args = ap.parse_args()

    from fixate_rt import ops
    from fixate_rt.data.slates import read_slates
    from fixate_rt.data.synth import SynthConfig, write_synth
    from fixate_rt.data.tables import read_users
    from fixate_rt.probes.eager import eager_reference
    from fixate_rt.prompts import SoftPromptBank
    from fixate_rt.simulate import Simulator
    from fixate_rt.versions import versions

    device = torch.device("cuda" if torch.cuda.is_available() and not args.tiny else "cpu")
    model = "tiny-qwen3vl" if args.tiny else "qwen3vl-4b-shape"
    n_users = args.users or (8 if args.tiny else 32)
    n_slates = args.slates or (3 if args.tiny else 8)
    B = min(args.batch_size, n_users)
    work = Path(tempfile.mkdtemp(prefix="bench-simulate-"))
    write_synth(work, SynthConfig(n_users=n_users, n_slates=n_slates, seed=0))
    users, slates = read_users(work / "users.parquet"), read_slates(work / "slates")
    pairs = [(u, s) for s in slates for u in users.ids]

    sim = Simulator(model, device=str(device), batch_size=B, probe="rollout")
    bb = sim.backend
    bank = SoftPromptBank.init(users.ids, n_basis=8, n_tokens=16, hidden_size=bb.hidden_size, seed=0)
    sim.prompts = bank.to(bb.device, bb.dtype) if device.type == "cuda" else bank
    layers = sim.probe_layers
    profiles = dict(zip(users.ids, users.profiles))
    first = next(iter(slates.values()))

    def fixate_rt():
        sim.run(users, slates, pairs, seed=0)

    def sdpa_forward():
        with torch.inference_mode():
            for slate in slates.values():
                feats = bb.encode_slate(slate.load_image())
                label_ids = bb.label_token_ids(slate.layout.labels)
                for start in range(0, n_users, B):
                    uids = list(users.ids[start:start + B])
                    prompts, _ = bank.mix(uids)
                    inputs = bb.build_inputs([profiles[u] for u in uids], slate.layout.labels, feats, 16)
                    bb.decode(inputs, feats, prompts.to(bb.device, bb.dtype), label_ids)

    def reference():
        with torch.inference_mode():
            for slate in slates.values():
                image = slate.load_image()
                label_ids = bb.label_token_ids(slate.layout.labels)
                for start in range(0, n_users, B):
                    uids = list(users.ids[start:start + B])
                    feats = [bb.encode_slate(image) for _ in uids][0]  # the reference encodes every row's image
                    prompts, _ = bank.mix(uids)
                    inputs = bb.build_inputs([profiles[u] for u in uids], slate.layout.labels, feats, 16)
                    _, rel = eager_reference(bb, inputs, feats, prompts.to(bb.device, bb.dtype), layers, "rollout",
                                             label_ids, full_rollout=True, rollout_dtype=torch.float32)
                    ops.slot_pool(rel.float().cpu(), feats.token_boxes,
                                  torch.from_numpy(slate.layout.boxes).expand(len(uids), -1, -1), impl="torch")

    # warm-up on one slate (compilation, autotuning, allocator)
    sim.run(users, {first.slate_id: first}, [(u, first.slate_id) for u in users.ids[:B]])
    rows = {}
    for name, fn in (("sdpa_forward_only", sdpa_forward), ("fixate_rt", fixate_rt), ("reference", reference)):
        try:
            seconds, peak = _timed(fn, device)
            rows[name] = {"seconds": round(seconds, 3), "pairs_per_s": round(len(pairs) / seconds, 2),
                          "ms_per_pair": round(1000 * seconds / len(pairs), 2), "peak_gb": peak}
        except torch.OutOfMemoryError as exc:
            rows[name] = {"error": f"OOM: {str(exc)[:160]}"}
        print(name, rows[name], flush=True)
    ok = all("pairs_per_s" in rows[k] for k in ("fixate_rt", "reference", "sdpa_forward_only"))
    ratios = {}
    if ok:
        ours, ref, sdpa = rows["fixate_rt"], rows["reference"], rows["sdpa_forward_only"]
        ratios = {"fixate_rt_vs_reference_pairs_per_s": round(ours["pairs_per_s"] / ref["pairs_per_s"], 2),
                  "fixate_rt_ms_over_sdpa_forward_ms": round(ours["ms_per_pair"] / sdpa["ms_per_pair"], 2)}
        print("ratios", ratios, flush=True)
    meta = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "device": torch.cuda.get_device_name() if device.type == "cuda" else f"cpu ({platform.machine()})",
            "versions": versions(), "model": model, "dtype": str(bb.dtype), "users": n_users, "slates": n_slates,
            "pairs": len(pairs), "batch_size": B, "probe_layers": list(layers),
            "implementations": sim.plan.record(), "command": "python " + " ".join(sys.argv)}
    out = write_result(f"simulate_{'tiny' if args.tiny else 'gpu'}",
                       new_result(QUESTION, meta.pop("command"), rows, device=str(meta.get("device")), settings=meta,
                                  ratios=ratios))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
