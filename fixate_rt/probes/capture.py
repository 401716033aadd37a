"""Capture what the probes need, from the probed layers only, at the attention-function boundary.

A function registered in transformers' attention registry under ``fixate_capture`` replaces the decoder's
attention implementation. Layers outside the active recorder's set run SDPA exactly as before. Probed
layers record, depending on the recorder's mode:

* ``mean``  — eager softmax once; head-averaged probabilities mean_h(A) [B, T, T] fp32 (rollout);
* ``heads`` — eager softmax; per-head probabilities [B, H, T, T] kept in the autograd graph, so
  ∂s/∂A can be taken (reference GLIMPSE / AttnLRP);
* ``qk``    — fused attention for the layer output; the post-RoPE query [B, Hq, T, d] and key [B, Hkv, T, d]
  states, plus the log-sum-exp [B, Hq, T] the fused op computed anyway (``sdpa_with_lse``), so the Triton
  rollout needs only one pass over QKᵀ; nothing of size T×T;
* ``qk_graph`` — plain SDPA for the layer output and the post-RoPE query and key states, nothing else: what an
  exported decoder graph returns (the runtime's own fused attention runs every layer; the rollout row is computed
  outside the graph from Q and K by the same op as ``qk``);
* ``row``   — SDPA for the layer output, plus the answer row of A recomputed from q_last and K
  [B, H, T], V [B, H, T, d] and the layer's attention output [B, T, H, d] (in the graph, so that
  dO = ∂s/∂O gives ∂s/∂A[last, :] = dO[last]·Vᵀ). Nothing of size T×T is materialised.

Nothing is captured (and every layer is plain SDPA) when no recorder is active, so one loaded model serves
probing and non-probing calls.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

CAPTURE_IMPLEMENTATION = "fixate_capture"
MODES = ("mean", "heads", "row", "qk", "qk_cpp", "qk_graph")


@dataclass
class AttentionRecorder:
    """What was captured, keyed by decoder layer index."""

    layers: frozenset[int]
    mode: str = "mean"
    maps: dict[int, torch.Tensor] = field(default_factory=dict)  # mean: [B,T,T]; heads: [B,H,T,T]; row: [B,H,T]
    values: dict[int, torch.Tensor] = field(default_factory=dict)  # row: V [B, H, T, d]
    outputs: dict[int, torch.Tensor] = field(default_factory=dict)  # row: attention output [B, T, H, d]
    queries: dict[int, torch.Tensor] = field(default_factory=dict)  # qk: post-RoPE Q [B, Hq, T, d]
    keys: dict[int, torch.Tensor] = field(default_factory=dict)  # qk: post-RoPE K [B, Hkv, T, d]
    lse: dict[int, torch.Tensor] = field(default_factory=dict)  # qk: log-sum-exp of the scaled scores [B, Hq, T] fp32
    bias_cache: dict = field(default_factory=dict)  # qk: the forward's mask in additive form, built once


_ACTIVE: ContextVar[AttentionRecorder | None] = ContextVar("fixate_attention_recorder", default=None)


@contextlib.contextmanager
def record_attention(layers: tuple[int, ...], mode: str = "mean") -> Iterator[AttentionRecorder]:
    if mode not in MODES:
        raise ValueError(f"capture mode must be one of {MODES}, got {mode!r}")
    recorder = AttentionRecorder(frozenset(layers), mode)
    token = _ACTIVE.set(recorder)
    try:
        yield recorder
    finally:
        _ACTIVE.reset(token)


def additive_mask(mask: torch.Tensor | None, q_len: int, k_len: int, device: torch.device,
                  rows: slice = slice(None)) -> torch.Tensor:
    """Whatever mask SDPA would get (None = causal, bool = keep, float = additive) as an fp32 additive mask, for
    the query rows ``rows`` only ([..., rows, k_len]: the answer row alone never builds a T×T mask)."""
    neg = torch.finfo(torch.float32).min  # finite: fully masked (padding) rows stay NaN-free
    if mask is None:
        query_rows = torch.arange(q_len, device=device)[rows]
        keep = torch.arange(k_len, device=device)[None, :] <= query_rows[:, None] + (k_len - q_len)
        return torch.zeros(keep.shape, device=device).masked_fill(~keep, neg)
    mask = mask[..., rows, :]
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, device=device).masked_fill(~mask, neg)
    return mask.float().clamp(min=neg)


def _bias_and_keyless_rows(mask: torch.Tensor | None, dtype: torch.dtype, B: int, T: int, Tk: int,
                           device: torch.device, bias_cache: dict | None):
    """(additive mask [B, 1, T, Tk] in ``dtype``, rows with no key to attend [B, 1, T] or None when there are
    none). Every probed layer of one forward gets the same mask, so this is built once (``bias_cache``)."""
    key_of = (id(mask), dtype, T, Tk)
    cached = bias_cache.get(key_of) if bias_cache is not None else None
    if cached is None:
        bias = additive_mask(mask, T, Tk, device).clamp(min=torch.finfo(dtype).min).to(dtype)
        bias = bias.expand(B, 1, T, Tk) if bias.ndim == 2 else bias
        # A row with no key to attend (left padding) contributes nothing: +inf, the rollout kernel's convention.
        # Kept only when such a row exists (a batch without left padding has none), so most forwards skip the fill.
        no_key = ~(mask.any(-1) if mask is not None and mask.dtype == torch.bool
                   else (bias > torch.finfo(dtype).min).any(-1))  # [B, 1, T]
        cached = (bias, no_key if bool(no_key.any()) else None)
        if bias_cache is not None:
            bias_cache[key_of] = cached
    return cached


def causal_key_mask(mask: torch.Tensor, T: int, bias_cache: dict | None) -> torch.Tensor | None:
    """The key mask [B, T] (True = real token) when the 4-D mask SDPA gets is exactly "key j <= query i and key j is
    real" (what the decoders build for a padded batch), else None. Checked once per forward (``bias_cache``)."""
    key_of = ("key_padding", id(mask))
    if bias_cache is not None and key_of in bias_cache:
        return bias_cache[key_of]
    found = None
    if mask.ndim == 4 and mask.shape[1] == 1 and mask.shape[-2:] == (T, T):
        keep = mask[:, 0] if mask.dtype == torch.bool else mask[:, 0] == 0
        exact = mask.dtype == torch.bool or bool((mask[:, 0][~keep] <= torch.finfo(mask.dtype).min / 2).all())
        key_ok = keep[:, -1, :]  # the last query (a real token) sees every real key
        causal = torch.ones(T, T, dtype=torch.bool, device=mask.device).tril()
        if exact and torch.equal(keep, causal[None] & key_ok[:, None, :]):
            found = key_ok
    if bias_cache is not None:
        bias_cache[key_of] = found
    return found


