"""Batched click simulation: `Simulator` (load once, call many times) and `simulate(config)` (files in/out).

Per slate: preprocess + vision tower once; per batch of users: mix prompts, assemble inputs_embeds with
the soft prompt at position 0, decode, read the answer-label logits at the last prompt position
(p_click = softmax over the slate's labels) and roll attention out of the probed layers into slots.
"""

from __future__ import annotations

import platform
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from PIL import Image

from . import ops
from .backbones import Backbone, SlateFeatures, load
from .config import SimulateConfig
from .data.slates import Layout, Slate, read_slates
from .data.tables import SIMULATIONS_SCHEMA, Users, read_pairs, read_users
from .errors import ValidationError
from .exporters.runtimes import FORMATS as EXPORT_FORMATS
from .io import atomic_path, ensure_writable_dir, write_json
from .probes.operators import PROBES, probe
from .prompts import SoftPromptBank
from .seeding import draw_click
from .shards import ShardStore, file_digest, pairs_digest


EXPORTED_BACKENDS = EXPORT_FORMATS  # an export folder runs with the backend named after its format


@dataclass
class SlateResult:
    """p_click [B, S] and slot_relevance [B, S] (float64 rows summing to 1), cold_start [B]."""

    p_click: np.ndarray
    slot_relevance: np.ndarray
    cold_start: list[bool]


