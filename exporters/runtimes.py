"""The three export formats: how a graph module is converted, and how a saved graph is run.

- ``onnx``: ONNX (dynamo exporter with dynamic shapes; the legacy trace exporter for fixed-shape graphs), run
  with ONNX Runtime (CPU provider; CUDA when onnxruntime-gpu is installed).
- ``export``: ``torch.export`` ExportedPrograms saved as ``.pt2``, dynamic batch and length, run by PyTorch
  without the transformers model classes.
- ``torchscript``: ``torch.jit.trace`` saved as ``.pt``. Legacy: TorchScript is deprecated upstream in favour
  of torch.export; kept for simulators that still embed it.

Every runtime is wrapped as a ``GraphSession`` with ONNX Runtime's calling convention (named numpy inputs in,
numpy outputs in order out), so the backend and the validation code are the same for all formats.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import torch

from fixate_rt.errors import InputError, UnavailableError, ValidationError

FORMATS = ("onnx", "export", "torchscript")
SUFFIX = {"onnx": "onnx", "export": "pt2", "torchscript": "pt"}
BACKEND_NAMES = {"onnx": "onnx-runtime", "export": "torch.export", "torchscript": "torchscript (legacy)"}


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise ValidationError(f"--format must be one of {', '.join(FORMATS)}, got '{fmt}'")
    return fmt


def convert(fmt: str, module: torch.nn.Module, args: tuple, path: Path, input_names: list[str],
            output_names: list[str], dynamic_shapes) -> None:
    """Write ``module`` called on ``args`` to ``path`` in format ``fmt`` (``dynamic_shapes`` None = fixed shapes)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if fmt == "onnx":
            if dynamic_shapes is None:  # trace-based exporter: fixed shapes (data-dependent vision code is fine)
                torch.onnx.export(module, args, str(path), input_names=input_names, output_names=output_names,
                                  dynamo=False, opset_version=18)
            else:
                torch.onnx.export(module, args, str(path), input_names=input_names, output_names=output_names,
                                  dynamo=True, dynamic_shapes=dynamic_shapes, opset_version=18, verbose=False)
        elif fmt == "export":
            program = torch.export.export(module, args, dynamic_shapes=dynamic_shapes, strict=False)
            torch.export.save(program, str(path))
        else:
            traced = torch.jit.trace(module, args, check_trace=False)
            traced.save(str(path))


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
