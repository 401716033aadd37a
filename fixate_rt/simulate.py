"""Batched click simulation: `Simulator` (load once, call many times) and `simulate(config)` (files in/out).

Per slate: preprocess + vision tower once; per batch of users: mix prompts, assemble inputs_embeds with
the soft prompt at position 0, decode, read the answer-label logits at the last prompt position
(p_click = softmax over the slate's labels) and roll attention out of the probed layers into slots.
"""

from __future__ import annotations

import datetime
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from PIL import Image

from .backbones import SlateFeatures, resolve_device
from . import checks
from .backends import Backend, BackendKind, ExportTrust, ModelInfo, describe_model, open_backend
from .config import Kernel, PoolMode, Probe, SimulateConfig, Template, parse_choice, parse_device
from .data.text import check_id, check_prompt_text
from .data.join import Inputs, load_inputs
from .digests import run_digests
from .data.slates import Layout, Slate, read_slates
from .data.tables import SIMULATIONS_SCHEMA, Users, read_users
from .errors import FixateError, ValidationError
from .io import atomic_path, write_json
from .locking import interruptible
from .outputs import check_output, owned_output
from .pipeline import Batch, BatchPipeline
from .plan import plan_ops
from .prompts import SoftPromptBank
from .seeding import draw_click
from .shards import ShardStore
from .threads import apply_threads
from .summary import SlotSummary
from .timing import StageTimer
from .versions import versions


@dataclass
class SlateResult:
    """p_click [B, S] and slot_relevance [B, S] (float64 rows summing to 1), cold_start [B], and the drawn
    clicks [B, samples] (slot indices; None unless a seed was given)."""

    p_click: np.ndarray
    slot_relevance: np.ndarray
    cold_start: list[bool]
    clicks: np.ndarray | None = None


