"""What a `--model` is, read from its JSON files only: which backend runs it, its hidden size, the prompt bank
it ships, the slate sizes it serves. Every mismatch is found here, before any weights or graphs are loaded.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from ..config import RANDOM_MODELS, RANDOM_WEIGHTS, BackendKind, parse_choice
from ..errors import InputError, ValidationError
from .graph_runtime import MANIFEST, read_manifest
from .safe_load import member_path
from .trust import ExportTrust, authorise

_ANNOUNCED: set[str] = set()


@dataclass(frozen=True)
class ModelInfo:
    """``kind`` is resolved (never ``auto``); ``manifest`` is set for export folders."""

    source: str
    kind: BackendKind
    backbone: str
    hidden_size: int
    manifest: dict | None = None
    _authorised: dict = field(default_factory=dict, compare=False, repr=False)  # ExportTrust -> how (memo)

    @property
    def weights(self) -> str:
        """`RANDOM_WEIGHTS` for a random built-in (or an export of one), else "trained"."""
        return RANDOM_WEIGHTS if self.backbone in RANDOM_MODELS else "trained"

    def announce_weights(self) -> str:
        """Say once per process, on the ``fixate_rt`` logger (the CLI shows it on stderr), that a random-weight
        model's numbers mean nothing; returns `weights` for run.json and the other records."""
        if self.weights != "trained" and self.backbone not in _ANNOUNCED:
            _ANNOUNCED.add(self.backbone)
            logging.getLogger("fixate_rt").warning(
                f"{self.backbone}: {RANDOM_WEIGHTS} — its clicks and relevance mean nothing; the pretrained built-in "
                "is slates-qwen3vl (the default)")
        return self.weights

    def folder(self) -> Path:
        """Where the model's files are: the export or checkpoint folder, or an embedded model's folder (a random
        ``tiny-*`` one is written on first use)."""
        if self.manifest is not None:
            return Path(self.source)
        from ..backbones.builtins import builtin_folder

        return builtin_folder(self.source) or Path(self.source)

    @property
    def bundled_prompts(self) -> Path | None:
        """The prompt bank an export folder ships (used when no --prompts is given)."""
        if self.manifest is None or not self.manifest.get("prompts"):
            return None
        return member_path(Path(self.source), self.manifest["prompts"], Path(self.source) / MANIFEST, "prompts")

    def authorise(self, trust: ExportTrust) -> str | None:
        """For an export folder: may it load under ``trust`` (`fixate_rt.backends.trust`)? Raises one line if not;
        returns how it was authorised. None for checkpoints (loaded from safetensors, never code)."""
        if self.manifest is None:
            return None
        if trust not in self._authorised:  # a signature is verified once per description, not per caller
            self._authorised[trust] = authorise(Path(self.source), self.kind.value, trust)
        return self._authorised[trust]

    def check_bank(self, bank, source: object) -> None:
        """A bank fits this model: same hidden size, and (for export folders) trained on the same backbone."""
        bank.check_hidden_size(self.hidden_size, source)
        if self.manifest is not None and bank.backbone and bank.backbone != self.backbone:
            raise ValidationError(f"{source}: prompt bank trained on backbone '{bank.backbone}' but the export in "
                                  f"{self.source} is of '{self.backbone}'")

    def unserved_sizes(self, sizes: set[tuple[int, int]]) -> list[tuple[int, int]]:
        """Slate sizes (W, H) the export's vision graph cannot encode (empty for the torch backend)."""
        if self.manifest is None:
            return []
        vision = self.manifest.get("vision", {})
        if vision.get("serves") == "any":
            return []
        served = {tuple(entry["image_size"]) for entry in vision.get("sizes", [])}
        grids = {tuple(map(tuple, entry["grid_thw"])) for entry in vision.get("sizes", []) if "grid_thw" in entry}
        if not grids:
            return sorted(s for s in sizes if s not in served)
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

        from ..backbones.processor import qwen_grid

        processor = Qwen2VLImageProcessorPil.from_pretrained(self.source)
        return sorted(s for s in sizes if s not in served and tuple(map(tuple, qwen_grid(processor, s))) not in grids)

    def check_labels(self, slates: dict, images: object) -> None:
        """Every slate's answer labels are single tokens of this model's tokenizer (read from its files alone, no
        weights), so a bad label is named with its slate before any model loads."""
        from ..backbones.processor import single_token_ids

        tokenizer = self._tokenizer()
        checked: set[tuple[str, ...]] = set()
        for slate_id, slate in slates.items():
            labels = slate.layout.labels
            if labels in checked:
                continue
            try:
                single_token_ids(tokenizer, labels)
            except ValidationError as exc:
                raise ValidationError(f"{images}, slate '{slate_id}', field 'labels': {exc}") from None
            checked.add(labels)

    def _tokenizer(self):
        from transformers import AutoTokenizer

        from ..backbones import model_folder

        folder = Path(self.source) if self.manifest is not None else model_folder(self.source)[0]
        try:
            return AutoTokenizer.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise InputError(f"{folder}: cannot read the tokenizer ({first})") from None

    def served_sizes_text(self) -> str:
        sizes = (self.manifest or {}).get("vision", {}).get("sizes", [])
        return ", ".join(f"{e['image_size'][0]}x{e['image_size'][1]}" for e in sizes) or "none"


def _torch_hidden_size(model: str) -> tuple[str, int]:
    from ..backbones import read_config
    from ..backbones.builtins import builtin_names
    from ..backbones.tiny import SHAPES

    if model in SHAPES:  # a random built-in: known without writing it
        return model, int(SHAPES[model][1]["hidden_size"])
    config = Path(model) / "config.json"
    if model in builtin_names():
        from ..backbones.builtins import builtin_folder

        config = builtin_folder(model) / "config.json"
    if not config.is_file():
        raise InputError(f"{model}: not a model folder (no config.json); use a local checkpoint or one of "
                         f"{', '.join(builtin_names())}")
    payload = read_config(config)
    try:
        text = payload.get("text_config") or payload.get("llm_config") or payload
        return model, int(text["hidden_size"])
    except (KeyError, TypeError, ValueError, AttributeError):
        raise ValidationError(f"{config}, field 'text_config.hidden_size': missing or not an integer") from None


def describe_model(model: str | Path, kind: BackendKind | str = BackendKind.auto) -> ModelInfo:
    """Resolve ``--backend`` for ``--model`` and read what can be checked without loading anything."""
    kind = parse_choice(BackendKind, kind, "backend")
    model = str(model)
    manifest = read_manifest(Path(model), verify_files=False) if (Path(model) / MANIFEST).is_file() else None
    runtime = manifest.get("runtime", "onnx") if manifest is not None else None
    if kind is BackendKind.auto:
        kind = BackendKind(runtime) if manifest is not None else BackendKind.torch
    if kind is BackendKind.torch:
        if manifest is not None:
            raise InputError(f"{model}: an export folder (format '{runtime}'), not a checkpoint: run it with "
                             f"--backend auto (or --backend {runtime})")
        name, hidden = _torch_hidden_size(model)
        return ModelInfo(model, kind, name, hidden)
    if manifest is None:
        manifest = read_manifest(Path(model), verify_files=False)  # raises: not an export folder
    if runtime != kind.value:
        raise InputError(f"{model}: this export is in format '{runtime}'; run it with --backend {runtime} (or auto)")
    try:
        return ModelInfo(model, kind, str(manifest.get("backbone", "")), int(manifest["hidden_size"]), manifest)
    except (KeyError, TypeError, ValueError):
        raise ValidationError(f"{Path(model) / MANIFEST}, field 'hidden_size': missing or not an integer") from None
