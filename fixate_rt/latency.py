"""`fixate-rt profile`: stage-by-stage latency of `simulate`'s own pipeline, after warm-up, with device sync.

The stages are the ones `simulate` times (the same `Simulator` and `BatchPipeline` run here): preprocess and
vision once per slate; prompt assembly, decoder_and_probe and pooling per batch; sampling and write per chunk.
Besides, each batch's plain decoder forward (no capture) is timed on the side, so ``probe`` = decoder_and_probe
− decoder is the cost of probing; that side measurement is not part of the stage sum. The stage sum per pair is
what `simulate` spends per pair on the same data. FLOPs come from the config (decoder matmuls + causal attention
+ the last-position lm_head); utilisation is reported against a known peak (``--peak-tflops`` or the device
table) and omitted otherwise.
"""

from __future__ import annotations

import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

from .data.join import load_inputs
from .errors import ValidationError

PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}  # dense bf16
STAGES = ("preprocess", "vision", "prompt_assembly", "decoder_and_probe", "pooling", "sampling", "write")


def decoder_flops(config, T: int) -> float:
    """Forward FLOPs of one sequence of length T (matmuls ×2, causal attention ≈ half of T²)."""
    c = config.text_config
    d = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    D, hq, hkv, inter = c.hidden_size, c.num_attention_heads, c.num_key_value_heads, c.intermediate_size
    proj = 2 * T * (D * hq * d * 2 + D * hkv * d * 2)  # q, o and k, v
    mlp = 2 * T * 3 * D * inter
    attn = 2 * 2 * hq * d * T * T / 2
    return c.num_hidden_layers * (proj + mlp + attn) + 2 * D * c.vocab_size


def _stage_stats(samples: list[float], pairs: int) -> dict[str, float]:
    """p50/p90 of one stage's timed calls (per slate or per batch) and its total per pair, in ms."""
    if not samples:
        return {"p50": 0.0, "p90": 0.0, "calls": 0, "total": 0.0, "per_pair": 0.0}
    return {"p50": 1000 * float(np.percentile(samples, 50)), "p90": 1000 * float(np.percentile(samples, 90)),
            "calls": len(samples), "total": 1000 * float(sum(samples)), "per_pair": 1000 * float(sum(samples)) / pairs}


def _profile_data(folder: Path, users: Path | None, images: Path | None, batch_size: int, slates_needed: int):
    """The given users and slates, or synthetic ones: ``batch_size`` users (one batch per slate)."""
    if users is None or images is None:
        from .data.synth import SynthConfig, write_synth

        write_synth(folder, SynthConfig(n_users=max(2, batch_size), n_slates=max(3, slates_needed), seed=0))
        users, images = folder / "users.parquet", folder / "slates"
    return load_inputs(users=users, images=images)


