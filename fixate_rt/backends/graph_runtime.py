"""Running an export folder: its manifest, and each graph file wrapped as a `GraphSession`.

Run-time only (the export-time conversion lives in ``fixate_rt.exporters``). Every format is wrapped with
ONNX Runtime's calling convention (named numpy inputs in, numpy outputs in order out), so the exported backend
is the same for all formats:
- ``onnx``: ONNX Runtime (CPU provider; CUDA when onnxruntime-gpu is installed);
- ``export``: ``torch.export`` ExportedPrograms (``.pt2``), run by PyTorch without the transformers model classes;
- ``torchscript``: ``torch.jit`` traces (``.pt``), legacy.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError, UnavailableError, ValidationError

FORMATS = ("onnx", "export", "torchscript")
SUFFIX = {"onnx": "onnx", "export": "pt2", "torchscript": "pt"}
BACKEND_NAMES = {"onnx": "onnx-runtime", "export": "torch.export", "torchscript": "torchscript (legacy)"}
MANIFEST = "manifest.json"
FORMAT = "fixate-rt/export/1"


def onnx_status() -> str:
    """"" when onnx and onnxruntime import, else the reason and the fixing install command."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        return f"ONNX extra missing ({exc}); pip install 'fixate-rt[onnx]'"
    return ""


class GraphSession:
    """A saved graph ready to run: ``run(feed) -> [outputs]`` with named numpy inputs."""

    def __init__(self, fmt: str, path: Path, input_names: list[str], output_names: list[str],
                 providers: list[str] | None = None) -> None:
        self.fmt, self.path = fmt, Path(path)
        self.input_names, self.output_names = list(input_names), list(output_names)
        try:
            if fmt == "onnx":
                import onnxruntime as ort

                self._ort = ort.InferenceSession(str(path), providers=providers or ["CPUExecutionProvider"])
                self.input_names = [i.name for i in self._ort.get_inputs()]
                self.output_names = [o.name for o in self._ort.get_outputs()]
            elif fmt == "export":
                # torch logs a warning per unbacked symbol it drops while loading; nothing for a user to act on
                logging.getLogger("torch._export.serde.serialize").setLevel(logging.ERROR)
                self._fn = torch.export.load(str(path)).module()
            else:
                self._fn = torch.jit.load(str(path), map_location="cpu")
        except Exception as exc:  # each runtime raises its own types for corrupt files
            first = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
            raise InputError(f"{path}: {BACKEND_NAMES[fmt]} cannot load this graph ({first})") from None

    def run(self, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        if self.fmt == "onnx":
            return self._ort.run(None, {k: v for k, v in feed.items() if k in self.input_names})
        args = [torch.from_numpy(np.ascontiguousarray(feed[name])) for name in self.input_names if name in feed]
        with torch.inference_mode():
            out = self._fn(*args)
        out = out if isinstance(out, tuple | list) else (out,)
        return [o.detach().cpu().numpy() for o in out]


def choose_providers(fmt: str, device: str) -> list[str] | None:
    """ONNX Runtime providers for ``device``; the PyTorch formats run on the CPU in this version."""
    if fmt != "onnx":
        if device == "cuda":
            raise UnavailableError(f"--device cuda with --backend {fmt}: the exported PyTorch programs run on the CPU "
                                   f"in this version; use --backend torch or onnx on a GPU")
        return None
    import onnxruntime as ort

    available = ort.get_available_providers()
    if device in ("cuda", "auto") and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device == "cuda":
        raise UnavailableError(f"--device cuda with --backend onnx needs onnxruntime-gpu's CUDAExecutionProvider; "
                               f"available providers: {', '.join(available)}")
    return ["CPUExecutionProvider"]


def read_manifest(folder: Path) -> dict:
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        raise InputError(f"{folder}: not a fixate-rt export folder ({MANIFEST} missing; create one with "
                         f"`fixate-rt export`)")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: invalid JSON (line {exc.lineno})") from None
    if manifest.get("format") != FORMAT:
        raise ValidationError(f"{path}, field 'format': expected '{FORMAT}', got {manifest.get('format')!r}")
    if manifest.get("runtime", "onnx") not in SUFFIX:
        raise ValidationError(f"{path}, field 'runtime': unknown {manifest.get('runtime')!r}")
    for name, graph in manifest.get("graphs", {}).items():
        if not (folder / graph["file"]).is_file():
            raise InputError(f"{folder / graph['file']}: graph '{name}' listed in the manifest is missing")
    return manifest
