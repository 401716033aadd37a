"""The three export formats: how a graph module is converted (export time only).

How a saved graph is run lives in ``fixate_rt.backends.graph_runtime``.

- ``onnx``: ONNX (dynamo exporter with dynamic shapes; the legacy trace exporter for fixed-shape graphs), run
  with ONNX Runtime (CPU provider; CUDA when onnxruntime-gpu is installed).
- ``export``: ``torch.export`` ExportedPrograms saved as ``.pt2``, dynamic batch and length, run by PyTorch
  without the transformers model classes.
- ``torchscript``: ``torch.jit.trace`` saved as ``.pt``. Legacy: TorchScript is deprecated upstream in favour
  of torch.export; kept for simulators that still embed it.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from fixate_rt.backends.graph_runtime import FORMATS, SUFFIX
from fixate_rt.errors import ValidationError

__all__ = ["FORMATS", "SUFFIX", "check_format", "convert"]


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
