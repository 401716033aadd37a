"""Alignment and click metrics over slots (docs/method.md §6), numpy reference definitions.

Conventions (documented in docs/metrics.md):
* natural log; metric ε = 1e-8; a (model slot relevance) and g (gaze target) are renormalised to p and q,
  uniform when their sum is < 1e-8;
* vectors are already truncated to the slate's slots (n_candidates = the layout's slot count);
* **tie rule** (`TieRule`): slots of exactly equal value are ordered by
  - ``average`` (default): each ranking metric is its exact expected value when ties are broken uniformly at
    random, independently for the model's and the gaze ranking (computed combinatorially, not sampled);
  - ``lower-index``: the lower slot index first (reading order);
  - ``reference``: the higher slot index first, as the reference code's ``argsort(x)[::-1]`` does;
  the rule applies to CSH@k, TGO@k and accuracy; top-k JS picks q's top-k slots with the deterministic order
  (lower index first, or higher for ``reference``), since equal q values carry equal mass;
* k larger than the number of slots is clipped to it (k_eff = min(k, n)).
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from typing import TypeVar

import numpy as np

from .config import TieRule, parse_choice

EPS = 1e-8
K = TypeVar("K", bound=Hashable)
NSS_MIN_STD = 1e-12  # p is a distribution (entries ≤ 1): a smaller spread is rounding, not signal
KS = (1, 3, 5)
TOPK_JS_K = 5


# ----------------------------------------------------------------------------------------------- targets
def gaze_target(dwell: np.ndarray, tau: float = 1.0) -> np.ndarray:
    """g from dwell t ≥ 0 (docs/method.md §1.7): p = t/(Σt+ε); g̃ = (p+ε)^{1/τ}; g = g̃/(Σg̃+ε)."""
    if tau <= 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    t = np.asarray(dwell, dtype=np.float64)
    p = t / (t.sum(-1, keepdims=True) + EPS)
    g = np.exp(np.log(p + EPS) / tau)
    return g / (g.sum(-1, keepdims=True) + EPS)


def normalise(x: np.ndarray) -> np.ndarray:
    """x / Σx, or uniform when Σx < 1e-8. Works on [S] or [R, S]."""
    x = np.asarray(x, dtype=np.float64)
    s = x.sum(-1, keepdims=True)
    uniform = np.full_like(x, 1.0 / x.shape[-1])
    return np.where(s < EPS, uniform, x / np.where(s < EPS, 1.0, s))


def rank(x: np.ndarray, tie_rule: TieRule | str = TieRule.lower_index) -> np.ndarray:
    """Slot indices by descending value; ties to the lower index first, or the higher one for ``reference``.

    ``average`` has no single order; it ranks as ``lower-index`` here (use `inclusion` for its expectations).
    """
    x = np.asarray(x)
    if parse_choice(TieRule, tie_rule, "tie_rule") is TieRule.reference:
        n = x.shape[-1]
        return n - 1 - np.argsort(-x[..., ::-1], axis=-1, kind="stable")
    return np.argsort(-x, axis=-1, kind="stable")


def topk(x: np.ndarray, k: int, tie_rule: TieRule | str = TieRule.lower_index) -> np.ndarray:
    return rank(x, tie_rule)[..., : min(k, np.shape(x)[-1])]


def inclusion(x: np.ndarray, k: int, tie_rule: TieRule | str = TieRule.average) -> np.ndarray:
    """P(slot i is among the top-k of x) [S] under the tie rule (0/1 for the deterministic rules).

    ``average``: with a_i slots strictly above i and t_i others equal to it, i's place is uniform over
    a_i … a_i + t_i, so P = clip((k − a_i) / (t_i + 1), 0, 1).
    """
    x = np.asarray(x, dtype=np.float64)
    k = min(k, x.shape[-1])
    if parse_choice(TieRule, tie_rule, "tie_rule") is not TieRule.average:
        out = np.zeros(x.shape[-1])
        out[topk(x, k, tie_rule)] = 1.0
        return out
    above = (x[None, :] > x[:, None]).sum(-1)
    tied = (x[None, :] == x[:, None]).sum(-1) - 1
    return np.clip((k - above) / (tied + 1), 0.0, 1.0)


# ------------------------------------------------------------------------------------------- divergences
def kl(q: np.ndarray, p: np.ndarray) -> float:
    """KL(q‖p) = Σ q log((q+ε)/(p+ε)) on normalised inputs (q = gaze first, as in the saliency benchmarks)."""
    q, p = normalise(q), normalise(p)
    return float(np.sum(q * np.log((q + EPS) / (p + EPS))))


def _kl_zero_safe(a: np.ndarray, b: np.ndarray) -> float:
    mask = a > 0
    return float(np.sum(a[mask] * np.log(a[mask] / b[mask])))


def js(q: np.ndarray, p: np.ndarray) -> float:
    """Jensen–Shannon divergence (scipy's squared JS distance), natural log, 0·log 0 = 0; NaN → 1."""
    q, p = np.asarray(q, np.float64), np.asarray(p, np.float64)
    q, p = q / q.sum(), p / p.sum()
    m = 0.5 * (p + q)
    value = 0.5 * _kl_zero_safe(q, m) + 0.5 * _kl_zero_safe(p, m)
    return 1.0 if math.isnan(value) else max(value, 0.0)


def topk_js(q: np.ndarray, p: np.ndarray, k: int = TOPK_JS_K, tie_rule: TieRule | str = TieRule.average) -> float:
    """JS over the top-k slots of q plus one 'rest' bin: (q_top, max(0, 1−Σ)) vs (p on them, max(0, 1−Σ)).

    q's top-k is taken lower index first (higher index first for the ``reference`` rule)."""
    q, p = normalise(q), normalise(p)
    idx = topk(q, k, TieRule.reference if tie_rule in (TieRule.reference, "reference") else TieRule.lower_index)
    qa = np.append(q[idx], max(0.0, 1.0 - q[idx].sum()))
    pa = np.append(p[idx], max(0.0, 1.0 - p[idx].sum()))
    if qa.sum() <= 0 or pa.sum() <= 0:
        return 1.0
    return js(qa, pa)


def cosine(q: np.ndarray, p: np.ndarray) -> float:
    q, p = normalise(q), normalise(p)
    return float(q @ p / (np.linalg.norm(q) * np.linalg.norm(p) + EPS))


# ---------------------------------------------------------------------------------------------- rankings
def csh(p: np.ndarray, clicked: int, k: int, tie_rule: TieRule | str = TieRule.average) -> float:
    """Click-slot hit @k: 1 if the clicked slot is among the top-k of the model's slot relevance (its
    probability under ``average``)."""
    return float(inclusion(normalise(p), k, tie_rule)[clicked])


def tgo(q: np.ndarray, p: np.ndarray, k: int, tie_rule: TieRule | str = TieRule.average) -> float:
    """Top-gaze overlap @k: |top-k(p) ∩ top-k(q)| / k_eff; under ``average`` its expectation
    Σ_i P(i ∈ top-k(p))·P(i ∈ top-k(q)) / k_eff (the two tie-breaks are independent)."""
    k_eff = min(k, len(p))
    both = inclusion(normalise(p), k_eff, tie_rule) * inclusion(normalise(q), k_eff, tie_rule)
    return float(both.sum() / k_eff)


# ------------------------------------------------------------------------------------ saliency metrics
def cc(q: np.ndarray, p: np.ndarray) -> float:
    """Pearson correlation between the two slot maps (0 when either is constant)."""
    q, p = normalise(q), normalise(p)
    qs, ps = q - q.mean(), p - p.mean()
    denom = math.sqrt(float(qs @ qs) * float(ps @ ps))
    return float(qs @ ps / denom) if denom > 0 else 0.0


def sim(q: np.ndarray, p: np.ndarray) -> float:
    """Similarity (histogram intersection) Σ min(p, q) of the sum-normalised maps, in [0, 1]."""
    return float(np.minimum(normalise(q), normalise(p)).sum())


def nss(q: np.ndarray, p: np.ndarray) -> float:
    """Normalised scanpath saliency: the model map standardised (mean 0, sample std, ddof = 1), averaged
    under the gaze distribution q (each slot weighted by its share of dwell). 0 when p is constant
    (std ≤ 1e-12)."""
    p = normalise(p)
    sd = p.std(ddof=1) if len(p) > 1 else 0.0
    if sd <= NSS_MIN_STD:  # a constant map (up to rounding) has no saliency to score
        return 0.0
    return float(normalise(q) @ ((p - p.mean()) / sd))


# ------------------------------------------------------------------------------------- click prediction
def logloss(pi: np.ndarray, clicked: int) -> float:
    """−log max(π_c, 1e-8) over the candidate-label probabilities π."""
    return float(-math.log(max(float(normalise(pi)[clicked]), EPS)))


def auc(pi: np.ndarray, clicked: int) -> float:
    """[#{j≠c: π_j < π_c} + ½·#{j≠c: π_j = π_c}] / (n − 1)."""
    pi = np.asarray(pi, np.float64)
    n = len(pi)
    if n < 2:
        return float("nan")
    others = np.delete(pi, clicked)
    return float((np.sum(others < pi[clicked]) + 0.5 * np.sum(others == pi[clicked])) / (n - 1))


def correct(pi: np.ndarray, clicked: int, tie_rule: TieRule | str = TieRule.average) -> float:
    """1 if the model's most probable label is the clicked one (under ``average``: 1/(ties + 1) when tied)."""
    return float(inclusion(np.asarray(pi, np.float64), 1, tie_rule)[clicked])


# ----------------------------------------------------------------------------------------- per sample
METRIC_NAMES = ("kl", "js", "cosine", "csh@1", "csh@3", "csh@5", "tgo@1", "tgo@3", "tgo@5", "topk_js",
                "cc", "sim", "nss", "logloss", "auc", "correct")
LOWER_IS_BETTER = frozenset({"kl", "js", "topk_js", "logloss"})


def sample_metrics(relevance: np.ndarray, gaze: np.ndarray, p_click: np.ndarray, clicked: int,
                   tie_rule: TieRule | str = TieRule.average, topk_js_k: int = TOPK_JS_K) -> dict[str, float]:
    """All metrics of one (user, slate): relevance a [S], gaze target g [S], click probabilities π [S]."""
    tie_rule = parse_choice(TieRule, tie_rule, "tie_rule")
    a, g = np.asarray(relevance, np.float64), np.asarray(gaze, np.float64)
    out = {"kl": kl(g, a), "js": js(normalise(g), normalise(a)), "cosine": cosine(g, a)}
    for k in KS:
        out[f"csh@{k}"] = csh(a, clicked, k, tie_rule)
    for k in KS:
        out[f"tgo@{k}"] = tgo(g, a, k, tie_rule)
    out.update(topk_js=topk_js(g, a, topk_js_k, tie_rule), cc=cc(g, a), sim=sim(g, a), nss=nss(g, a),
               logloss=logloss(p_click, clicked), auc=auc(p_click, clicked),
               correct=correct(p_click, clicked, tie_rule))
    return out


# ---------------------------------------------------------------------------------------- aggregation
def aggregate(rows: list[dict], user_ids: list[str]) -> dict:
    """micro = mean over samples; macro = mean over users of per-user means; n = samples and users."""
    micro, macro = {}, {}
    users = sorted(set(user_ids))
    for name in METRIC_NAMES:
        values = np.array([r[name] for r in rows], dtype=np.float64)
        micro[name] = float(np.nanmean(values)) if len(values) else float("nan")
        per_user = [np.nanmean([v for v, u in zip(values, user_ids) if u == user]) for user in users]
        macro[name] = float(np.mean(per_user)) if per_user else float("nan")
    return {"micro": micro, "macro": macro, "n_samples": len(rows), "n_users": len(users)}


def per_user_means(rows: list[dict], user_ids: list[str], name: str) -> dict[str, float]:
    acc: dict[str, list[float]] = {}
    for r, u in zip(rows, user_ids):
        acc.setdefault(u, []).append(r[name])
    return {u: float(np.nanmean(v)) for u, v in acc.items()}


DIFF_DECIMALS = 12  # per-user differences are compared at this many decimals (float noise is ~1e-16)
WILCOXON_MIN_USERS = 10  # below this the signed-rank test says nothing useful; the reference requires 10 too


def paired_wilcoxon(a: dict[str, float], b: dict[str, float]) -> dict:
    """Two-sided Wilcoxon signed-rank over users present in both (per-user means), zero differences dropped.

    Returns n, mean_a, mean_b, mean_diff (a − b) and p: 1.0 when every difference is 0, None with
    ``note: "n too small"`` when fewer than `WILCOXON_MIN_USERS` users are paired.
    """
    users = sorted(set(a) & set(b))
    x = np.array([a[u] for u in users])
    y = np.array([b[u] for u in users])
    result = {"n": len(users), "mean_a": float(x.mean()) if users else float("nan"),
              "mean_b": float(y.mean()) if users else float("nan"),
              "mean_diff": float((x - y).mean()) if users else float("nan")}
    # Rounded to 1e-12 so that floating-point noise neither splits ties nor turns a zero into a difference: equal
    # per-user changes summed in another order differ in the last bit, and scipy then ranks them apart (and drops
    # its exact null distribution for an approximation), which moved p from 0.73 to 0.69 on one real case.
    d = np.round(x - y, DIFF_DECIMALS)
    if len(users) < WILCOXON_MIN_USERS:
        result.update(p=None, note="n too small")
    elif np.all(d == 0):
        result["p"] = 1.0
    else:
        from scipy.stats import wilcoxon

        result["p"] = float(wilcoxon(d, zero_method="wilcox", alternative="two-sided").pvalue)
    return result


def holm(pvalues: dict[K, float | None]) -> dict[K, float | None]:
    """Holm–Bonferroni adjusted p-values of one family (None, an untestable comparison, stays None and does not
    count towards the family size)."""
    tested = sorted(((p, k) for k, p in pvalues.items() if p is not None), key=lambda item: item[0])
    m, running = len(tested), 0.0
    out: dict[K, float | None] = dict.fromkeys(pvalues)
    for i, (p, k) in enumerate(tested):
        running = max(running, min(1.0, (m - i) * p))
        out[k] = running
    return out


def direction(metric: str, diff: float) -> str:
    """"better", "worse" or "same" for a change ``diff`` (new − old) of ``metric`` (KL, JS, LogLoss: lower is better)."""
    if not math.isfinite(diff) or abs(diff) < 5e-5:  # what the tables' four decimals show as ±0.0000
        return "same"
    better = diff < 0 if metric in LOWER_IS_BETTER else diff > 0
    return "better" if better else "worse"


def format_change(test: dict, metric: str) -> str:
    """A paired test for a table: the mean change (a − b) with its direction beside the p-value, so a small p is never
    read without knowing which way the metric moved, e.g. ``+0.0062 worse, p 0.021``."""
    diff = test.get("mean_diff", float("nan"))
    return f"{diff:+.4f} {direction(metric, diff)}, p {format_p(test)}"


def format_p(test: dict) -> str:
    """A Wilcoxon result's p-value for a table: "n too small" below `WILCOXON_MIN_USERS` users."""
    return "n too small" if test.get("p") is None else f"{test['p']:.3g}"