def padded_cpp_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor | None,
                         scale: float, bias_cache: dict | None) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(out [B, T, Hq, d], log-sum-exp [B, Hq, T] fp32, +inf where a query has no key) from fixate-rt's C++ causal
    kernel, for a padded fp32 CPU batch without gradients whose mask is exactly "causal and real key"; else None."""
    if mask is None or query.device.type != "cpu" or query.dtype != torch.float32 or (
            torch.is_grad_enabled() and (query.requires_grad or key.requires_grad or value.requires_grad)):
        return None
    key_ok = causal_key_mask(mask, query.shape[2], bias_cache)
    if key_ok is None:
        return None
    from .. import ops

    out, lse = ops.causal_attention_cpp(query, key, value, key_ok, scale)
    no_key = (key_ok.cumsum(-1) == 0)[:, None, :]  # [B, 1, T]: left padding before the first real token
    return out.transpose(1, 2).contiguous(), lse.masked_fill(no_key, float("inf"))


def sdpa_with_lse(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor | None,
                  scale: float, bias_cache: dict | None = None, *, cpp: bool = False
                  ) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(attention output [B, T, Hq, d], log-sum-exp of the scaled masked scores [B, Hq, T] fp32) from one fused
    attention op: the flash kernel on CPU, the memory-efficient kernel on CUDA (both take an additive mask and
    return the log-sum-exp they compute anyway). None on other devices (the caller falls back to SDPA).

    ``cpp`` (the plan's ``qk_cpp`` capture: CPU, C++ built, no gradients): a padded fp32 batch whose mask is exactly
    "causal and real key" runs fixate-rt's C++ causal kernel instead (`padded_cpp_attention`), which takes the key
    mask [B, T] as it is, reads no T×T mask and keeps grouped heads unrepeated; the flash kernel with a 4-D mask
    cost the padded probe about a sixth of the decoder's time on the tiny model. The capture runs the unprobed
    layers of such a batch on it too.

    query [B, Hq, T, d]; key, value [B, Hkv, T, d] (post-RoPE); mask as SDPA gets it (None = causal).
    """
    if query.device.type not in ("cpu", "cuda"):
        return None
    if cpp:
        fused = padded_cpp_attention(query, key, value, mask, scale, bias_cache)
        if fused is not None:
            return fused
    groups = query.shape[1] // key.shape[1]
    key, value = (t.repeat_interleave(groups, dim=1) if groups > 1 else t for t in (key, value))
    B, H, T, _ = query.shape
    Tk = key.shape[2]
    # Purely causal (no padding in the batch) on CPU: the kernel's own causal mode, as SDPA runs it, skips the
    # blocks above the diagonal and reads no T×T mask; every row has a key, so the log-sum-exp is finite everywhere.
    causal = mask is None and T == Tk and query.device.type == "cpu"
    if causal:
        bias, no_key = None, None
    else:
        bias, no_key = _bias_and_keyless_rows(mask, query.dtype, B, T, Tk, query.device, bias_cache)
    if query.device.type == "cpu":
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
            query, key, value, 0.0, causal, attn_mask=bias, scale=scale)[:2]
    else:
        # The memory-efficient kernel wants the bias's last dimension 16-aligned in memory: pad, then slice.
        aligned = torch.zeros(B, 1, T, Tk + (-Tk) % 16, dtype=query.dtype, device=query.device)
        aligned[..., :Tk] = bias
        out, lse = torch.ops.aten._scaled_dot_product_efficient_attention(
            query, key, value, aligned[..., :Tk].expand(B, H, T, Tk), True, 0.0, False, scale=scale)[:2]
        lse = lse[..., :T]
    lse = lse.float()
    return out.transpose(1, 2).contiguous(), lse if no_key is None else lse.masked_fill(no_key, float("inf"))