class Simulator:
    """A loaded backend + prompt bank that simulates clicks for in-memory users and slate images.

    Every op is decided once, in ``self.plan`` (`fixate_rt.plan`); batches go through `BatchPipeline`.
    """

    def __init__(self, model: str | Path = "tiny-qwen3vl", *, prompts: SoftPromptBank | Path | None = None,
                 device: str = "auto", dtype: torch.dtype | None = None, probe_layers: tuple[int, ...] | None = None,
                 residual: float = 0.5, pool_mode: PoolMode | str = "auto", kernel: Kernel | str = "auto",
                 batch_size: int = 8, probe: Probe | str = "rollout", backend: BackendKind | str = "auto",
                 trust_export: bool = False, verify_key: Path | str | None = None, loaded: Backend | None = None,
                 template: Template | str = Template.fixate_rt, allow_template_mismatch: bool = False) -> None:
        """``model``: an embedded name, a checkpoint folder or an export folder (``backend="auto"`` runs an export
        folder in its own format and uses the prompt bank it ships unless ``prompts`` is given).
        ``trust_export`` / ``verify_key``: how far an export folder is trusted (`fixate_rt.backends.trust`: ONNX
        loads freely; torch.export and TorchScript folders only when trusted or signed by ``verify_key``'s owner).
        ``loaded``: an already loaded backend to reuse (then ``model``, ``device``, ``dtype`` are ignored).
        ``template``: the prompt template (`fixate_rt.template`); a bank trained under another one is refused
        unless ``allow_template_mismatch``."""
        checks.integer(batch_size, 1, checks.MAX_BATCH, "batch_size")
        residual = checks.finite(residual, 0.0, 1.0, "residual")
        device = parse_device(device)
        if loaded is None and not isinstance(model, str):
            model = checks.path(model, "model")
        if probe_layers is not None:
            probe_layers = tuple(checks.integer(layer, 0, 4096, "probe_layers[]")
                                 for layer in checks.sequence(probe_layers, "probe_layers"))
        info = describe_model(model, backend) if loaded is None else None
        trust = ExportTrust.of(trust_export, verify_key)
        if info is not None:
            info.authorise(trust)  # before the bank or anything else of the folder is read
        kind = loaded.kind if loaded is not None else info.kind
        self.pool_mode = parse_choice(PoolMode, pool_mode, "pool_mode").value
        self.template = parse_choice(Template, template, "template")
        # Everything that can be checked is checked before any weights load: the op plan (an impossible
        # probe/kernel/device combination) and the prompt bank (shape, hidden size, backbone).
        target = loaded.device if loaded is not None else (torch.device("cpu") if kind.exported
                                                           else resolve_device(device))
        self.plan = plan_ops(probe, kernel, target, backend=kind)
        if prompts is None and info is not None and info.bundled_prompts is not None:
            prompts = info.bundled_prompts
        if prompts is not None and not isinstance(prompts, SoftPromptBank):
            source = prompts
            prompts = SoftPromptBank.load(Path(prompts))
        else:
            source = "prompt bank"
        if prompts is not None:
            if info is not None:
                info.check_bank(prompts, source)
            else:
                prompts.check_hidden_size(loaded.hidden_size, source)
            prompts.check_template(self.template.value, source, allow_mismatch=allow_template_mismatch)
        self.prompts_source = str(source) if prompts is not None else None
        self.backend = loaded if loaded is not None else open_backend(model, kind, device=device, dtype=dtype,
                                                                      trust=trust)
        self.backend.use_template(self.template)
        if prompts is not None and self.backend.device.type == "cuda":
            prompts = prompts.to(self.backend.device, self.backend.dtype)  # mixed on the device, once per batch
        self.prompts = prompts
        self.probe_layers = tuple(probe_layers) if probe_layers is not None else self.backend.default_probe_layers
        bad = [layer for layer in self.probe_layers if not 0 <= layer < self.backend.num_layers]
        if bad:
            raise ValidationError(f"probe layers {bad} outside 0..{self.backend.num_layers - 1}")
        self.residual = residual
        self.batch_size = batch_size
        self.timer = StageTimer(self.backend.device)
        self.pipeline = BatchPipeline(self.backend, self.plan, layers=self.probe_layers, residual=residual,
                                      pool_mode=self.pool_mode, timer=self.timer)

    @property
    def probe(self) -> str:
        return self.plan.probe.value

    # ---------------------------------------------------------------------------------- one slate
    def encode_slate(self, image: Image.Image, layout: Layout | None = None) -> SlateFeatures:
        """Vision features of one slate image (checked against ``layout``'s image size when given)."""
        if layout is not None and image.size != layout.image_size:
            raise ValidationError(f"image is {image.size[0]}x{image.size[1]} but layout says {layout.image_size}")
        with self.timer.stage("vision"):
            return self.backend.encode_slate(image)

    def simulate_slate(self, image: Image.Image | SlateFeatures, layout: Layout, user_ids: list[str],
                       profiles: list[str] | None = None, *, slate_id: str = "", seed: int | None = None,
                       samples: int = 1) -> SlateResult:
        """Every user in ``user_ids`` on one slate, in batches. The vision tower runs once.

        ``profiles`` default to empty. With ``seed``, ``samples`` clicks per user are drawn exactly as
        `fixate-rt simulate --seed` draws them for (user, ``slate_id``).
        """
        user_ids = checks.user_ids(user_ids)
        profiles = checks.profiles(profiles, len(user_ids))
        if not isinstance(layout, Layout):
            raise ValidationError(f"layout: expected a fixate_rt Layout, got {type(layout).__name__}")
        if not isinstance(image, (Image.Image, SlateFeatures)):
            hint = " (convert an array with PIL.Image.fromarray)" if hasattr(image, "__array__") else ""
            raise ValidationError(f"image: expected a PIL image or encoded SlateFeatures, got "
                                  f"{type(image).__name__}{hint}")
        if isinstance(image, Image.Image) and image.size != layout.image_size:
            raise ValidationError(f"image is {image.size[0]}x{image.size[1]} but the layout says "
                                  f"{layout.image_size[0]}x{layout.image_size[1]}")
        checks.integer(samples, 1, checks.MAX_SAMPLES, "samples")
        if seed is not None:
            checks.seed(seed)
        slate_id = check_id(slate_id, "slate_id") if slate_id != "" else slate_id
        feats = image if isinstance(image, SlateFeatures) else self.encode_slate(image, layout)
        # On CUDA everything stays on the device until the slate is done: one device→host copy per slate.
        p_all, rel_all, cold_all = [], [], []
        for start in range(0, len(user_ids), self.batch_size):
            uids = user_ids[start:start + self.batch_size]
            cold: list[bool] = []

            def mix(uids=uids, cold=cold):
                prompts, flags = (self.prompts.mix(uids) if self.prompts is not None else (None, [True] * len(uids)))
                cold.extend(flags)
                return prompts

            out = self.pipeline.run(Batch.one_slate(profiles[start:start + self.batch_size], feats, layout), mix)
            p_all.append(out.p_click)
            rel_all.append(out.slot_relevance.double())
            cold_all.extend(cold)
        p_click = torch.cat(p_all).cpu().numpy()
        clicks = None
        if seed is not None:
            clicks = np.array([[draw_click(p, seed, uid, slate_id, k) for k in range(samples)]
                               for uid, p in zip(user_ids, p_click)], dtype=np.int64)
        return SlateResult(p_click, torch.cat(rel_all).cpu().numpy(), cold_all, clicks)

    # ------------------------------------------------------------------------ batch dicts (Ray, datasets)
    def bind(self, slates: dict[str, Slate] | Path | str, users: Users | Path | str | None = None, *,
             samples: int = 1, seed: int = 0) -> Simulator:
        """Attach the slates (a folder or `read_slates`' dict) and optionally the users (for their profiles) that
        batch calls refer to by id; returns self, ready for ``simulator(batch)``."""
        if isinstance(slates, (str, Path)):
            slates = read_slates(Path(slates))
        if isinstance(users, (str, Path)):
            users = read_users(Path(users))
        checks.integer(samples, 1, checks.MAX_SAMPLES, "samples")
        checks.seed(seed)
        self._bound = (slates, users, samples, seed)
        return self

    def __call__(self, batch: Mapping[str, Sequence]) -> dict[str, np.ndarray]:
        """One batch of (user, slate) pairs -> simulation rows: ``{"user_id": [...], "slate_id": [...]}`` (and an
        optional ``profile`` column) in, the columns of simulations.parquet out (``samples`` rows per pair, in
        input order). Drop-in for ``ray.data.Dataset.map_batches`` and ``datasets.Dataset.map(batched=True)``."""
        if not hasattr(self, "_bound"):
            raise ValidationError("call Simulator.bind(slates=..., users=...) before passing it batches")
        slates, users, samples, seed = self._bound
        for column in ("user_id", "slate_id"):
            if column not in batch:
                raise ValidationError(f"batch: missing column '{column}' (have {', '.join(map(str, batch))})")
        uids = [check_id(str(u), f"batch, row {i}, field 'user_id'") for i, u in enumerate(batch["user_id"])]
        sids = [str(s) for s in batch["slate_id"]]
        if len(uids) != len(sids):
            raise ValidationError(f"batch: {len(uids)} user_id values but {len(sids)} slate_id values")
        known = dict(zip(users.ids, users.profiles)) if users is not None else {}
        if "profile" in batch:
            given = [check_prompt_text(str(p) if p is not None else "", f"batch, row {i}, field 'profile'")
                     for i, p in enumerate(batch["profile"])]
        else:
            given = [known.get(u, "") for u in uids]
        for row, sid in enumerate(sids):
            if sid not in slates:
                raise ValidationError(f"batch, row {row}, field 'slate_id': unknown slate '{sid}'")
        profile_of = dict(zip(uids, given))
        batch_users = Users(tuple(profile_of), tuple(profile_of.values()))
        table = assemble(list(self.iter_chunks(batch_users, slates, list(zip(uids, sids)), samples=samples,
                                               seed=seed)))
        rows = {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names}
        if "pair" in batch:  # a global pair index (distributed runs) passes through, one per output row
            rows["pair"] = np.repeat(np.asarray(batch["pair"], dtype=np.int64), samples)
        return rows

    # --------------------------------------------------------------------------------- many slates
    def run(self, users: Users, slates: dict[str, Slate], pairs: list[tuple[str, str]] | None = None, *,
            samples: int = 1, seed: int = 0, on_pairs: Callable[[int], None] | None = None) -> pa.Table:
        """Simulate ``pairs`` (default every user × every slate); one output row per (pair, sample), in pair order."""
        if not isinstance(users, Users):
            raise ValidationError(f"users: expected fixate_rt's Users (read_users), got {type(users).__name__}")
        checks.integer(samples, 1, checks.MAX_SAMPLES, "samples")
        checks.seed(seed)
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
                _require_finite(res, uids, sid)
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
                layout = slates[sid].layout
                for k in range(samples):
                    click = draw_click(p, seed, uid, sid, k)
                    keys = layout.slot_keys(click)
                    for name, value in zip(SHARD_SCHEMA.names,
                                           (uid, sid, k, click, layout.labels[click], p.tolist(), rel.tolist(), cold,
                                            keys["item_id"], keys["kind"], keys["rank"], keys["row"], keys["col"], i)):
                        cols[name].append(value)
            return pa.table({name: pa.array(cols[name], SHARD_SCHEMA.field(name).type) for name in SHARD_SCHEMA.names},
                            schema=SHARD_SCHEMA)


