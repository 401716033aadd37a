"""Batched click simulation: `Simulator` (load once, call many times) and `simulate(config)` (files in/out).

Per slate: preprocess + vision tower once; per batch of users: mix prompts, assemble inputs_embeds with
the soft prompt at position 0, decode, read the answer-label logits at the last prompt position
(p_click = softmax over the slate's labels) and roll attention out of the probed layers into slots.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import torch
from PIL import Image

from . import checks
from .backbones import SlateFeatures, resolve_device
from .backends import Backend, BackendKind, ExportTrust, ModelInfo, describe_model, open_backend
from .config import Kernel, PoolMode, Probe, SimulateConfig, Template, parse_choice, parse_device
from .data.slates import Layout, Slate, read_slates
from .data.tables import Users, read_users
from .data.text import check_id, check_prompt_text
from .errors import FixateError, ValidationError
from .pipeline import Batch, BatchPipeline
from .plan import plan_ops
from .prompts import SoftPromptBank
from .run.layout import PART_SCHEMA
from .seeding import draw_click
from .timing import StageTimer

if TYPE_CHECKING:
    from .run.preflight import Preflight
    from .threads import AdaptiveThreads


@dataclass
class SlateResult:
    """p_click [B, S] and slot_relevance [B, S] (float64 rows summing to 1), cold_start [B], and the drawn
    clicks [B, samples] (int64 slot indices; [B, 0] when no seed was given, so no click was drawn)."""

    p_click: np.ndarray
    slot_relevance: np.ndarray
    cold_start: list[bool]
    clicks: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.int64))


class Simulator:
    """A loaded backend + prompt bank that simulates clicks for in-memory users and slate images.

    Every op is decided once, in ``self.plan`` (`fixate_rt.plan`); batches go through `BatchPipeline`.
    """

    def __init__(self, model: str | Path | ModelInfo = "slates-qwen3vl", *,
                 prompts: SoftPromptBank | str | os.PathLike[str] | None = None,
                 device: str = "auto", dtype: torch.dtype | None = None, probe_layers: tuple[int, ...] | None = None,
                 residual: float = 0.5, pool_mode: PoolMode | str = "auto", kernel: Kernel | str = "auto",
                 batch_size: int = 8, probe: Probe | str = "rollout", backend: BackendKind | str = "auto",
                 trust_export: bool = False, verify_key: Path | str | None = None, loaded: Backend | None = None,
                 template: Template | str = Template.fixate_rt, allow_template_mismatch: bool = False,
                 _preflighted: bool = False) -> None:
        """``model``: an embedded name, a checkpoint folder or an export folder (``backend="auto"`` runs an export
        folder in its own format and uses the prompt bank it ships unless ``prompts`` is given), or its
        `describe_model` description (then ``backend`` is the description's).
        ``trust_export`` / ``verify_key``: how far an export folder is trusted (`fixate_rt.backends.trust`: ONNX
        loads freely; torch.export and TorchScript folders only when trusted or signed by ``verify_key``'s owner).
        ``loaded``: an already loaded backend to reuse (then ``model``, ``device``, ``dtype`` are ignored).
        ``template``: the prompt template (`fixate_rt.template`); a bank trained under another one is refused
        unless ``allow_template_mismatch``. (``_preflighted``: `from_config` has authorised the model and
        checked the bank already.)"""
        checks.integer(batch_size, 1, checks.MAX_BATCH, "batch_size")
        residual = checks.finite(residual, 0.0, 1.0, "residual")
        device = parse_device(device)
        if loaded is None and not isinstance(model, (str, ModelInfo)):
            model = checks.path(model, "model")
        if probe_layers is not None:
            probe_layers = tuple(checks.integer(layer, 0, 4096, "probe_layers[]")
                                 for layer in checks.sequence(probe_layers, "probe_layers"))
        info = None if loaded is not None else model if isinstance(model, ModelInfo) else describe_model(model, backend)
        trust = ExportTrust.of(trust_export, verify_key)
        if info is not None and not _preflighted:
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
        if prompts is not None and not _preflighted:
            if info is not None:
                info.check_bank(prompts, source)
            else:
                prompts.check_hidden_size(loaded.hidden_size, source)
            prompts.check_template(self.template.value, source, allow_mismatch=allow_template_mismatch)
        self.prompts_source = str(source) if prompts is not None else None
        self.backend = loaded if loaded is not None else open_backend(info, device=device, dtype=dtype, trust=trust)
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
        # `fixate_rt.threads.AdaptiveThreads` when the run lets fixate-rt choose threads batch by batch (simulate
        # without --threads on the torch backend); None: the thread count stays as set
        self.thread_controller: AdaptiveThreads | None = None
        self.pipeline = BatchPipeline(self.backend, self.plan, layers=self.probe_layers, residual=residual,
                                      pool_mode=self.pool_mode, timer=self.timer)

    @classmethod
    def from_config(cls, config: SimulateConfig, checked: Preflight) -> Simulator:
        """The simulator of a `fixate-rt simulate` run, built from what `preflight` resolved: the model is
        described, authorised and its prompt bank loaded and checked once, not again here."""
        return cls(checked.info, prompts=checked.bank, device=config.device, residual=config.residual,
                   pool_mode=config.pool_mode, kernel=config.kernel, batch_size=config.batch_size,
                   probe=config.probe, trust_export=config.trust_export, verify_key=config.verify_key,
                   template=config.template, allow_template_mismatch=config.allow_template_mismatch,
                   _preflighted=True)

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

    def _thread_scope(self, pairs: int):
        return self.thread_controller.batch(pairs) if self.thread_controller is not None else nullcontext()

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

            with self._thread_scope(len(uids)):
                out = self.pipeline.run(Batch.one_slate(profiles[start:start + self.batch_size], feats, layout), mix)
            p_all.append(out.p_click)
            rel_all.append(out.slot_relevance.double())
            cold_all.extend(cold)
        p_click = torch.cat(p_all).cpu().numpy()
        clicks = np.zeros((len(user_ids), 0), np.int64)  # no seed: no click drawn
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

    def __call__(self, batch: Mapping[str, Sequence[Any] | np.ndarray]) -> dict[str, np.ndarray]:
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
        batch_pairs = list(zip(uids, sids))
        table = self.simulate_pairs(batch_users, slates, batch_pairs, range(len(batch_pairs)), samples=samples,
                                    seed=seed)
        rows = {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names}
        if "pair" in batch:  # a global pair index (distributed runs) replaces the batch-local one, row by row
            rows["pair"] = np.asarray(batch["pair"], dtype=np.int64)[rows["pair"]]
        else:
            del rows["pair"]
        return rows

    # --------------------------------------------------------------------------------- many slates
    def run(self, users: Users, slates: dict[str, Slate], pairs: list[tuple[str, str]] | None = None, *,
            samples: int = 1, seed: int = 0, on_pairs: Callable[[int], None] | None = None) -> pa.Table:
        """Simulate ``pairs`` (default every user × every slate): one row per (pair, sample), in pair order, with
        the simulation columns plus ``pair`` (the pair's index in ``pairs``)."""
        if not isinstance(users, Users):
            raise ValidationError(f"users: expected fixate_rt's Users (read_users), got {type(users).__name__}")
        checks.integer(samples, 1, checks.MAX_SAMPLES, "samples")
        checks.seed(seed)
        if pairs is None:
            pairs = [(u, s) for s in slates for u in users.ids]
        return self.simulate_pairs(users, slates, pairs, range(len(pairs)), samples=samples, seed=seed,
                                   on_pairs=on_pairs)

    def simulate_pairs(self, users: Users, slates: dict[str, Slate], pairs: list[tuple[str, str]],
                       indices: Sequence[int], *, samples: int = 1, seed: int = 0,
                       on_pairs: Callable[[int], None] | None = None) -> pa.Table:
        """Rows of the pairs at ``indices`` (into ``pairs``; one chunk of a run), sorted by (pair, sample).

        Pairs are grouped by slate so each slate is vision-encoded once; the last few slates' features are kept,
        so a slate whose pairs span two consecutive chunks is not encoded twice.
        """
        profile = dict(zip(users.ids, users.profiles))
        by_slate: dict[str, list[int]] = defaultdict(list)
        for i in indices:
            by_slate[pairs[i][1]].append(i)
        results: list[tuple[int, np.ndarray, np.ndarray, bool]] = []
        for sid, idx in by_slate.items():
            feats = self._features(sid, slates[sid])
            uids = [pairs[i][0] for i in idx]
            res = self.simulate_slate(feats, slates[sid].layout, uids, [profile[u] for u in uids])
            _require_finite(res, uids, sid)
            results.extend(zip(idx, res.p_click, res.slot_relevance, res.cold_start))
            if on_pairs is not None:
                on_pairs(len(idx))
        return self._rows(results, pairs, slates, samples, seed)

    FEATURE_CACHE = 4  # slates whose vision features are kept between chunks

    def _features(self, slate_id: str, slate: Slate) -> SlateFeatures:
        cache = self.__dict__.setdefault("_feature_cache", {})
        key = (slate_id, slate.image_path)
        if key in cache:
            cache[key] = cache.pop(key)  # most recently used last
            return cache[key]
        with self.timer.stage("preprocess"):
            image = slate.load_image()
        feats = self.encode_slate(image, slate.layout)
        cache[key] = feats
        while len(cache) > self.FEATURE_CACHE:
            cache.pop(next(iter(cache)))
        return feats

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
                    for name, value in zip(PART_SCHEMA.names,
                                           (uid, sid, k, click, layout.labels[click], p.tolist(), rel.tolist(), cold,
                                            keys["item_id"], keys["kind"], keys["rank"], keys["row"], keys["col"], i)):
                        cols[name].append(value)
            return pa.table({name: pa.array(cols[name], PART_SCHEMA.field(name).type) for name in PART_SCHEMA.names},
                            schema=PART_SCHEMA)


class NonFiniteOutput(FixateError):
    """The model produced NaN or Inf (a corrupt checkpoint, an overflow); never written as a result."""


def _require_finite(res: SlateResult, uids: list[str], slate_id: str) -> None:
    for name, values in (("p_click", res.p_click), ("slot_relevance", res.slot_relevance)):
        bad = ~np.isfinite(values).all(axis=1)
        if bad.any():
            raise NonFiniteOutput(f"simulation stopped: the model produced non-finite {name} for user "
                                  f"'{uids[int(np.flatnonzero(bad)[0])]}' on slate '{slate_id}' (stage: "
                                  f"{'decoder' if name == 'p_click' else 'probe'}); check the model's weights")


