"""FixATE's training losses (docs/method.md §5), differentiable torch.

g: gaze target [B, S] (from data, no gradient); a: slot attention [B, S] (from the probe, in the graph).
Loss ε = 1e-4; importance weights ω_n = (g_n + 1e-8)^γ / Σ_m (g_m + 1e-8)^γ.
"""

from __future__ import annotations

import torch

LOSS_EPS = 1e-4
POWER_EPS = 1e-8
ATTN_LOSSES = ("weighted_full_kl", "plain_kl", "coarsened_kl", "weighted_kl_normalised")


def importance_weights(g: torch.Tensor, gamma: float) -> torch.Tensor:
    w = (g + POWER_EPS) ** gamma
    return (w / w.sum(-1, keepdim=True)).detach()


def _kl_terms(g: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    return g * (torch.log(g + LOSS_EPS) - torch.log(a + LOSS_EPS))


def plain_kl(g: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """mean_b Σ_n g_n [log(g_n + ε) − log(a_n + ε)]."""
    return _kl_terms(g, a).sum(-1).mean()


def weighted_full_kl(g: torch.Tensor, a: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    """The reference default: mean_b Σ_n ω_n g_n [log(g_n + ε) − log(a_n + ε)].

    Not a divergence (it can be negative and rewards putting more than g's mass on g's top slots), and with
    γ = 0 it is KL/S, not KL (docs/method.md §5, §8 item 4). Kept as the default for fidelity to the paper.
    """
    return (importance_weights(g, gamma) * _kl_terms(g, a)).sum(-1).mean()


def weighted_kl_normalised(g: torch.Tensor, a: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    """A proper divergence with the same emphasis: KL(g̃‖ã) where g̃ ∝ ω⊙g and ã ∝ ω⊙a (weights renormalised
    inside), so it is ≥ 0, zero iff a = g on the weighted support, and γ = 0 gives plain KL."""
    w = importance_weights(g, gamma)
    gt = w * g / (w * g).sum(-1, keepdim=True)
    at = w * a / (w * a).sum(-1, keepdim=True).clamp(min=1e-12)
    return _kl_terms(gt, at).sum(-1).mean()


def coarsened_kl(g: torch.Tensor, a: torch.Tensor, gamma: float = 2.0, k: int = 5) -> torch.Tensor:
    """Weighted KL over g's top-k slots plus one tail bin (max(0, 1 − Σ)), weights from the coarsened g."""
    k = min(k, g.shape[-1])
    idx = torch.sort(g, dim=-1, descending=True, stable=True).indices[:, :k]  # ties -> lower slot index
    gk, ak = g.gather(1, idx), a.gather(1, idx)
    gc = torch.cat([gk, (1 - gk.sum(-1, keepdim=True)).clamp(min=0)], -1)
    ac = torch.cat([ak, (1 - ak.sum(-1, keepdim=True)).clamp(min=0)], -1)
    return weighted_full_kl(gc, ac, gamma)


def attention_loss(name: str, g: torch.Tensor, a: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    if name == "plain_kl":
        return plain_kl(g, a)
    if name == "weighted_full_kl":
        return weighted_full_kl(g, a, gamma)
    if name == "weighted_kl_normalised":
        return weighted_kl_normalised(g, a, gamma)
    if name == "coarsened_kl":
        return coarsened_kl(g, a, gamma)
    raise ValueError(f"attention loss must be one of {ATTN_LOSSES}, got {name!r}")


def lambda_schedule(step: int, target: float, warmup: int, with_choice: bool = True) -> float:
    """λ(t) = 0 for t < W, then min(λ*, λ*·(t − W)/W); λ* from step 0 when the choice loss is off."""
    if not with_choice or warmup <= 0:
        return target
    if step < warmup:
        return 0.0
    return min(target, target * (step - warmup) / warmup)


def choice_loss(logits: torch.Tensor, answer_token: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy of the answer label over the full vocabulary: mean_b −log p(label | prompt)."""
    return torch.nn.functional.cross_entropy(logits.float(), answer_token.to(logits.device))


def alpha_regulariser(alpha_rows: torch.Tensor) -> torch.Tensor:
    """R_α = mean over the batch's samples of ‖α_u‖² (a user appearing twice counts twice)."""
    return (alpha_rows ** 2).sum(-1).mean()