class NonFiniteOutput(FixateError):
    """The model produced NaN or Inf (a corrupt checkpoint, an overflow); never written as a result."""


def _require_finite(res: SlateResult, uids: list[str], slate_id: str) -> None:
    for name, values in (("p_click", res.p_click), ("slot_relevance", res.slot_relevance)):
        bad = ~np.isfinite(values).all(axis=1)
        if bad.any():
            raise NonFiniteOutput(f"simulation stopped: the model produced non-finite {name} for user "
                                  f"'{uids[int(np.flatnonzero(bad)[0])]}' on slate '{slate_id}' (stage: "
                                  f"{'decoder' if name == 'p_click' else 'probe'}); check the model's weights")


SHARD_SCHEMA = SIMULATIONS_SCHEMA.append(pa.field("pair", pa.int64()))


def assemble(chunks: list[pa.Table]) -> pa.Table:
    """Chunks with a ``pair`` column → one simulations table in pair order (stable over samples)."""
    if not chunks:
        return SIMULATIONS_SCHEMA.empty_table()
    table = pa.concat_tables(chunks)
    order = np.argsort(table.column("pair").to_numpy(), kind="stable")
    return table.take(pa.array(order)).drop_columns(["pair"])


@dataclass
class Preflight:
    """What `preflight` read and checked: the inputs, the model's description and the prompt bank (or None)."""

    data: Inputs
    info: ModelInfo
    bank: SoftPromptBank | None
    bank_source: Path | None


