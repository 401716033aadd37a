"""Kernel registry: op name × implementation (torch / cpp / triton).

``impl="auto"`` picks the fastest available implementation for the inputs and falls back silently; an
explicitly requested implementation that is unavailable raises `UnavailableError` with the reason. Nothing
is swapped at import time: tests call each implementation directly.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from .errors import UnavailableError
from .probes.reference import rollout_row_reference, slot_pool_reference

try:  # the optional C++ module (FIXATE_RT_BUILD_CPP=OFF builds without it)
    from . import _C  # type: ignore[attr-defined]

    _CPP_ERROR = ""
except ImportError as exc:  # pragma: no cover - depends on the build
    _C = None
    _CPP_ERROR = f"C++ module fixate_rt._C not built ({exc}); reinstall without FIXATE_RT_BUILD_CPP=OFF"


def cpp_available() -> bool:
    return _C is not None


def _slot_pool_cpp(token_relevance, token_boxes, slot_boxes, mode):
    out = _C.slot_pool(
        token_relevance.detach().cpu().float().numpy(), np.asarray(token_boxes.cpu(), dtype=np.float32),
        slot_boxes.detach().cpu().float().numpy(), mode,
    )
    return torch.from_numpy(out).to(token_relevance.device, token_relevance.dtype)


_SLOT_POOL: dict[str, Callable] = {"torch": slot_pool_reference, "cpp": _slot_pool_cpp}
_ROLLOUT_ROW: dict[str, Callable] = {"torch": rollout_row_reference}


def available(op: str) -> dict[str, str]:
    """Implementation name -> "" if usable here, else the reason it is not."""
    table = {"slot_pool": _SLOT_POOL, "rollout_row": _ROLLOUT_ROW}[op]
    return {name: ("" if name != "cpp" or cpp_available() else _CPP_ERROR) for name in table}


def resolve(op: str, impl: str, *, device: torch.device, needs_grad: bool = False) -> str:
    """The implementation that will run for ``op`` given the request and the inputs."""
    reasons = available(op)
    if impl != "auto":
        if impl not in reasons:
            raise UnavailableError(f"{op}: no '{impl}' implementation (have: {', '.join(reasons)})")
        if reasons[impl]:
            raise UnavailableError(f"{op}: impl '{impl}' unavailable: {reasons[impl]}")
        if impl == "cpp" and needs_grad:
            raise UnavailableError(f"{op}: impl 'cpp' is not differentiable; use 'torch' when gradients are needed")
        return impl
    if device.type == "cpu" and not needs_grad and reasons.get("cpp") == "":
        return "cpp"
    return "torch"


def slot_pool(token_relevance: torch.Tensor, token_boxes: torch.Tensor | np.ndarray, slot_boxes: torch.Tensor, *,
              mode: str = "exclusive", impl: str = "auto") -> torch.Tensor:
    """token_relevance [B, P], token_boxes [P, 4], slot_boxes [B, S, 4] -> slot relevance [B, S] (rows sum to 1)."""
    token_boxes = torch.as_tensor(token_boxes, dtype=torch.float32, device=token_relevance.device)
    name = resolve("slot_pool", impl, device=token_relevance.device, needs_grad=token_relevance.requires_grad)
    return _SLOT_POOL[name](token_relevance, token_boxes, slot_boxes, mode)


def rollout_row(attn: torch.Tensor, query_pos: torch.Tensor, *, residual: float = 0.5, impl: str = "auto") -> torch.Tensor:
    """Row ``query_pos[b]`` of Â_L⋯Â_1 with Â = rownorm(residual·I + (1 − residual)·A).

    attn [B, L, T, T] head-averaged probed layers ordered shallow → deep; query_pos [B] -> [B, T].
    """
    name = resolve("rollout_row", impl, device=attn.device, needs_grad=attn.requires_grad)
    return _ROLLOUT_ROW[name](attn, query_pos, residual)
