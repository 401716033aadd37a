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

import logging
import warnings
from pathlib import Path

import torch

from fixate_rt.backends.graph_runtime import FORMATS, SUFFIX
from fixate_rt.errors import ValidationError

__all__ = ["DYNAMIC_OPSET", "FORMATS", "QUANTIZATIONS", "SUFFIX", "check_format", "convert", "quantize_decoder"]

# Opset of the dynamic-shape graphs (embedding, decoder): 23 has the fused ``Attention`` operator, which ONNX Runtime
# runs as one kernel per layer (measured ~2.7× faster than opset 18's MatMul/Softmax decomposition at T = 800).
DYNAMIC_OPSET = 23
QUANTIZATIONS = {"int8": "int8 dynamic quantisation of the MatMul weights (ONNX Runtime quantize_dynamic, QInt8, "
                         "per-tensor); activations quantised per call"}


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
                                  dynamo=True, dynamic_shapes=dynamic_shapes, opset_version=DYNAMIC_OPSET,
                                  verbose=False)
        elif fmt == "export":
            program = torch.export.export(module, args, dynamic_shapes=dynamic_shapes, strict=False)
            # The sample inputs would be saved as a pickle; loading refuses every pickle, and running needs none.
            program.example_inputs = None
            torch.export.save(program, str(path))
        else:
            traced = torch.jit.trace(module, args, check_trace=False)
            traced.save(str(path))


def quantize_decoder(path: Path) -> None:
    """Replace the ONNX decoder at ``path`` with ONNX Runtime's dynamic int8 quantisation of its MatMul weights
    (the weights are stored next to the graph as external data, as the fp32 export's are)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    staged = path.with_name(path.stem + ".int8.onnx")
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantiser logs a generic "consider pre-processing" hint on the root logger
    try:
        quantize_dynamic(str(path), str(staged), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"],
                         use_external_data_format=False)
    finally:
        root.setLevel(level)
    data = path.with_name(path.name + ".data")
    path.unlink()
    if data.exists():
        data.unlink()
    model = onnx.load(str(staged))
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=data.name, size_threshold=1024)
    staged.unlink()
