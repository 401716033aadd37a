"""GLIMPSE computed one probed layer at a time: the torch implementation of the ``glimpse_row`` op.

The definition (reference.py `glimpse_row`) stacks [B, L, H, T, T] maps and gradients twice; this path
keeps only one layer's temporaries plus the head-reduced E_l, and gives the same row (tests compare them).
"""

from __future__ import annotations

import torch

from ..reference import GLIMPSE_DEPTH_TEMP, GLIMPSE_EPS, GLIMPSE_HEAD_TEMP


def glimpse_row_streaming(maps: list[torch.Tensor], grads: list[torch.Tensor], query_pos: torch.Tensor) -> torch.Tensor:
    """`reference.glimpse_row` one layer at a time: per-layer temporaries only, E_l kept head-reduced.

    maps, grads: per probed layer (shallow → deep) [B, H, T, T] -> [B, T]. Peak extra memory is one layer's
    [B, H, T, T] plus L × [B, T, T], instead of stacking [B, L, H, T, T] twice.
    """
    E, gammas = [], []
    for attn, grad in zip(maps, grads):
        G = torch.relu(grad * attn)
        sigma = G.sum((-1, -2)) / (torch.relu(grad).sum((-1, -2)) + GLIMPSE_EPS)  # [B, H]
        w = torch.softmax(sigma / GLIMPSE_HEAD_TEMP, dim=-1)
        e = torch.einsum("bh,bhij->bij", w, G)
        E.append(e / (e.sum(-1, keepdim=True) + GLIMPSE_EPS))
        gammas.append(grad.sum(1).abs().sum((-1, -2)))  # [B]
        del G
    gamma = torch.stack(gammas, 1)  # [B, L]
    depth = torch.arange(1, len(maps) + 1, dtype=gamma.dtype, device=gamma.device)
    s = torch.softmax(GLIMPSE_DEPTH_TEMP * depth, dim=0)
    alpha = gamma * s / ((gamma * s).sum(-1, keepdim=True) + GLIMPSE_EPS)
    B, T = E[0].shape[0], E[0].shape[-1]
    r = torch.zeros(B, T, dtype=E[0].dtype, device=E[0].device)
    r[torch.arange(B, device=r.device), query_pos.to(r.device)] = 1.0
    for layer in reversed(range(len(E))):
        r = r + alpha[:, layer, None] * torch.einsum("bi,bij->bj", r, E[layer])
    return r
