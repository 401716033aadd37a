"""Exporters, shipped as ``fixate_rt.exporters``: three graphs (vision, embedding, decoder with the rollout row
computed in-graph), a manifest, and validation against PyTorch, in ONNX, torch.export or TorchScript
(graphs.py: what is exported; runtimes.py: how each format is written; export.py: the folder and its checks).

Running an export folder is the exported backend's job (``fixate_rt.backends``), not this package's.
"""

from __future__ import annotations

from fixate_rt.backends.graph_runtime import onnx_status

__all__ = ["onnx_status"]