def preflight(config: SimulateConfig) -> Preflight:
    """Every check that needs no model: options, inputs and their cross-references, the model's backend, the
    slate sizes an export serves, and the prompt bank (readable, finite, its shape and hidden size, its
    template). Shared by the local and the distributed engine; nothing is written before it passes."""
    if config.samples < 1:
        raise ValidationError(f"--samples must be ≥ 1, got {config.samples}")
    data = load_inputs(users=config.users, images=config.images, pairs=config.pairs)
    info = describe_model(config.model, config.backend)
    info.authorise(ExportTrust.of(config.trust_export, config.verify_key))  # before any file of the folder is read
    info.check_labels(data.slates, config.images)
    unserved = info.unserved_sizes({slate.layout.image_size for slate in data.slates.values()})
    if unserved:
        sid = next(s for s, slate in data.slates.items() if slate.layout.image_size in set(unserved))
        w, h = data.slates[sid].layout.image_size
        raise ValidationError(f"{config.images}, slate '{sid}': {w}x{h} is not served by the export in {config.model} "
                              f"(it serves {info.served_sizes_text()}); re-export adding --image-size {w}x{h}")
    source = config.prompts or info.bundled_prompts
    bank = None
    if source is not None:
        bank = SoftPromptBank.load(Path(source))
        info.check_bank(bank, source)
        bank.check_template(config.template.value, source, allow_mismatch=config.allow_template_mismatch)
    return Preflight(data, info, bank, Path(source) if source is not None else None)


def run_inputs(config: SimulateConfig) -> tuple[Path | None, ...]:
    """The paths a simulation reads (its --out may neither be nor contain one of them)."""
    model = Path(str(config.model))
    return (config.users, config.images, config.pairs, config.prompts, model if model.exists() else None,
            config.verify_key)


