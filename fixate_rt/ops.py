"""Kernel registry: op name × implementation (torch / cpp / triton).

``impl="auto"`` picks the fastest available implementation for the inputs' device and falls back silently;
an explicitly requested implementation that is unavailable (not built, wrong device, not differentiable when
gradients are needed) raises `UnavailableError` with the reason. Nothing is swapped at import time: tests
call each implementation directly, and callers record the name `resolve` returned (run.json).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from . import reference as ref
from .config import TieRule, parse_choice
from .errors import UnavailableError
from .metrics_batch import batch_metrics as batch_metrics_torch

try:  # the optional C++ module (FIXATE_RT_BUILD_CPP=OFF builds without it)
    from . import _C  # type: ignore[attr-defined]

    _CPP_ERROR = ""
except ImportError as exc:  # pragma: no cover - depends on the build
    import importlib.util

    _C = None
    if importlib.util.find_spec("fixate_rt._C") is None:
        _CPP_ERROR = ("C++ module fixate_rt._C not built (installed with FIXATE_RT_BUILD_CPP=OFF, or where no C++ "
                      "compiler was found); reinstall with a compiler to build it")
    else:
        _CPP_ERROR = f"C++ module fixate_rt._C failed to import: {exc}"

IMPLS = ("torch", "cpp", "triton")
# Fastest first, per device; `auto` takes the first usable one.
PREFERENCE = {"cpu": ("cpp", "torch"), "cuda": ("triton", "torch")}


def cpp_available() -> bool:
    return _C is not None


@dataclass(frozen=True)
class Impl:
    fn: Callable
    devices: tuple[str, ...]
    differentiable: bool

    def unavailable_reason(self, name: str, device: torch.device, needs_grad: bool) -> str:
        if name == "cpp" and not cpp_available():
            return _CPP_ERROR
        if name == "triton":
            reason = _triton_reason(device)
            if reason:
                return reason
        if device.type not in self.devices:
            return f"runs on {', '.join(self.devices)}, inputs are on {device.type}"
        if needs_grad and not self.differentiable:
            return "not differentiable; use 'torch' when gradients are needed"
        return ""


# ------------------------------------------------------------------------------- numpy bridge for _C
def _np(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        return x.numpy() if x.dtype in (torch.float32, torch.float64, torch.int64) else x.double().numpy()
    return np.asarray(x)


def _cpp(fn_name: str) -> Callable:
    def call(*args, like: torch.Tensor, **kwargs):
        out = getattr(_C, fn_name)(*(_np(a) for a in args), **kwargs)
        return torch.from_numpy(out).to(like.device)

    return call


def _triton_reason(device: torch.device) -> str:
    import os

    try:
        from .kernels.availability import triton_status
    except ImportError as exc:  # a clone on PYTHONPATH, not installed: kernels/ is mapped in by the package build
        return (f"fixate_rt.kernels cannot be imported ({exc}); install the package (pip install -e .) rather than "
                "putting the repository on PYTHONPATH")
    reason = triton_status()
    if reason:
        return reason
    if device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
        return "Triton runs on CUDA tensors (or on CPU with TRITON_INTERPRET=1 set before import)"
    return ""


def _rollout_qk_triton(q, k, query_pos, attention_mask, scale, residual, lse):
    from .kernels.rollout import rollout_row_qk_triton

    return rollout_row_qk_triton(q, k, query_pos, attention_mask, scale=scale, residual=residual, lse=lse)


def _layers(x) -> list[torch.Tensor]:
    """Per-layer maps: a list as given, or a stacked [B, L, ...] tensor split along L."""
    return list(x.unbind(1)) if isinstance(x, torch.Tensor) else list(x)


def _stacked(x) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.stack(list(x), 1)


def _glimpse_streaming(attn, grad, query_pos):
    from .probes.streaming import glimpse_row_streaming

    return glimpse_row_streaming(_layers(attn), _layers(grad), query_pos)


def _rollout_qk_cpp(q, k, query_pos, attention_mask, scale, residual, lse):
    """The C++ blockwise row (csrc/rollout_qk.cpp): fp32/fp64 as they are; bf16 as its raw bits (fp32 maths)."""
    bf16 = q.dtype == torch.bfloat16
    if bf16:
        q_np, k_np = (t.detach().cpu().contiguous().view(torch.int16).numpy().view(np.uint16) for t in (q, k))
    else:
        q_np, k_np = (t.detach().cpu().contiguous().float().numpy() if t.dtype not in (torch.float32, torch.float64)
                      else t.detach().cpu().contiguous().numpy() for t in (q, k))
    mask = None if attention_mask is None else attention_mask.detach().cpu().to(torch.uint8).contiguous().numpy()
    lse_np = None if lse is None else lse.detach().cpu().float().contiguous().numpy()
    out = _C.rollout_row_qk(q_np, k_np, query_pos.detach().cpu().long().numpy(), mask, lse_np,
                            scale=scale if scale is not None else q.shape[-1] ** -0.5, residual=residual, bf16=bf16)
    return torch.from_numpy(out).to(q.device)


def _rollout_torch(attn, query_pos, residual):
    return ref.rollout_row_reference(attn.mean(2) if attn.ndim == 5 else attn, query_pos, residual)


REGISTRY: dict[str, dict[str, Impl]] = {
    "rollout_row": {
        "torch": Impl(_rollout_torch, ("cpu", "cuda"), True),
        "cpp": Impl(lambda a, q, r: _cpp("rollout_row")(a, q, like=a, residual=r), ("cpu",), False),
    },
    "rollout_row_qk": {
        "torch": Impl(lambda q, k, p, m, s, r, lse: ref.rollout_row_qk_chunked(q, k, p, m, s, r, lse=lse),
                      ("cpu", "cuda"), True),
        "triton": Impl(_rollout_qk_triton, ("cpu", "cuda"), False),
        "cpp": Impl(_rollout_qk_cpp, ("cpu",), False),
    },
    "attnlrp_row": {
        "torch": Impl(ref.attnlrp_row, ("cpu", "cuda"), True),
        "cpp": Impl(lambda a, g, q: _cpp("attnlrp_row")(a, g, q, like=a), ("cpu",), False),
    },
    "glimpse_row": {
        # torch: layer by layer (probes/streaming.py), never stacking [B, L, H, T, T] twice
        "torch": Impl(_glimpse_streaming, ("cpu", "cuda"), True),
        "cpp": Impl(lambda a, g, q: _cpp("glimpse_row")(_stacked(a), _stacked(g), q, like=q),
                    ("cpu",), False),
    },
    "slot_pool": {
        "torch": Impl(ref.slot_pool_reference, ("cpu", "cuda"), True),
        "cpp": Impl(lambda r, tb, sb, mode: _cpp("slot_pool")(r, tb, sb, like=r, mode=mode), ("cpu",), False),
    },
    "batch_metrics": {
        "torch": Impl(batch_metrics_torch, ("cpu", "cuda"), False),
        "cpp": Impl(lambda a, g, p, c, n, tie_rule, topk_js_k: _cpp("batch_metrics")(
            a, g, p, c, n, like=torch.empty(0), tie_rule=TieRule(tie_rule).value, topk_js_k=topk_js_k), ("cpu",), False),
    },
}


def available(op: str, device: torch.device | str = "cpu") -> dict[str, str]:
    """Implementation name -> "" if usable for inputs on ``device``, else the reason it is not."""
    dev = torch.device(device)
    return {name: impl.unavailable_reason(name, dev, False) for name, impl in REGISTRY[op].items()}


def resolve(op: str, impl: str, *, device: torch.device, needs_grad: bool = False) -> str:
    """The implementation that will run ``op`` for inputs on ``device`` (see the module docstring)."""
    impls = REGISTRY[op]
    if impl != "auto":
        if impl not in impls:
            raise UnavailableError(f"{op}: no '{impl}' implementation (have: {', '.join(impls)})")
        reason = impls[impl].unavailable_reason(impl, device, needs_grad)
        if reason:
            raise UnavailableError(f"{op}: impl '{impl}' unavailable: {reason}")
        return impl
    for name in PREFERENCE.get(device.type, ("torch",)):
        if name in impls and not impls[name].unavailable_reason(name, device, needs_grad):
            return name
    return "torch"


# ------------------------------------------------------------------------------------------ public ops
def rollout_row(attn: torch.Tensor, query_pos: torch.Tensor, *, residual: float = 0.5, impl: str = "auto") -> torch.Tensor:
    """Row ``query_pos[b]`` of Â_L⋯Â_1 with Â = rownorm(residual·I + (1 − residual)·A).

    attn [B, L, T, T] head-averaged (or [B, L, H, T, T], averaged on the fly), probed layers shallow → deep;
    query_pos [B] -> [B, T].
    """
    name = resolve("rollout_row", impl, device=attn.device, needs_grad=attn.requires_grad)
    return REGISTRY["rollout_row"][name].fn(attn, query_pos, residual)


def rollout_row_qk(q: torch.Tensor, k: torch.Tensor, query_pos: torch.Tensor, attention_mask: torch.Tensor | None = None,
                   *, scale: float | None = None, residual: float = 0.5, lse: torch.Tensor | None = None,
                   impl: str = "auto") -> torch.Tensor:
    """Rollout row [B, T] straight from post-RoPE q [B, L, Hq, T, d] and k [B, L, Hkv, T, d] of the probed layers
    (shallow → deep), causal + key-padding masks (attention_mask [B, T], 1 = real token); no T×T attention.

    ``lse`` [B, L, Hq, T] (fp32): the log-sum-exp of each row's scaled masked scores, when the forward's fused
    attention already computed it (``probes.capture.sdpa_with_lse``); the kernel then skips its own pass.
    """
    name = resolve("rollout_row_qk", impl, device=q.device, needs_grad=q.requires_grad or k.requires_grad)
    return REGISTRY["rollout_row_qk"][name].fn(q, k, query_pos, attention_mask, scale, residual, lse)


def causal_attention_cpp(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_ok: torch.Tensor,
                         scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """fixate-rt's C++ causal attention (csrc/causal_attention.cpp) for fp32 CPU tensors, no gradients: query i
    attends the real keys j <= i. q [B, Hq, T, d], k and v [B, Hkv, T, d] (grouped heads, no copies), key_ok [B, T]
    (1 = real token). Returns (out [B, Hq, T, d], log-sum-exp of the scaled real scores [B, Hq, T] fp32), a query with
    no real key giving zeros and log-sum-exp 0. Raises `UnavailableError` without the C++ module."""
    if not cpp_available():
        raise UnavailableError(f"causal_attention: impl 'cpp' unavailable: {_CPP_ERROR}")
    out, lse = _C.causal_attention(*(t.detach().contiguous().numpy() for t in (q, k, v)),
                                   key_ok.detach().to(torch.int64).contiguous().numpy(), scale=scale, return_lse=True)
    return torch.from_numpy(out), torch.from_numpy(lse)


def attnlrp_row(attn_row: torch.Tensor, grad_row: torch.Tensor, query_pos: torch.Tensor, *, impl: str = "auto") -> torch.Tensor:
    """FixATE AttnLRP row [B, T] from the answer rows of A and ∂s/∂A, each [B, L, H, T]."""
    name = resolve("attnlrp_row", impl, device=attn_row.device, needs_grad=attn_row.requires_grad or grad_row.requires_grad)
    return REGISTRY["attnlrp_row"][name].fn(attn_row, grad_row, query_pos)


def glimpse_row(attn, grad, query_pos: torch.Tensor, *, impl: str = "auto") -> torch.Tensor:
    """FixATE GLIMPSE row [B, T] from per-head A and ∂s/∂A: each [B, L, H, T, T], or a list of L [B, H, T, T]."""
    maps, grads = _layers(attn), _layers(grad)
    needs_grad = any(t.requires_grad for t in maps + grads)
    name = resolve("glimpse_row", impl, device=maps[0].device, needs_grad=needs_grad)
    return REGISTRY["glimpse_row"][name].fn(attn, grad, query_pos)


def slot_pool(token_relevance: torch.Tensor, token_boxes: torch.Tensor | np.ndarray, slot_boxes: torch.Tensor, *,
              mode: str = "exclusive", impl: str = "auto") -> torch.Tensor:
    """token_relevance [B, P], token_boxes [P, 4], slot_boxes [B, S, 4] -> slot relevance [B, S] (rows sum to 1)."""
    token_boxes = torch.as_tensor(token_boxes, dtype=torch.float32, device=token_relevance.device)
    name = resolve("slot_pool", impl, device=token_relevance.device, needs_grad=token_relevance.requires_grad)
    return REGISTRY["slot_pool"][name].fn(token_relevance, token_boxes, slot_boxes, mode)


def batch_metrics(relevance, gaze, p_click, clicked, n_cand, *, tie_rule: TieRule | str = TieRule.average,
                  topk_js_k: int = 5, impl: str = "auto") -> torch.Tensor:
    """Per-row metrics [R, 16] (metrics.METRIC_NAMES order) of relevance/gaze/p_click [R, S] with ragged n_cand.

    ``tie_rule`` orders equal values in the ranking metrics (`fixate_rt.config.TieRule`); ``topk_js_k`` is the
    k of top-k JS."""
    device = relevance.device if isinstance(relevance, torch.Tensor) else torch.device("cpu")
    name = resolve("batch_metrics", impl, device=device)
    rule = parse_choice(TieRule, tie_rule, "tie_rule")
    return REGISTRY["batch_metrics"][name].fn(relevance, gaze, p_click, clicked, n_cand, rule, topk_js_k)
