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
from .safe_load import check_onnx_external_data, check_pt2_archive, member_path, sha256_file, verify_digest

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
                 providers: list[str] | None = None, *, trust: bool = False) -> None:
        """``trust``: load TorchScript, whose archive carries code (refused otherwise)."""
        self.fmt, self.path = fmt, Path(path)
        self.input_names, self.output_names = list(input_names), list(output_names)
        if fmt == "export":
            check_pt2_archive(self.path)
        elif fmt == "onnx":
            check_onnx_external_data(self.path, self.path.parent)
        elif not trust:
            raise InputError(f"{path}: TorchScript runs code stored in the file while loading; pass --trust-export "
                             f"only for a folder you produced yourself (or re-export with --format export)")
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


def read_manifest(folder: Path, *, verify_files: bool = True) -> dict:
    """The export folder's manifest, checked: every file it names lies inside the folder and matches its SHA-256.

    ``verify_files=False`` only parses (for a quick look at the runtime before any loading).
    """
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        raise InputError(f"{folder}: not a fixate-rt export folder ({MANIFEST} missing; create one with "
                         f"`fixate-rt export`)")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: invalid JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise ValidationError(f"{path}, field 'format': expected '{FORMAT}', got {found!r}")
    if manifest.get("runtime", "onnx") not in SUFFIX:
        raise ValidationError(f"{path}, field 'runtime': unknown {manifest.get('runtime')!r}")
    if not verify_files:
        return manifest
    digests = manifest.get("files")
    if not isinstance(digests, dict):
        raise ValidationError(f"{path}, field 'files': no SHA-256 list (exported by an older fixate-rt? re-export)")
    named = [(f"graphs.{name}.file", g.get("file") if isinstance(g, dict) else None)
             for name, g in manifest.get("graphs", {}).items()]
    named += [(f"files.{name}", name) for name in digests]
    for field, name in named:
        member = member_path(folder, name, path, field)
        if not member.is_file():
            raise InputError(f"{member}: listed in the manifest ({field}) but missing")
        verify_digest(member, digests.get(name), path, f"files.{name}")
    return manifest


def file_digests(folder: Path, names: list[str]) -> dict[str, str]:
    """SHA-256 of each named file of an export folder (what the manifest records)."""
    return {name: sha256_file(Path(folder) / name) for name in sorted(names)}
