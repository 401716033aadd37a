"""Vectorised torch version of `fixate_rt.metrics.sample_metrics` over many rows at once.

relevance a, gaze target g, click probabilities π: [R, S]; clicked [R]; n_cand [R] (row r uses its first
n_cand[r] slots). Returns [R, 16] float64 in `metrics.METRIC_NAMES` order. Same definitions, ε and tie rule
(stable descending sort: ties go to the lower slot index) as the per-sample reference; the C++ op
``_C.batch_metrics`` computes the same table.
"""

from __future__ import annotations

import torch

from .metrics import EPS, KS, METRIC_NAMES, NSS_MIN_STD, TOPK_JS_K


def _normalise(x: torch.Tensor, mask: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    x = x * mask
    s = x.sum(-1, keepdim=True)
    return torch.where(s < EPS, mask / n[:, None], x / torch.where(s < EPS, torch.ones_like(s), s))


def _positions(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Rank position of every slot (0 = largest; ties -> lower index first; padding ranks last)."""
    keyed = torch.where(mask.bool(), x, torch.full_like(x, -torch.inf))
    order = torch.sort(keyed, dim=-1, descending=True, stable=True).indices
    return torch.argsort(order, dim=-1)


def _js(q: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    q = q / q.sum(-1, keepdim=True)
    p = p / p.sum(-1, keepdim=True)
    m = 0.5 * (q + p)

    def kl(a):
        return torch.where(a > 0, a * torch.log(a / torch.where(a > 0, m, torch.ones_like(m))), torch.zeros_like(a)).sum(-1)

    v = 0.5 * kl(q) + 0.5 * kl(p)
    return torch.where(torch.isnan(v), torch.ones_like(v), v.clamp(min=0.0))


def batch_metrics(relevance, gaze, p_click, clicked, n_cand) -> torch.Tensor:
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
    pos_p, pos_q, pos_pi = _positions(p, mask), _positions(q, mask), _positions(pi, mask)
    rows = torch.arange(R)
    cols = {}
    cols["kl"] = (mask * q * torch.log((q + EPS) / (p + EPS))).sum(-1)
    cols["js"] = _js(q, p)
    cols["cosine"] = (q * p).sum(-1) / (q.norm(dim=-1) * p.norm(dim=-1) + EPS)
    for k in KS:
        cols[f"csh@{k}"] = (pos_p[rows, c] < torch.clamp(n, max=k)).double()
    for k in KS:
        k_eff = torch.clamp(n, max=k)[:, None]
        cols[f"tgo@{k}"] = ((pos_p < k_eff) & (pos_q < k_eff)).sum(-1).double() / k_eff[:, 0].double()
    top = (pos_q < torch.clamp(n, max=TOPK_JS_K)[:, None]).double()
    qa = torch.cat([q * top, (1 - (q * top).sum(-1, keepdim=True)).clamp(min=0)], -1)
    pa = torch.cat([p * top, (1 - (p * top).sum(-1, keepdim=True)).clamp(min=0)], -1)
    degenerate = (qa.sum(-1) <= 0) | (pa.sum(-1) <= 0)
    cols["topk_js"] = torch.where(degenerate, torch.ones(R, dtype=torch.float64), _js(qa, pa))
    qc = (q - (q * mask).sum(-1, keepdim=True) / nf[:, None]) * mask
    pc = (p - (p * mask).sum(-1, keepdim=True) / nf[:, None]) * mask
    denom = torch.sqrt((qc * qc).sum(-1) * (pc * pc).sum(-1))
    cols["cc"] = torch.where(denom > 0, (qc * pc).sum(-1) / torch.where(denom > 0, denom, 1.0), torch.zeros(R, dtype=torch.float64))
    cols["sim"] = (torch.minimum(q, p) * mask).sum(-1)
    sd = torch.where(n > 1, torch.sqrt((pc * pc).sum(-1) / (nf - 1).clamp(min=1)), torch.zeros(R, dtype=torch.float64))
    ok = sd > NSS_MIN_STD
    cols["nss"] = torch.where(ok, (q * pc).sum(-1) / torch.where(ok, sd, 1.0), torch.zeros(R, dtype=torch.float64))
    pic = pi[rows, c]
    cols["logloss"] = -torch.log(pin[rows, c].clamp(min=EPS))
    others = mask.bool() & (idx[None, :] != c[:, None])
    below = ((pi < pic[:, None]) & others).sum(-1).double()
    tied = ((pi == pic[:, None]) & others).sum(-1).double()
    cols["auc"] = torch.where(n > 1, (below + 0.5 * tied) / (nf - 1).clamp(min=1), torch.full((R,), torch.nan, dtype=torch.float64))
    cols["correct"] = (pos_pi[rows, c] == 0).double()
    return torch.stack([cols[name] for name in METRIC_NAMES], dim=1)