class StageTimer:
    """Accumulates wall time per stage (synchronising CUDA so GPU work is charged to the right stage)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.seconds: dict[str, float] = defaultdict(float)

    def stage(self, name: str):
        timer = self

        class _Stage:
            def __enter__(self):
                self.t0 = time.perf_counter()

            def __exit__(self, *exc):
                if timer.device.type == "cuda":
                    torch.cuda.synchronize(timer.device)
                timer.seconds[name] += time.perf_counter() - self.t0

        return _Stage()


class Simulator:
    """A loaded backbone + prompt bank that simulates clicks for in-memory users and slate images."""

    def __init__(self, model: str | Path = "tiny-qwen3vl", *, prompts: SoftPromptBank | Path | None = None,
                 device: str = "auto", dtype: torch.dtype | None = None, probe_layers: tuple[int, ...] | None = None,
                 residual: float = 0.5, pool_mode: str = "auto", kernel: str = "auto", batch_size: int = 8,
                 probe: str = "rollout", backbone: Backbone | None = None, backend: str = "torch") -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
        self.backend = backend
        if backbone is None and backend in EXPORTED_BACKENDS:
            from .backends.exported import ExportedBackbone
            from .errors import UnavailableError
            from .exporters import onnx_status

            if backend == "onnx" and onnx_status():
                raise UnavailableError(onnx_status())
            if probe != "rollout":
                raise UnavailableError(f"--probe {probe} needs gradients: torch backend only (exports carry rollout)")
            backbone = ExportedBackbone.load(Path(model), device=device, backend=backend)
        elif backend not in ("torch", *EXPORTED_BACKENDS):
            raise ValidationError(f"--backend must be torch, {', '.join(EXPORTED_BACKENDS)}; got '{backend}'")
        self.backbone = backbone if backbone is not None else load(model, device=device, dtype=dtype)
        if prompts is not None and not isinstance(prompts, SoftPromptBank):
            source = prompts
            prompts = SoftPromptBank.load(Path(prompts))
            prompts.check_hidden_size(self.backbone.hidden_size, source)
        elif prompts is not None:
            prompts.check_hidden_size(self.backbone.hidden_size)
        if prompts is not None and self.backbone.device.type == "cuda":
            prompts = prompts.to(self.backbone.device, self.backbone.dtype)  # mixed on the device, once per batch
        self.prompts = prompts
        self.probe_layers = tuple(probe_layers) if probe_layers is not None else self.backbone.default_probe_layers
        bad = [layer for layer in self.probe_layers if not 0 <= layer < self.backbone.num_layers]
        if bad:
            raise ValidationError(f"probe layers {bad} outside 0..{self.backbone.num_layers - 1}")
        if probe not in PROBES:
            raise ValidationError(f"probe must be one of {', '.join(PROBES)}, got '{probe}'")
        self.probe = probe
        self.residual = residual
        self.pool_mode = pool_mode
        self.kernel = kernel
        self.batch_size = batch_size
        self.timer = StageTimer(self.backbone.device)
        combine_op = {"rollout": "rollout_row", "attnlrp": "attnlrp_row", "glimpse": "glimpse_row"}[probe]
        if probe == "rollout" and not getattr(self.backbone, "exported", False) and (
                kernel == "triton" or (kernel == "auto" and self.backbone.device.type == "cuda"
                                       and not ops.available("rollout_row_qk", self.backbone.device)["triton"])):
            combine_op = "rollout_row_qk"  # the fused Triton kernel (default on CUDA)
        self._combine_op = combine_op
        self.impls = {
            combine_op: (f"{backend}-graph" if getattr(self.backbone, "exported", False)
                         else ops.resolve(combine_op, kernel, device=self.backbone.device)),
            "slot_pool": ops.resolve("slot_pool", kernel if kernel != "triton" else "auto", device=torch.device("cpu")),
        }

    # ---------------------------------------------------------------------------------- one slate
    def encode_slate(self, image: Image.Image, layout: Layout | None = None) -> SlateFeatures:
        """Vision features of one slate image (checked against ``layout``'s image size when given)."""
        if layout is not None and image.size != layout.image_size:
            raise ValidationError(f"image is {image.size[0]}x{image.size[1]} but layout says {layout.image_size}")
        with self.timer.stage("vision"):
            return self.backbone.encode_slate(image)

    def simulate_slate(self, image: Image.Image | SlateFeatures, layout: Layout, user_ids: list[str],
                       profiles: list[str]) -> SlateResult:
        """Every user in ``user_ids`` on one slate, in batches. The vision tower runs once."""
        feats = image if isinstance(image, SlateFeatures) else self.encode_slate(image, layout)
        label_ids = self.backbone.label_token_ids(layout.labels)
        # On CUDA everything stays on the device until the slate is done: one device→host copy per slate, no
        # synchronising round trip inside the batch loop (pooling runs there with the torch implementation).
        dev = self.backbone.device if self.backbone.device.type == "cuda" else torch.device("cpu")
        pool_impl = "torch" if dev.type == "cuda" else self.impls["slot_pool"]
        slot_boxes = torch.from_numpy(layout.boxes).to(dev)
        token_boxes = torch.as_tensor(feats.token_boxes, dtype=torch.float32, device=dev)
        pool_mode = layout.pool_mode(self.pool_mode)
        p_all, rel_all, cold_all = [], [], []
        for start in range(0, len(user_ids), self.batch_size):
            uids = user_ids[start:start + self.batch_size]
            with self.timer.stage("prompt_assembly"):
                prompts, cold = (self.prompts.mix(uids) if self.prompts is not None else (None, [True] * len(uids)))
                n_soft = prompts.shape[1] if prompts is not None else 0
                inputs = self.backbone.build_inputs(profiles[start:start + self.batch_size], layout.labels, feats, n_soft,
                                                    layout.context)
            with self.timer.stage("decoder_and_probe"):
                out = probe(self.backbone, inputs, feats, prompts, label_ids, method=self.probe,
                            layers=self.probe_layers, residual=self.residual, impl=self.impls[self._combine_op])
                token_rel = out.token_relevance
            with self.timer.stage("pooling"):
                boxes = slot_boxes.expand(len(uids), -1, -1)
                rel = ops.slot_pool(token_rel.float().to(dev), token_boxes, boxes, mode=pool_mode, impl=pool_impl)
            p_all.append(torch.softmax(out.label_logits.double(), dim=-1).to(dev))
            rel_all.append(rel.double())
            cold_all.extend(cold)
        return SlateResult(torch.cat(p_all).cpu().numpy(), torch.cat(rel_all).cpu().numpy(), cold_all)

    # --------------------------------------------------------------------------------- many slates
    def run(self, users: Users, slates: dict[str, Slate], pairs: list[tuple[str, str]] | None = None, *,
            samples: int = 1, seed: int = 0, on_pairs: Callable[[int], None] | None = None) -> pa.Table:
        """Simulate ``pairs`` (default every user × every slate); one output row per (pair, sample), in pair order."""
        if pairs is None:
            pairs = [(u, s) for s in slates for u in users.ids]
        chunks = list(self.iter_chunks(users, slates, pairs, samples=samples, seed=seed, on_pairs=on_pairs))
        return assemble(chunks)

    def iter_chunks(self, users: Users, slates: dict[str, Slate], pairs: list[tuple[str, str]], *, samples: int = 1,
                    seed: int = 0, skip: frozenset[int] = frozenset(), chunk_pairs: int | None = None,
                    on_pairs: Callable[[int], None] | None = None) -> Iterator[pa.Table]:
        """Rows of every pair not in ``skip`` (indices into ``pairs``), as tables of about ``chunk_pairs`` pairs.

        Each table has the simulation columns plus ``pair`` (the pair's index), so chunks written as shards can
        be resumed and reassembled in pair order (``assemble``). Slates are vision-encoded once each.
        """
        profile = dict(zip(users.ids, users.profiles))
        by_slate: dict[str, list[int]] = defaultdict(list)
        for i, (_, sid) in enumerate(pairs):
            if i not in skip:
                by_slate[sid].append(i)
        step = max(chunk_pairs, self.batch_size) if chunk_pairs else None
        pending: list[tuple[int, np.ndarray, np.ndarray, bool]] = []
        for sid, idx in by_slate.items():
            slate = slates[sid]
            with self.timer.stage("preprocess"):
                image = slate.load_image()
            feats = self.encode_slate(image, slate.layout)
            for start in range(0, len(idx), step or len(idx)):
                part = idx[start:start + step] if step else idx
                uids = [pairs[i][0] for i in part]
                res = self.simulate_slate(feats, slate.layout, uids, [profile[u] for u in uids])
                pending.extend(zip(part, res.p_click, res.slot_relevance, res.cold_start))
                if on_pairs is not None:
                    on_pairs(len(part))
                if step and len(pending) >= step:
                    yield self._rows(pending, pairs, slates, samples, seed)
                    pending = []
        if pending:
            yield self._rows(pending, pairs, slates, samples, seed)

    def _rows(self, results: list[tuple[int, np.ndarray, np.ndarray, bool]], pairs: list[tuple[str, str]],
              slates: dict[str, Slate], samples: int, seed: int) -> pa.Table:
        """Draw the clicks (seeded per (seed, user, slate, sample)) and build the output rows of ``results``."""
        with self.timer.stage("sampling"):
            cols: dict[str, list] = defaultdict(list)
            for i, p, rel, cold in sorted(results, key=lambda r: r[0]):
                uid, sid = pairs[i]
                labels = slates[sid].layout.labels
                for k in range(samples):
                    click = draw_click(p, seed, uid, sid, k)
                    for name, value in zip(SHARD_SCHEMA.names,
                                           (uid, sid, k, click, labels[click], p.tolist(), rel.tolist(), cold, i)):
                        cols[name].append(value)
            return pa.table({name: pa.array(cols[name], SHARD_SCHEMA.field(name).type) for name in SHARD_SCHEMA.names},
                            schema=SHARD_SCHEMA)


SHARD_SCHEMA = SIMULATIONS_SCHEMA.append(pa.field("pair", pa.int64()))


def assemble(chunks: list[pa.Table]) -> pa.Table:
    """Chunks with a ``pair`` column → one simulations table in pair order (stable over samples)."""
    if not chunks:
        return SIMULATIONS_SCHEMA.empty_table()
    table = pa.concat_tables(chunks)
    order = np.argsort(table.column("pair").to_numpy(), kind="stable")
    return table.take(pa.array(order)).drop_columns(["pair"])


def slot_summary(table: pa.Table, slates: dict[str, Slate]) -> dict:
    """Per answer label: click share, mean p_click, mean slot relevance (over slates of the commonest layout)."""
    cols = table.to_pydict()
    layouts = [slates[sid].layout.labels for sid in cols["slate_id"]]
    common = max(set(layouts), key=layouts.count)
    keep = [i for i, labels in enumerate(layouts) if labels == common]
    clicks = np.array([cols["click_slot"][i] for i in keep])
    p = np.array([cols["p_click"][i] for i in keep])
    rel = np.array([cols["slot_relevance"][i] for i in keep])
    return {"labels": list(common), "rows": len(keep),
            "click_share": [float(np.mean(clicks == s)) for s in range(len(common))],
            "mean_p_click": p.mean(0).round(6).tolist(), "mean_slot_relevance": rel.mean(0).round(6).tolist()}


def _check_pairs(pairs: list[tuple[str, str]], users: Users, slates: dict[str, Slate], path: Path) -> None:
    known_users = set(users.ids)
    for row, (uid, sid) in enumerate(pairs):
        if uid not in known_users:
            raise ValidationError(f"{path}, row {row}, field 'user_id': unknown user '{uid}'")
        if sid not in slates:
            raise ValidationError(f"{path}, row {row}, field 'slate_id': unknown slate '{sid}'")


def versions() -> dict[str, str]:
    import transformers

    from . import __version__

    return {"fixate_rt": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "numpy": np.__version__, "pyarrow": pa.__version__,
            "cpp_module": str(ops.cpp_available())}


def simulate(config: SimulateConfig, *, on_pairs: Callable[[int], None] | None = None,
             on_start: Callable[[int], None] | None = None) -> dict:
    """Validate inputs, simulate, write ``simulations.parquet`` + ``run.json`` atomically. Returns run.json."""
    t0 = time.perf_counter()
    if config.samples < 1:
        raise ValidationError(f"--samples must be ≥ 1, got {config.samples}")
    users = read_users(config.users)
    slates = read_slates(config.images)
    pairs = read_pairs(config.pairs) if config.pairs is not None else None
    if pairs is not None:
        _check_pairs(pairs, users, slates, config.pairs)
    out = ensure_writable_dir(Path(config.out))
    t_read = time.perf_counter() - t0
    sim = Simulator(config.model, prompts=config.prompts, device=config.device.value, probe_layers=None,
                    residual=config.residual, pool_mode=config.pool_mode.value, kernel=config.kernel.value,
                    batch_size=config.batch_size, probe=config.probe.value, backend=config.backend)
    t_load = time.perf_counter() - t0 - t_read
    if pairs is None:
        pairs = [(u, s) for s in slates for u in users.ids]
    n_pairs = len(pairs)
    store = ShardStore(out, _fingerprint(config, pairs), resume=config.resume)
    resumed = len(store.done)
    if on_start is not None:
        on_start(n_pairs)
    if resumed and on_pairs is not None:
        on_pairs(resumed)
    t_run = time.perf_counter()
    for chunk in sim.iter_chunks(users, slates, pairs, samples=config.samples, seed=config.seed,
                                 skip=frozenset(store.done), chunk_pairs=config.shard_pairs, on_pairs=on_pairs):
        with sim.timer.stage("write"):
            store.write(chunk)
    with sim.timer.stage("write"):
        table = assemble(store.read_all())
        if table.num_rows != n_pairs * config.samples or len(store.done) != n_pairs:
            raise ValidationError(f"{store.dir}: shards hold {table.num_rows} rows for {len(store.done)} pairs; "
                                  f"expected {n_pairs * config.samples} rows for {n_pairs} pairs")
        with atomic_path(out / "simulations.parquet") as tmp:
            pq.write_table(table, tmp)
    run_s = time.perf_counter() - t_run
    info = {
        "command": "simulate",
        "config": config.to_json(),
        "versions": versions(),
        "device": str(sim.backbone.device) if sim.backend == "torch" else ",".join(sim.backbone.providers),
        "backend": sim.backend,
        "backbone": {"name": sim.backbone.name, "family": sim.backbone.family,
                     "hidden_size": sim.backbone.hidden_size, "num_layers": sim.backbone.num_layers,
                     "probe_layers": list(sim.probe_layers)},
        "probe": sim.probe,
        "implementations": sim.impls,
        "pairs": n_pairs,
        "resumed_pairs": resumed,
        "rows": table.num_rows,
        "cold_start_pairs": int(np.sum(table.column("cold_start").to_numpy())) // config.samples,
        "timings_s": {"read_inputs": round(t_read, 4), "load_model": round(t_load, 4),
                      **{k: round(v, 4) for k, v in sim.timer.seconds.items()}, "run_total": round(run_s, 4)},
        "pairs_per_s": round((n_pairs - resumed) / run_s, 3) if run_s > 0 else None,
        "summary": slot_summary(table, slates),
        "outputs": {"simulations": str(out / "simulations.parquet")},
    }
    write_json(out / "run.json", info)
    store.remove()
    return info


def _fingerprint(config: SimulateConfig, pairs: list[tuple[str, str]]) -> dict:
    """What defines the rows of a run (a resumed run must match); batch size, device and kernel may change."""
    return {"pairs": pairs_digest(pairs), "n_pairs": len(pairs), "model": str(config.model),
            "prompts": file_digest(config.prompts), "seed": config.seed, "samples": config.samples,
            "probe": config.probe.value, "pool_mode": config.pool_mode.value, "residual": config.residual,
            "backend": config.backend}
