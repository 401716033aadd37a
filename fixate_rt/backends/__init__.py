"""Execution backends. ``torch`` is the HF model itself (fixate_rt.backbones); ``onnx`` runs an export folder with
ONNX Runtime and needs only the tokenizer/image preprocessing besides onnxruntime."""

BACKENDS = ("torch", "onnx")