def run_simulation(config: SimulateConfig, *, on_pairs: Callable[[int], None] | None = None,
                   on_start: Callable[[int], None] | None = None) -> dict:
    """Validate inputs, simulate, write ``simulations.parquet`` + ``run.json`` atomically. Returns run.json."""
    t0 = time.perf_counter()
    started = utc_now()
    checked = preflight(config)
    data = checked.data
    users, slates, pairs = data.users, data.slates, data.all_pairs()
    check_output(config.out, "simulate", inputs=run_inputs(config), overwrite=config.overwrite, resume=config.resume)
    thread_info = apply_threads(config.threads)
    t_read = time.perf_counter() - t0
    # loaded before --out is created: a model or export folder that cannot load leaves nothing behind
    sim = Simulator(config.model, prompts=checked.bank, device=config.device, probe_layers=None,
                    residual=config.residual, pool_mode=config.pool_mode, kernel=config.kernel,
                    batch_size=config.batch_size, probe=config.probe, backend=config.backend,
                    trust_export=config.trust_export, verify_key=config.verify_key, template=config.template,
                    allow_template_mismatch=config.allow_template_mismatch)
    t_load = time.perf_counter() - t0 - t_read
    with owned_output(config.out, "simulate", inputs=run_inputs(config), overwrite=config.overwrite,
                      resume=config.resume) as out:  # locked: one run per --out, shards never interleaved
        n_pairs = len(pairs)
        digests = run_digests(config.model, users, slates, pairs, checked.bank_source)
        store = ShardStore(out, _fingerprint(config, sim, digests, len(pairs)), resume=config.resume)
        resumed = len(store.done)
        if on_start is not None:
            on_start(n_pairs)
        if resumed and on_pairs is not None:
            on_pairs(resumed)
        t_run = time.perf_counter()
        def kept() -> str:
            return (f"{len(store.done)} of {n_pairs} pairs are kept in {store.dir}; rerun the same command with "
                    "--resume to continue")

        with interruptible(kept):
            for chunk in sim.iter_chunks(users, slates, pairs, samples=config.samples, seed=config.seed,
                                         skip=frozenset(store.done), chunk_pairs=config.shard_pairs,
                                         on_pairs=on_pairs):
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
            "started_at": started,
            "finished_at": utc_now(),
            "config": config.to_json(),
            "digests_sha256": digests,
            "versions": versions(),
            "device": sim.backend.device_label(),
            "backend": sim.backend.kind.value,
            "threads": thread_info,
            "export_trust": getattr(sim.backend, "authorised_by", None),
            "export_runtime": getattr(sim.backend, "runtime_options", None),
            "quantization": getattr(sim.backend, "quantization", None),
            "backbone": {"name": sim.backend.name, "family": sim.backend.family,
                         "hidden_size": sim.backend.hidden_size, "num_layers": sim.backend.num_layers,
                         "probe_layers": list(sim.probe_layers)},
            "probe": sim.probe,
            "template": sim.template.value,
            "implementations": sim.plan.record(),
            "pairs": n_pairs,
            "resumed_pairs": resumed,
            "rows": table.num_rows,
            "cold_start_pairs": int(np.sum(table.column("cold_start").to_numpy())) // config.samples,
            "timings_s": {"read_inputs": round(t_read, 4), "load_model": round(t_load, 4), **sim.timer.rounded(),
                          "run_total": round(run_s, 4)},
            "pairs_per_s": round((n_pairs - resumed) / run_s, 3) if run_s > 0 else None,
            "summary": _summary(table, slates),
            "outputs": {"simulations": str(out / "simulations.parquet")},
        }
        write_json(out / "run.json", info)
        store.remove()
        return info


def _fingerprint(config: SimulateConfig, sim: Simulator, digests: dict, n_pairs: int) -> dict:
    """Everything that changes a row (a resumed run must match it): the inputs' and model's digests, the probe,
    pooling, seed and samples, the backend. Batch size, device and kernel may change."""
    return {**{f"{name}_sha256": value for name, value in digests.items()}, "n_pairs": n_pairs,
            "model": str(config.model), "seed": config.seed, "samples": config.samples, "probe": config.probe.value,
            "pool_mode": config.pool_mode.value, "residual": config.residual, "backend": sim.backend.kind.value,
            "template": config.template.value}


def _summary(table: pa.Table, slates: dict[str, Slate]) -> dict:
    summary = SlotSummary(slates)
    summary.add(table)
    return summary.result()


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