def _probs(query, key, mask, scale, rows: slice = slice(None)) -> torch.Tensor:
    """softmax(q kᵀ·scale + mask) in fp32 for the query rows ``rows``. [B, H, T_rows, T]."""
    scores = torch.matmul(query[:, :, rows].float(), key.float().transpose(2, 3)) * scale
    return torch.softmax(scores + additive_mask(mask, query.shape[2], key.shape[2], query.device, rows), dim=-1)


def capture_attention_forward(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """Attention-registry entry: SDPA for unprobed layers, capture for probed ones.

    query [B, Hq, T, d], key/value [B, Hkv, T, d] (post-RoPE). Returns (out [B, T, Hq, d], None).
    """
    recorder = _ACTIVE.get()
    layer = getattr(module, "layer_idx", None)
    if recorder is None or layer not in recorder.layers:
        if recorder is not None and recorder.mode == "qk_cpp" and dropout == 0.0:  # unprobed layers of a padded batch
            scale = scaling if scaling is not None else query.shape[-1] ** -0.5
            fused = padded_cpp_attention(query, key, value, attention_mask, scale, recorder.bias_cache)
            if fused is not None:
                return fused[0], None
        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling,
                                      dropout=dropout, **kwargs)
    if recorder.mode == "qk_graph":
        recorder.queries[layer] = query
        recorder.keys[layer] = key
        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout,
                                      **kwargs)
    if recorder.mode in ("qk", "qk_cpp"):
        recorder.queries[layer] = query
        recorder.keys[layer] = key
        scale = scaling if scaling is not None else query.shape[-1] ** -0.5
        fused = (sdpa_with_lse(query, key, value, attention_mask, scale, recorder.bias_cache,
                               cpp=recorder.mode == "qk_cpp") if dropout == 0.0 else None)
        if fused is not None:
            out, recorder.lse[layer] = fused
            return out, None
        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout,
                                      **kwargs)
    groups = query.shape[1] // key.shape[1]
    key_h = key.repeat_interleave(groups, dim=1)
    value_h = value.repeat_interleave(groups, dim=1)
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    if recorder.mode == "row":
        out, _ = sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling,
                                        dropout=dropout, **kwargs)
        recorder.maps[layer] = _probs(query, key_h, attention_mask, scale, slice(-1, None))[:, :, 0]
        recorder.values[layer] = value_h
        recorder.outputs[layer] = out
        return out, None
    probs = _probs(query, key_h, attention_mask, scale)  # [B, H, T, T] fp32
    recorder.maps[layer] = probs.mean(dim=1) if recorder.mode == "mean" else probs
    out = torch.matmul(probs.to(value_h.dtype), value_h).transpose(1, 2).contiguous()
    return out, None


AttentionInterface.register(CAPTURE_IMPLEMENTATION, capture_attention_forward)
AttentionMaskInterface.register(CAPTURE_IMPLEMENTATION, sdpa_mask)
