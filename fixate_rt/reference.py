"""Readable, differentiable reference definitions (docs/method.md §4). Every fast path is tested against these."""

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


def centre_in_slots(token_boxes: torch.Tensor, slot_boxes: torch.Tensor) -> torch.Tensor:
    """[..., S, P] bool: slot s holds token p's centre (left/top edges inclusive, right/bottom exclusive).
    token_boxes [P, 4]; slot_boxes [..., S, 4], same pixel frame and dtype."""
    c = token_centres(token_boxes)
    sb = slot_boxes
    return ((sb[..., 0, None] <= c[:, 0]) & (c[:, 0] < sb[..., 2, None])
            & (sb[..., 1, None] <= c[:, 1]) & (c[:, 1] < sb[..., 3, None]))


def slot_pool_reference(token_relevance: torch.Tensor, token_boxes: torch.Tensor, slot_boxes: torch.Tensor,
                        mode: str = "exclusive", min_mass: float = 1e-9) -> torch.Tensor:
    """Pool token relevance [B, P] into slots [B, S] (docs/method.md §4.7).

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
        t, s = tb[None, None], sb[..., None]  # [1, 1, P, 4] and [B, S, 4, 1]: boxes against boxes
        w = (torch.minimum(t[..., 2], s[..., 2, :]) - torch.maximum(t[..., 0], s[..., 0, :])).clamp(min=0)
        h = (torch.minimum(t[..., 3], s[..., 3, :]) - torch.maximum(t[..., 1], s[..., 1, :])).clamp(min=0)
        area = ((tb[:, 2] - tb[:, 0]) * (tb[:, 3] - tb[:, 1])).clamp(min=1e-12)
        weight = w * h / area  # [B, S, P]
    else:
        holds = centre_in_slots(tb, sb)  # [B, S, P]
        if mode == "exclusive":
            holds = holds & (torch.cumsum(holds.int(), dim=1) == 1)
        weight = holds.double()
    weight = weight * valid[..., None]
    score = torch.einsum("bsp,bp->bs", weight, rel)
    total = score.sum(-1, keepdim=True)
    uniform = valid.double() / valid.sum(-1, keepdim=True).clamp(min=1)
    out = torch.where(total > min_mass, score / total.clamp(min=min_mass), uniform)
    return out.to(token_relevance.dtype)


# ---------------------------------------------------------------------------------------------- AttnLRP
ATTNLRP_EPS = 1e-4  # docs/method.md §4.2
GLIMPSE_EPS = 1e-4  # the reference's ε in the head weights, the row normalisation and α (docs/method.md §4.3)
GLIMPSE_HEAD_TEMP = 0.5  # docs/method.md §4.3
GLIMPSE_DEPTH_TEMP = 0.2


def _stabilise(r: torch.Tensor, eps: float = ATTNLRP_EPS) -> torch.Tensor:
    """r̃ = r + ε·sign(r), replaced by ε wherever |r̃| < ε (so r = 0 gives ε)."""
    r_t = r + eps * torch.sign(r)
    return torch.where(r_t.abs() < eps, torch.full_like(r_t, eps), r_t)


def attnlrp_layer_weights(n_layers: int, dtype=torch.float64, device=None) -> torch.Tensor:
    """w_l = l / Σ_k k for l = 1..L' (shallow → deep; the deepest layer weighs most)."""
    idx = torch.arange(1, n_layers + 1, dtype=dtype, device=device)
    return idx / idx.sum()