def run_profile(model: str = "slates-qwen3vl", *, batch_size: int = 8, pairs: int | None = None,
                backend: str = "auto", probe_name: str = "rollout", device: str = "auto", warmup: int = 1,
                trace: Path | None = None, peak_tflops: float | None = None, kernel: str = "auto",
                users: Path | None = None, images: Path | None = None, threads: int | None = None) -> dict:
    """Run `simulate`'s own pipeline (`Simulator`) and time it stage by stage.

    On ``users``/``images`` when given (default: all their pairs), else on synthetic slates with ``batch_size``
    users each (default 64 pairs). The first ``warmup`` batches run untimed. Returns the report dict.
    """
    from .run.layout import chunk_ranges, part_name
    from .simulate import Simulator
    from .threads import apply_threads

    thread_info = apply_threads(threads)

    if peak_tflops is not None and not (np.isfinite(peak_tflops) and peak_tflops > 0):
        raise ValidationError(f"--peak-tflops must be a positive number, got {peak_tflops}")
    given = users is not None and images is not None
    n_timed = pairs if pairs is not None else (None if given else 64)
    tmp_dir = tempfile.TemporaryDirectory()
    tmp = Path(tmp_dir.name)
    n_batches = -(-(n_timed or 64) // batch_size)
    try:  # the inputs are read and checked before the model loads
        data = _profile_data(tmp / "data", users, images, batch_size, n_batches + warmup)
        from .backends import describe_model

        sim = Simulator(model, device=device, batch_size=batch_size, probe=probe_name, backend=backend, kernel=kernel)
        weights = describe_model(model, backend).announce_weights()  # timing a random model is fine; said once
    except BaseException:
        tmp_dir.cleanup()
        raise
    bb, dev = sim.backend, sim.backend.device
    decoder_only: list[float] = []
    seq_len = 0

    def time_plain_decoder(inputs, slates, prompts, label_ids) -> None:
        """The decoder alone (no capture) on the same batch, outside the pipeline's stages: probe = difference."""
        nonlocal seq_len
        seq_len = int(inputs.input_ids.shape[1])
        t0 = time.perf_counter()
        with torch.no_grad():
            bb.decode(inputs, slates, prompts, label_ids)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        decoder_only.append(time.perf_counter() - t0)

    sim.pipeline.on_inputs = time_plain_decoder
    with tmp_dir:
        all_pairs = data.all_pairs()
        n_warm = min(len(all_pairs) - 1, warmup * batch_size)
        warm, timed = all_pairs[:n_warm], all_pairs[n_warm:]
        timed = timed[:n_timed] if n_timed is not None else timed
        if warm:
            sim.run(data.users, data.slates, warm)
        sim.timer.reset()
        decoder_only.clear()
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

        def timed_run() -> None:
            for c, span in enumerate(chunk_ranges(len(timed), 4096)):  # simulate's default --shard-pairs
                rows = sim.simulate_pairs(data.users, data.slates, timed, span)
                with sim.timer.stage("write"):  # as simulate: one part file per chunk
                    pq.write_table(rows, tmp / part_name(c))

        t0 = time.perf_counter()
        if trace is not None:
            from torch.profiler import ProfilerActivity
            from torch.profiler import profile as torch_profile

            acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
            with torch_profile(activities=acts) as prof:
                timed_run()
            Path(trace).parent.mkdir(parents=True, exist_ok=True)
            prof.export_chrome_trace(str(trace))
        else:
            timed_run()
        wall = time.perf_counter() - t0
    n = len(timed)
    stages = {name: _stage_stats(sim.timer.samples.get(name, []), n) for name in STAGES}
    stages["decoder"] = _stage_stats(decoder_only, n)
    probe_extra = [max(0.0, a - b) for a, b in zip(sim.timer.samples.get("decoder_and_probe", []), decoder_only)]
    stages["probe"] = _stage_stats(probe_extra, n)
    stage_sum = sum(stages[name]["total"] for name in STAGES) / 1000
    flops = decoder_flops(bb.model.config, seq_len) * batch_size if hasattr(bb, "model") and seq_len else None
    dec_p50 = stages["decoder"]["p50"] / 1000
    device_name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    peak = peak_tflops or next((v for k, v in PEAK_TFLOPS.items() if k in device_name), None)
    achieved = flops / dec_p50 / 1e12 if flops and dec_p50 > 0 else None
    return {
        "model": bb.name, "model_weights": weights, "family": bb.family, "backend": bb.kind.value, "probe": sim.probe,
        "device": device_name, "threads": thread_info,
        "data": {"users": str(users), "images": str(images)} if given else "synthetic",
        "batch_size": batch_size, "pairs": n, "warmup_pairs": len(warm), "sequence_length": seq_len,
        "implementations": sim.plan.record(),
        "stages_ms": stages,
        "stage_sum_s": stage_sum, "wall_s": wall,
        "pairs_per_s": n / stage_sum if stage_sum > 0 else None,
        "ms_per_pair": 1000 * stage_sum / n,
        "peak_memory_gib": (torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda"
                            else (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 2**20),
        "peak_memory_kind": "cuda max_memory_allocated" if dev.type == "cuda" else "growth of process peak RSS",
        "decoder_tflop_per_batch": flops / 1e12 if flops else None,
        "decoder_tflops_achieved": achieved,
        "mfu": achieved / peak if achieved and peak else None,
        "trace": str(trace) if trace else None,
    }
