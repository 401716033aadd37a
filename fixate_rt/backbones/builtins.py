"""Every built-in model name and where its folder is: the random ``tiny-*`` family (written on first use by
`tiny.ensure_model`) and the pretrained ``slates-qwen3vl`` and ``slates-qwen3vl-fair-deep`` (shipped inside the package)."""

from __future__ import annotations

from pathlib import Path

from . import slates_model
from .tiny import SHAPES, ensure_model

PRETRAINED = tuple(slates_model.FOLDERS)


def builtin_names() -> tuple[str, ...]:
    return tuple(SHAPES) + PRETRAINED


def builtin_folder(name: str | Path) -> Path | None:
    """The folder of a built-in model, or None when ``name`` is not one (then it is a path)."""
    name = str(name)
    if name in SHAPES:
        return ensure_model(name)
    return slates_model.pretrained_folder(name)
