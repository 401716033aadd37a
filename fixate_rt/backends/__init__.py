"""Execution backends behind one protocol (`Backend`): ``torch`` (the Hugging Face model, fixate_rt.backbones)
and the exported backends ``onnx`` / ``export`` / ``torchscript`` (an export folder, `ExportedBackend`).

`open_backend` is the one place that turns a `--backend` choice and a `--model` into a loaded backend.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..config import BackendKind
from .describe import ModelInfo, describe_model
from .protocol import Backend
from .trust import ExportTrust

__all__ = ["Backend", "BackendKind", "ExportTrust", "ModelInfo", "describe_model", "open_backend"]


def open_backend(model: str | Path | ModelInfo, kind: BackendKind | str = BackendKind.auto, *, device: str = "auto",
                 dtype: torch.dtype | None = None, trust: ExportTrust | bool = False) -> Backend:
    """Load ``model`` (an embedded name, a local checkpoint, an export folder, or its `describe_model`
    description, whose backend is then used) with backend ``kind`` (``auto``: the export folder's own format,
    else torch). ``trust``: how far an export folder is trusted (`ExportTrust`; a bool is ``--trust-export``)."""
    info = model if isinstance(model, ModelInfo) else describe_model(model, kind)
    if info.kind.exported:
        from .exported import ExportedBackend

        return ExportedBackend.load(Path(info.source), info.kind, device=device, trust=ExportTrust.of(trust), info=info)
    from ..backbones import load

    return load(info.source, device=device, dtype=dtype)
