"""Vectorised torch version of `fixate_rt.metrics.sample_metrics` over many rows at once.

relevance a, gaze target g, click probabilities π: [R, S]; clicked [R]; n_cand [R] (row r uses its first
n_cand[r] slots). Returns [R, 16] float64 in `metrics.METRIC_NAMES` order. Same definitions, ε and tie rules
(`fixate_rt.config.TieRule`) as the per-sample reference; the C++ op ``_C.batch_metrics`` computes the same table.
"""

from __future__ import annotations

import torch

from .config import TieRule, parse_choice
from .metrics import EPS, KS, METRIC_NAMES, NSS_MIN_STD, TOPK_JS_K


def _normalise(x: torch.Tensor, mask: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    x = x * mask
    s = x.sum(-1, keepdim=True)
    return torch.where(s < EPS, mask / n[:, None], x / torch.where(s < EPS, torch.ones_like(s), s))


def _positions(x: torch.Tensor, mask: torch.Tensor, higher_first: bool = False) -> torch.Tensor:
    """Rank position of every slot (0 = largest; ties -> lower index first, or higher with ``higher_first``;
    padding ranks last)."""
    keyed = torch.where(mask.bool(), x, torch.full_like(x, -torch.inf))
    if higher_first:  # a stable sort of the reversed row puts the higher index first among equals
        S = x.shape[-1]
        order = S - 1 - torch.sort(keyed.flip(-1), dim=-1, descending=True, stable=True).indices
    else:
        order = torch.sort(keyed, dim=-1, descending=True, stable=True).indices
    return torch.argsort(order, dim=-1)


def _inclusion(x: torch.Tensor, mask: torch.Tensor, k: torch.Tensor, rule: TieRule) -> torch.Tensor:
    """P(slot in the top-k_r of its row) [R, S]; padding 0. ``average``: clip((k − above)/(ties + 1), 0, 1)
    with above/ties counted by binary search in the ascending sorted row (no [R, S, S] tensor)."""
    if rule is not TieRule.average:
        return (_positions(x, mask, rule is TieRule.reference) < k[:, None]).double() * mask
    keyed = torch.where(mask.bool(), x, torch.full_like(x, -torch.inf))
    ascending = torch.sort(keyed, dim=-1).values
    left = torch.searchsorted(ascending, keyed.contiguous(), right=False)
    right = torch.searchsorted(ascending, keyed.contiguous(), right=True)
    above = x.shape[-1] - right
    tied = right - left - 1
    return ((k[:, None] - above).double() / (tied + 1).double()).clamp(0.0, 1.0) * mask


def _js(q: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    q = q / q.sum(-1, keepdim=True)
    p = p / p.sum(-1, keepdim=True)
    m = 0.5 * (q + p)

    def kl(a):
        return torch.where(a > 0, a * torch.log(a / torch.where(a > 0, m, torch.ones_like(m))), torch.zeros_like(a)).sum(-1)

    v = 0.5 * kl(q) + 0.5 * kl(p)
    return torch.where(torch.isnan(v), torch.ones_like(v), v.clamp(min=0.0))


def batch_metrics(relevance, gaze, p_click, clicked, n_cand, tie_rule: TieRule | str = TieRule.average,
                  topk_js_k: int = TOPK_JS_K) -> torch.Tensor:
    rule = parse_choice(TieRule, tie_rule, "tie_rule")
    a = torch.as_tensor(relevance, dtype=torch.float64)
    g = torch.as_tensor(gaze, dtype=torch.float64)
    pi = torch.as_tensor(p_click, dtype=torch.float64)
    c = torch.as_tensor(clicked, dtype=torch.long)
    n = torch.as_tensor(n_cand, dtype=torch.long)
    R, S = a.shape
    idx = torch.arange(S)
    mask = (idx[None, :] < n[:, None]).double()
    nf = n.double()
    p, q, pin = _normalise(a, mask, nf), _normalise(g, mask, nf), _normalise(pi, mask, nf)
    rows = torch.arange(R)
    cols = {}
    cols["kl"] = (mask * q * torch.log((q + EPS) / (p + EPS))).sum(-1)
    cols["js"] = _js(q, p)
    cols["cosine"] = (q * p).sum(-1) / (q.norm(dim=-1) * p.norm(dim=-1) + EPS)
    for k in KS:
        cols[f"csh@{k}"] = _inclusion(p, mask, torch.clamp(n, max=k), rule)[rows, c]
    for k in KS:
        k_eff = torch.clamp(n, max=k)
        both = _inclusion(p, mask, k_eff, rule) * _inclusion(q, mask, k_eff, rule)
        cols[f"tgo@{k}"] = both.sum(-1) / k_eff.double()
    pos_q = _positions(q, mask, rule is TieRule.reference)
    top = (pos_q < torch.clamp(n, max=topk_js_k)[:, None]).double()
    qa = torch.cat([q * top, (1 - (q * top).sum(-1, keepdim=True)).clamp(min=0)], -1)
    pa = torch.cat([p * top, (1 - (p * top).sum(-1, keepdim=True)).clamp(min=0)], -1)
    degenerate = (qa.sum(-1) <= 0) | (pa.sum(-1) <= 0)
    cols["topk_js"] = torch.where(degenerate, torch.ones(R, dtype=torch.float64), _js(qa, pa))
    qc = (q - (q * mask).sum(-1, keepdim=True) / nf[:, None]) * mask
    pc = (p - (p * mask).sum(-1, keepdim=True) / nf[:, None]) * mask
    denom = torch.sqrt((qc * qc).sum(-1) * (pc * pc).sum(-1))
    zeros = torch.zeros(R, dtype=torch.float64)
    cols["cc"] = torch.where(denom > 0, (qc * pc).sum(-1) / torch.where(denom > 0, denom, 1.0), zeros)
    cols["sim"] = (torch.minimum(q, p) * mask).sum(-1)
    sd = torch.where(n > 1, torch.sqrt((pc * pc).sum(-1) / (nf - 1).clamp(min=1)), torch.zeros(R, dtype=torch.float64))
    ok = sd > NSS_MIN_STD
    cols["nss"] = torch.where(ok, (q * pc).sum(-1) / torch.where(ok, sd, 1.0), torch.zeros(R, dtype=torch.float64))
    pic = pi[rows, c]
    cols["logloss"] = -torch.log(pin[rows, c].clamp(min=EPS))
    others = mask.bool() & (idx[None, :] != c[:, None])
    below = ((pi < pic[:, None]) & others).sum(-1).double()
    tied = ((pi == pic[:, None]) & others).sum(-1).double()
    nan = torch.full((R,), torch.nan, dtype=torch.float64)
    cols["auc"] = torch.where(n > 1, (below + 0.5 * tied) / (nf - 1).clamp(min=1), nan)
    cols["correct"] = _inclusion(pi, mask, torch.ones_like(n), rule)[rows, c]
    return torch.stack([cols[name] for name in METRIC_NAMES], dim=1)
