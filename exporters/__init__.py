"""Exporters, shipped as ``fixate_rt.exporters``: three ONNX graphs (vision, embedding, decoder with the
rollout row computed in-graph), a manifest, and validation against PyTorch in ONNX, torch.export or TorchScript (see graphs.py, export.py, runtimes.py).

`onnx_status` reports whether the ONNX extra is installed, for clear `UnavailableError` messages.
"""

from __future__ import annotations


def onnx_status() -> str:
    """"" when onnx and onnxruntime import, else the reason and the fixing install command."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        return f"ONNX extra missing ({exc}); pip install 'fixate-rt[onnx]'"
    return ""
