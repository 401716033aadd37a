"""Execution backends behind one protocol (`Backend`): ``torch`` (the Hugging Face model, fixate_rt.backbones)
and the exported backends ``onnx`` / ``export`` / ``torchscript`` (an export folder, `ExportedBackend`).

`open_backend` is the one place that turns a `--backend` choice and a `--model` into a loaded backend.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..config import Backend as BackendKind
from ..config import parse_choice
from .protocol import Backend

__all__ = ["Backend", "BackendKind", "open_backend"]


def open_backend(model: str | Path, kind: BackendKind | str = BackendKind.torch, *, device: str = "auto",
                 dtype: torch.dtype | None = None) -> Backend:
    """Load ``model`` (an embedded name, a local checkpoint, or an export folder) with backend ``kind``."""
    kind = parse_choice(BackendKind, kind, "backend")
    if kind.exported:
        from .exported import ExportedBackend

        return ExportedBackend.load(Path(model), kind, device=device)
    from ..backbones import load

    return load(model, device=device, dtype=dtype)
