"""Capture head-averaged attention probabilities of the probed layers only.

A function registered in transformers' attention registry under ``fixate_capture`` replaces the decoder's
attention implementation. Layers outside the active recorder's set run SDPA exactly as before; probed
layers run the eager softmax once and record mean_h(A) [B, T, T] in fp32. Nothing is captured (and every
layer is plain SDPA) when no recorder is active, so one loaded model serves probing and non-probing calls.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

CAPTURE_IMPLEMENTATION = "fixate_capture"


class AttentionRecorder:
    """Collects ``maps[layer_idx]`` = head-averaged attention probabilities [B, T, T] (fp32)."""

    def __init__(self, layers: tuple[int, ...]) -> None:
        self.layers = frozenset(layers)
        self.maps: dict[int, torch.Tensor] = {}


_ACTIVE: ContextVar[AttentionRecorder | None] = ContextVar("fixate_attention_recorder", default=None)


@contextlib.contextmanager
def record_attention(layers: tuple[int, ...]) -> Iterator[AttentionRecorder]:
    recorder = AttentionRecorder(layers)
    token = _ACTIVE.set(recorder)
    try:
        yield recorder
    finally:
        _ACTIVE.reset(token)


def _additive_mask(mask: torch.Tensor | None, q_len: int, k_len: int, device: torch.device) -> torch.Tensor:
    """Turn whatever mask SDPA would get (None = causal, bool = keep, float = additive) into fp32 additive."""
    neg = torch.finfo(torch.float32).min  # finite: fully masked (padding) rows stay NaN-free
    if mask is None:
        keep = torch.ones(q_len, k_len, dtype=torch.bool, device=device).tril(k_len - q_len)
        return torch.zeros(q_len, k_len, device=device).masked_fill(~keep, neg)
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, device=device).masked_fill(~mask, neg)
    return mask.float().clamp(min=neg)


def capture_attention_forward(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """Attention-registry entry: SDPA for unprobed layers, eager + record for probed ones.

    query [B, Hq, T, d], key/value [B, Hkv, T, d] (post-RoPE). Returns (out [B, T, Hq, d], None).
    """
    recorder = _ACTIVE.get()
    layer = getattr(module, "layer_idx", None)
    if recorder is None or layer not in recorder.layers:
        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling,
                                      dropout=dropout, **kwargs)
    groups = query.shape[1] // key.shape[1]
    key = key.repeat_interleave(groups, dim=1)
    value = value.repeat_interleave(groups, dim=1)
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    scores = torch.matmul(query.float(), key.float().transpose(2, 3)) * scale
    scores = scores + _additive_mask(attention_mask, query.shape[2], key.shape[2], query.device)
    probs = torch.softmax(scores, dim=-1)  # [B, H, T, T] fp32
    recorder.maps[layer] = probs.mean(dim=1)
    out = torch.matmul(probs.to(value.dtype), value).transpose(1, 2).contiguous()
    return out, None


AttentionInterface.register(CAPTURE_IMPLEMENTATION, capture_attention_forward)
AttentionMaskInterface.register(CAPTURE_IMPLEMENTATION, sdpa_mask)
