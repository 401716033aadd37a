"""Every check of a `fixate-rt simulate` run that needs no model, shared by both engines: nothing is written and
no weights load before it passes. What it resolves (inputs, the model's description, the prompt bank) is handed
on, so nothing is read or checked twice."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..backends import ExportTrust, ModelInfo, describe_model
from ..config import SimulateConfig
from ..data.join import Inputs, load_inputs
from ..errors import ValidationError
from ..prompts import SoftPromptBank


@dataclass
class Preflight:
    """What `preflight` read and checked: the inputs, the model's description (authorised) and the prompt bank
    (or None) with the file it came from."""

    data: Inputs
    info: ModelInfo
    bank: SoftPromptBank | None
    bank_source: Path | None
    authorised_by: str | None


def preflight(config: SimulateConfig) -> Preflight:
    """Options, inputs and their cross-references, the model's backend and trust, the slate sizes an export
    serves, and the prompt bank (readable, finite, its shape and hidden size, its template)."""
    if config.samples < 1:
        raise ValidationError(f"--samples must be ≥ 1, got {config.samples}")
    data = load_inputs(users=config.users, images=config.images, pairs=config.pairs)
    info = describe_model(config.model, config.backend)
    authorised_by = info.authorise(ExportTrust.of(config.trust_export, config.verify_key))  # before any file is read
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
    return Preflight(data, info, bank, Path(source) if source is not None else None, authorised_by)


def run_inputs(config: SimulateConfig) -> tuple[Path | None, ...]:
    """The paths a simulation reads (its --out may neither be nor contain one of them)."""
    model = Path(str(config.model))
    return (config.users, config.images, config.pairs, config.prompts, model if model.exists() else None,
            config.verify_key)
