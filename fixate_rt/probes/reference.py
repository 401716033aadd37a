"""Readable, differentiable reference definitions (method.md §4). Every fast path is tested against these."""

from __future__ import annotations

import torch


def rollout_matrices(attn: torch.Tensor, residual: float = 0.5) -> torch.Tensor:
    """Â_l = rownorm(residual·I + (1 − residual)·A_l). attn [B, L, T, T] head-averaged -> [B, L, T, T]."""
    T = attn.shape[-1]
    eye = torch.eye(T, dtype=attn.dtype, device=attn.device)
    a_hat = residual * eye + (1.0 - residual) * attn
    return a_hat / (a_hat.sum(-1, keepdim=True) + 1e-12)


def rollout_full(attn: torch.Tensor, residual: float = 0.5) -> torch.Tensor:
    """The full rollout matrix R = Â_L ⋯ Â_1 (deepest on the left). attn [B, L, T, T] -> [B, T, T].

    O(L·T³): only used to test `rollout_row_reference`.
    """
    a_hat = rollout_matrices(attn, residual)
    R = a_hat[:, 0]
    for layer in range(1, a_hat.shape[1]):
        R = a_hat[:, layer] @ R
    return R


def rollout_row_reference(attn: torch.Tensor, query_pos: torch.Tensor, residual: float = 0.5) -> torch.Tensor:
    """Row ``query_pos[b]`` of R = Â_L ⋯ Â_1, carried down as a vector: r ← r·Â_l from deepest to shallowest.

    attn [B, L, T, T] (probed layers, shallow → deep), query_pos [B] -> [B, T]. O(L·T²), no T×T product.
    """
    B, L, T, _ = attn.shape
    a_hat = rollout_matrices(attn, residual)
    r = torch.zeros(B, T, dtype=attn.dtype, device=attn.device)
    r[torch.arange(B, device=attn.device), query_pos.to(attn.device)] = 1.0
    for layer in reversed(range(L)):
        r = torch.einsum("bt,bts->bs", r, a_hat[:, layer])
    return r


def token_centres(token_boxes: torch.Tensor) -> torch.Tensor:
    """[P, 4] boxes -> [P, 2] centres (cx, cy)."""
    return torch.stack([(token_boxes[:, 0] + token_boxes[:, 2]) / 2, (token_boxes[:, 1] + token_boxes[:, 3]) / 2], -1)


def slot_pool_reference(token_relevance: torch.Tensor, token_boxes: torch.Tensor, slot_boxes: torch.Tensor,
                        mode: str = "exclusive", min_mass: float = 1e-9) -> torch.Tensor:
    """Pool token relevance [B, P] into slots [B, S] (method.md §4.7).

    token_boxes [P, 4] and slot_boxes [B, S, 4] in slate pixels; a degenerate slot box is padding (gets 0).
    ``exclusive``: a token goes to the first slot (in order) holding its centre; ``overlap``: to every slot
    holding its centre; ``area``: to every slot, weighted by the fraction of the token's area inside it.
    Rows are normalised over the valid slots, uniform when the pooled mass is ≤ ``min_mass``.
    """
    if mode not in ("exclusive", "overlap", "area"):
        raise ValueError(f"mode must be exclusive, overlap or area; got {mode!r}")
    rel = token_relevance.double()
    tb, sb = token_boxes.double(), slot_boxes.double()
    valid = (sb[..., 2] > sb[..., 0]) & (sb[..., 3] > sb[..., 1])  # [B, S]
    if mode == "area":
        w = (torch.minimum(tb[None, None, :, 2], sb[..., 2, None]) - torch.maximum(tb[None, None, :, 0], sb[..., 0, None])).clamp(min=0)
        h = (torch.minimum(tb[None, None, :, 3], sb[..., 3, None]) - torch.maximum(tb[None, None, :, 1], sb[..., 1, None])).clamp(min=0)
        area = ((tb[:, 2] - tb[:, 0]) * (tb[:, 3] - tb[:, 1])).clamp(min=1e-12)
        weight = w * h / area  # [B, S, P]
    else:
        c = token_centres(tb)
        holds = ((sb[..., 0, None] <= c[:, 0]) & (c[:, 0] < sb[..., 2, None])
                 & (sb[..., 1, None] <= c[:, 1]) & (c[:, 1] < sb[..., 3, None]))  # [B, S, P]
        if mode == "exclusive":
            holds = holds & (torch.cumsum(holds.int(), dim=1) == 1)
        weight = holds.double()
    weight = weight * valid[..., None]
    score = torch.einsum("bsp,bp->bs", weight, rel)
    total = score.sum(-1, keepdim=True)
    uniform = valid.double() / valid.sum(-1, keepdim=True).clamp(min=1)
    out = torch.where(total > min_mass, score / total.clamp(min=min_mass), uniform)
    return out.to(token_relevance.dtype)
