"""`fixate-rt profile`: stage-by-stage latency of simulation, p50/p90 after warm-up, with device synchronisation.

Stages per batch (one slate, ``batch_size`` users): preprocess, vision (the tower; once per slate), prompt
assembly, decoder (plain forward, no capture), probe (the extra cost of probing: decoder+probe − decoder),
pooling, sampling, write. Throughput counts the vision work once per slate, as `simulate` does. FLOPs come
from the config (decoder matmuls + causal attention + the last-position lm_head); utilisation is reported
against a known peak (``--peak-tflops`` or the device table) and omitted otherwise.
"""

from __future__ import annotations

import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from . import ops
from .data.layout import recgaze_layout
from .data.render import render_slate
from .probes.operators import probe
from .seeding import draw_click

PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}  # dense bf16
STAGES = ("preprocess", "vision", "prompt_assembly", "decoder", "probe", "pooling", "sampling", "write")


def decoder_flops(config, T: int) -> float:
    """Forward FLOPs of one sequence of length T (matmuls ×2, causal attention ≈ half of T²)."""
    c = config.text_config
    d = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    D, hq, hkv, inter = c.hidden_size, c.num_attention_heads, c.num_key_value_heads, c.intermediate_size
    proj = 2 * T * (D * hq * d * 2 + D * hkv * d * 2)  # q, o and k, v
    mlp = 2 * T * 3 * D * inter
    attn = 2 * 2 * hq * d * T * T / 2
    return c.num_hidden_layers * (proj + mlp + attn) + 2 * D * c.vocab_size


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_profile(model: str = "tiny-qwen3vl", *, batch_size: int = 8, pairs: int = 64, backend: str = "torch",
                probe_name: str = "rollout", device: str = "auto", warmup: int = 1, trace: Path | None = None,
                peak_tflops: float | None = None, kernel: str = "auto") -> dict:
    from .simulate import Simulator

    sim = Simulator(model, device=device, batch_size=batch_size, probe=probe_name, backend=backend, kernel=kernel)
    bb, dev = sim.backbone, sim.backbone.device
    layout = recgaze_layout()
    rng = np.random.default_rng(0)
    users = [f"u{i}" for i in range(batch_size)]
    profiles = [f"Top_genre: Drama, Preferred_genres: Crime {i % 10}" for i in range(batch_size)]
    n_batches = max(1, -(-pairs // batch_size))
    times = {s: [] for s in STAGES}
    combine = sim.impls[sim._combine_op]
    seq_len = 0

    def one(record: bool):
        nonlocal seq_len
        image = render_slate([{"title": "Blue Moon", "genre": "Drama"}] * 15, ["Drama", "Comedy", "Crime"], rng)
        stamps = {}

        def stage(name, fn):
            _sync(dev)
            t0 = time.perf_counter()
            out = fn()
            _sync(dev)
            stamps[name] = time.perf_counter() - t0
            return out

        stage("preprocess", lambda: bb.processor.preprocess_image(image))
        feats = stage("vision", lambda: bb.encode_slate(image))
        stamps["vision"] = max(0.0, stamps["vision"] - stamps["preprocess"])  # encode_slate preprocesses too
        label_ids = bb.label_token_ids(layout.labels)
        prompts = None

        def assemble():
            return bb.build_inputs(profiles, layout.labels, feats, 0)

        inputs = stage("prompt_assembly", assemble)
        if backend == "torch":
            with torch.no_grad():
                stage("decoder", lambda: bb.decode(inputs, feats, prompts, label_ids))
        else:
            stage("decoder", lambda: bb.run_exported(inputs, feats, prompts, label_ids))
        out = stage("probe", lambda: probe(bb, inputs, feats, prompts, label_ids, method=probe_name,
                                           layers=bb.default_probe_layers, impl=combine))
        stamps["probe"] = max(0.0, stamps["probe"] - stamps["decoder"])
        boxes = torch.from_numpy(layout.boxes).expand(batch_size, -1, -1)
        stage("pooling", lambda: ops.slot_pool(out.token_relevance.float().cpu(), feats.token_boxes, boxes,
                                               impl=sim.impls["slot_pool"]))
        p = torch.softmax(out.label_logits.double(), -1).cpu().numpy()
        clicks = stage("sampling", lambda: [draw_click(p[i], 0, u, "s", 0) for i, u in enumerate(users)])
        with tempfile.TemporaryDirectory() as tmp:
            stage("write", lambda: pq.write_table(pa.table({"user_id": users, "click_slot": clicks}), Path(tmp) / "x"))
        seq_len = inputs.input_ids.shape[1]
        if record:
            for k, v in stamps.items():
                times[k].append(v)

    for _ in range(warmup):
        one(False)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if trace is not None:
        from torch.profiler import ProfilerActivity, profile as torch_profile

        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
        with torch_profile(activities=acts) as prof:
            for _ in range(n_batches):
                one(True)
        Path(trace).parent.mkdir(parents=True, exist_ok=True)
        prof.export_chrome_trace(str(trace))
    else:
        for _ in range(n_batches):
            one(True)
    per_batch = [sum(times[s][i] for s in STAGES) for i in range(n_batches)]
    total = sum(per_batch)
    flops = decoder_flops(bb.model.config, seq_len) * batch_size if backend == "torch" else None
    dec_p50 = statistics.median(times["decoder"])
    device_name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    peak = peak_tflops or next((v for k, v in PEAK_TFLOPS.items() if k in device_name), None)
    achieved = flops / dec_p50 / 1e12 if flops else None
    return {
        "model": bb.name, "family": bb.family, "backend": backend, "probe": probe_name, "device": device_name,
        "batch_size": batch_size, "batches": n_batches, "pairs": n_batches * batch_size, "sequence_length": seq_len,
        "implementations": sim.impls,
        "stages_ms": {s: {"p50": 1000 * float(np.percentile(times[s], 50)), "p90": 1000 * float(np.percentile(times[s], 90))}
                      for s in STAGES},
        "pairs_per_s": n_batches * batch_size / total,
        "ms_per_pair": 1000 * total / (n_batches * batch_size),
        "peak_memory_gib": (torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda"
                            else (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 2**20),
        "peak_memory_kind": "cuda max_memory_allocated" if dev.type == "cuda" else "growth of process peak RSS",
        "decoder_tflop_per_batch": flops / 1e12 if flops else None,
        "decoder_tflops_achieved": achieved,
        "mfu": achieved / peak if achieved and peak else None,
        "trace": str(trace) if trace else None,
    }