def attnlrp_full(attn: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """FixATE's AttnLRP matrix R = I + Σ_l w_l E_l with E_l = mean_h (A_h⊙∇A_h) / r̃_h (row-wise, signed).

    attn, grad [B, L, H, T, T] (probed layers shallow → deep) -> R [B, T, T]. Used to test the row version.
    """
    X = attn * grad
    E = (X / _stabilise(X.sum(-1, keepdim=True))).mean(2)  # [B, L, T, T]
    w = attnlrp_layer_weights(attn.shape[1], attn.dtype, attn.device)
    eye = torch.eye(attn.shape[-1], dtype=attn.dtype, device=attn.device)
    return eye + torch.einsum("l,blij->bij", w, E)


def attnlrp_row(attn_row: torch.Tensor, grad_row: torch.Tensor, query_pos: torch.Tensor) -> torch.Tensor:
    """Row ``query_pos`` of `attnlrp_full` from the answer rows alone (no products across layers).

    attn_row, grad_row [B, L, H, T]: row query_pos of A and ∂s/∂A per layer and head -> [B, T] (signed).
    """
    X = attn_row * grad_row
    E = (X / _stabilise(X.sum(-1, keepdim=True))).mean(2)  # [B, L, T]
    w = attnlrp_layer_weights(attn_row.shape[1], attn_row.dtype, attn_row.device)
    row = torch.einsum("l,blj->bj", w, E)
    onehot = torch.zeros_like(row)
    onehot[torch.arange(row.shape[0], device=row.device), query_pos.to(row.device)] = 1.0
    return row + onehot


# ---------------------------------------------------------------------------------------------- GLIMPSE
def glimpse_layer_terms(attn: torch.Tensor, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per layer: E_l [B, L, T, T] (head-weighted, row-normalised) and α_l [B, L] (docs/method.md §4.3).

    attn, grad [B, L, H, T, T] (shallow → deep).
    """
    eps = GLIMPSE_EPS
    G = torch.relu(grad * attn)  # [B, L, H, T, T]
    sigma = G.sum((-1, -2)) / (torch.relu(grad).sum((-1, -2)) + eps)  # [B, L, H]
    w = torch.softmax(sigma / GLIMPSE_HEAD_TEMP, dim=-1)
    E = torch.einsum("blh,blhij->blij", w, G)
    E = E / (E.sum(-1, keepdim=True) + eps)
    gamma = grad.sum(2).abs().sum((-1, -2))  # heads summed before the absolute value: [B, L]
    depth = torch.arange(1, attn.shape[1] + 1, dtype=attn.dtype, device=attn.device)
    s = torch.softmax(GLIMPSE_DEPTH_TEMP * depth, dim=0)
    alpha = gamma * s / ((gamma * s).sum(-1, keepdim=True) + eps)
    return E, alpha


def glimpse_full(attn: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """R = (I + α_L' E_L') ⋯ (I + α_1 E_1): shallow to deep, R ← R + α_l E_l R. -> [B, T, T] (tests only)."""
    E, alpha = glimpse_layer_terms(attn, grad)
    T = attn.shape[-1]
    R = torch.eye(T, dtype=attn.dtype, device=attn.device).expand(attn.shape[0], T, T)
    for layer in range(attn.shape[1]):
        R = R + alpha[:, layer, None, None] * (E[:, layer] @ R)
    return R


def glimpse_row(attn: torch.Tensor, grad: torch.Tensor, query_pos: torch.Tensor) -> torch.Tensor:
    """Row ``query_pos`` of `glimpse_full`, carried as a vector from the deepest layer: r ← r + α_l·r E_l.

    attn, grad [B, L, H, T, T] -> [B, T]. O(L·T²) after the per-layer terms; no T×T product.
    """
    E, alpha = glimpse_layer_terms(attn, grad)
    B, L, T, _ = E.shape
    r = torch.zeros(B, T, dtype=attn.dtype, device=attn.device)
    r[torch.arange(B, device=attn.device), query_pos.to(attn.device)] = 1.0
    for layer in reversed(range(L)):
        r = r + alpha[:, layer, None] * torch.einsum("bi,bij->bj", r, E[:, layer])
    return r


# ------------------------------------------------------------------------------ rollout from Q and K
def attention_from_qk(q: torch.Tensor, k: torch.Tensor, attention_mask: torch.Tensor | None = None,
                      scale: float | None = None) -> torch.Tensor:
    """Materialised head-averaged attention mean_h softmax(q kᵀ·scale + causal/padding mask): [B, L, T, T].

    q [B, L, Hq, T, d], k [B, L, Hkv, T, d]; attention_mask [B, T] (1 = real token). Tests only (O(T²) memory).
    """
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    k = k.repeat_interleave(q.shape[2] // k.shape[2], dim=2)
    scores = torch.einsum("blhid,blhjd->blhij", q.float(), k.float()) * scale
    T = q.shape[3]
    keep = torch.ones(T, T, dtype=torch.bool, device=q.device).tril()
    if attention_mask is not None:
        keep = keep & attention_mask.bool()[:, None, None, None, :]
    scores = scores.masked_fill(~keep, torch.finfo(torch.float32).min)
    return torch.softmax(scores, -1).mean(2)


def rollout_row_qk_chunked(q: torch.Tensor, k: torch.Tensor, query_pos: torch.Tensor,
                           attention_mask: torch.Tensor | None = None, scale: float | None = None,
                           residual: float = 0.5, chunk: int = 128, lse: torch.Tensor | None = None) -> torch.Tensor:
    """Readable reference of the fused kernel: per layer (deepest first) u = rᵀ·mean_h softmax(q kᵀ) computed over
    query chunks (never the whole H×T×T), then r ← residual·r + (1 − residual)·u. -> [B, T] fp32.
    With ``lse`` [B, L, Hq, T] the softmax is exp(s − lse) with the given log-sum-exp."""
    B, L, HQ, T, D = q.shape
    scale = D ** -0.5 if scale is None else scale
    groups = HQ // k.shape[2]
    key_ok = torch.ones(B, T, dtype=torch.bool, device=q.device) if attention_mask is None else attention_mask.bool()
    r = torch.zeros(B, T, dtype=torch.float32, device=q.device)
    r[torch.arange(B, device=q.device), query_pos.to(q.device)] = 1.0
    cols = torch.arange(T, device=q.device)
    for layer in reversed(range(L)):
        kl = k[:, layer].float().repeat_interleave(groups, dim=1)  # [B, H, T, d]
        u = torch.zeros_like(r)
        for start in range(0, T, chunk):
            rows = torch.arange(start, min(start + chunk, T), device=q.device)
            s = torch.einsum("bhid,bhjd->bhij", q[:, layer, :, rows].float(), kl) * scale  # [B, H, c, T]
            keep = (cols[None, :] <= rows[:, None])[None, None] & key_ok[:, None, None, :]
            s = s.masked_fill(~keep, torch.finfo(torch.float32).min)
            if lse is None:
                p = torch.softmax(s, -1).mean(1)  # [B, c, T]
            else:
                p = torch.where(keep, torch.exp(s - lse[:, layer, :, rows, None].float()), 0.0).mean(1)
            u += torch.einsum("bc,bct->bt", r[:, rows], p)
        r = residual * r + (1.0 - residual) * u
    return r
