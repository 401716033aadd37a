"""Policy comparison (`fixate-rt compare`): how click shares move between two runs over the same users.

Per user u, run A's click share of key k (an item of a slate, or a position) is the fraction of u's simulated
clicks in A that landed on k; the effect is the mean over users of share_B − share_A. Users are the unit of
pairing: a paired bootstrap over users (seeded, vectorised: resample weights [R, U] times the per-user
differences [U, K]) gives the confidence interval of every effect at once, and a Wilcoxon signed-rank test over
users (zeros split) its p-value. ``overall`` is the total-variation distance between the two runs' item-click
distributions, ½ Σ_k |mean share_B − mean share_A|, with its bootstrap interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.slates import Slate
from ..errors import InputError, ValidationError
from ..limits import MAX_RESAMPLES
from .runs import Run, item_keys, read_run, slates_of

BOOTSTRAP_CHUNK = 250


@dataclass(frozen=True)
class Effects:
    keys: list[str]
    a: np.ndarray  # [K] mean share in A
    b: np.ndarray  # [K] mean share in B
    diff: np.ndarray  # [K] b − a
    low: np.ndarray  # [K]
    high: np.ndarray  # [K]
    p: np.ndarray  # [K] Wilcoxon signed-rank over users


def shares(run: Run, users: list[str], keys_of_row: np.ndarray, keys: list[str]) -> np.ndarray:
    """Per-user click share [U, K] of each key (rows of a user sum to 1)."""
    u_index = {u: i for i, u in enumerate(users)}
    k_index = {k: i for i, k in enumerate(keys)}
    keep = np.array([u in u_index for u in run.users])
    rows_u = np.array([u_index[u] for u in run.users[keep]], dtype=np.int64)
    rows_k = np.array([k_index[k] for k in keys_of_row[keep]], dtype=np.int64)
    counts = np.zeros((len(users), len(keys)))
    np.add.at(counts, (rows_u, rows_k), 1.0)
    return counts / counts.sum(1, keepdims=True)


def bootstrap(diff: np.ndarray, resamples: int, level: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Percentile intervals of the mean over users of ``diff`` [U, K], and of ½ Σ_k |mean| (total variation)."""
    rng = np.random.default_rng(seed)
    U = diff.shape[0]
    means, tv = [], []
    for start in range(0, resamples, BOOTSTRAP_CHUNK):
        n = min(BOOTSTRAP_CHUNK, resamples - start)
        weights = rng.multinomial(U, np.full(U, 1.0 / U), size=n).astype(np.float64)  # [n, U]
        m = weights @ diff / U  # [n, K]
        means.append(m)
        tv.append(0.5 * np.abs(m).sum(1))
    means, tv = np.concatenate(means), np.concatenate(tv)
    alpha = (1 - level) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha], axis=0)
    return low, high, np.quantile(tv, [alpha, 1 - alpha])


EXACT_WILCOXON_BELOW = 10  # users: below, scipy's exact/permutation p; from here, the normal approximation


def wilcoxon_columns(diff: np.ndarray) -> np.ndarray:
    """Two-sided Wilcoxon signed-rank p-value per column over users; 1 where every difference is zero.

    With fewer than `EXACT_WILCOXON_BELOW` users scipy's exact (with zero differences, permutation) distribution
    is used; from there on its normal approximation, which scipy allows at any size: the exact path with zero
    differences costs about half a second per column at 12 users (25 s for one `compare` of 12 users), and
    the approximation is already close (p 0.32 vs 0.36 at 12 users in a check)."""
    from scipy.stats import wilcoxon

    p = np.ones(diff.shape[1])
    live = np.flatnonzero(np.any(diff != 0, axis=0))
    if live.size:
        method = "auto" if diff.shape[0] < EXACT_WILCOXON_BELOW else "approx"
        p[live] = wilcoxon(diff[:, live], zero_method="zsplit", axis=0, method=method).pvalue
    return p


def _effects(a: np.ndarray, b: np.ndarray, keys: list[str], resamples: int, level: float, seed: int):
    diff = b - a
    low, high, tv_ci = bootstrap(diff, resamples, level, seed)
    effects = Effects(keys, a.mean(0), b.mean(0), diff.mean(0), low, high, wilcoxon_columns(diff))
    return effects, tv_ci


def check_pairing(a: Run, b: Run, allow_unpaired: bool) -> list[str]:
    """The users both runs cover (sorted); refuse unpaired users unless allowed, and runs over other slates."""
    ua, ub = set(a.users), set(b.users)
    only_a, only_b = len(ua - ub), len(ub - ua)
    if (only_a or only_b) and not allow_unpaired:
        raise ValidationError(f"{a.source} and {b.source}: {only_a} users only in A and {only_b} only in B "
                              f"({len(ua & ub)} in both); pass --allow-unpaired to compare the users in both")
    both = sorted(ua & ub)
    if len(both) < 2:
        raise ValidationError(f"{a.source} and {b.source}: {len(both)} users in both runs; need at least 2")
    sa, sb = set(a.slates), set(b.slates)
    if sa != sb:
        extra = sorted(sa ^ sb)[0]
        raise ValidationError(f"{a.source} and {b.source}: the runs cover different slates (e.g. '{extra}'); "
                              "compare runs on variants of the same slates")
    return both


def check_items(a: Run, b: Run, images_a: Path | None, images_b: Path | None) -> dict[str, Slate] | None:
    """Where both runs' slates are known, each slate shows the same items in both (only positions differ).
    Returns run A's slates when they were read, so that nothing reads the folder twice."""
    if (images_a or a.images) is None or (images_b or b.images) is None:
        return None
    slates_a, slates_b = slates_of(a, images_a), slates_of(b, images_b)
    for sid in sorted(set(a.slates)):
        ka, kb = sorted(item_keys(slates_a[sid])), sorted(item_keys(slates_b[sid]))
        if ka != kb:
            diff = sorted(set(ka) ^ set(kb))
            raise ValidationError(f"slate '{sid}': the variants show different items (e.g. '{diff[0]}'); a "
                                  "comparison needs the same items in other positions")
    return slates_a


def compare_runs(path_a: Path, path_b: Path, *, resamples: int = 2000, level: float = 0.95, seed: int = 0,
                 allow_unpaired: bool = False, images_a: Path | None = None, images_b: Path | None = None) -> dict:
    """Effects of going from A to B on click shares per item, per position and overall (see module doc)."""
    if not (0 < level < 1) or not math.isfinite(level):
        raise ValidationError(f"--level must be between 0 and 1, got {level}")
    if not 100 <= resamples <= MAX_RESAMPLES:
        raise ValidationError(f"--resamples must be in 100..{MAX_RESAMPLES}, got {resamples}")
    a, b = read_run(path_a), read_run(path_b)
    users = check_pairing(a, b, allow_unpaired)
    slates_a = check_items(a, b, images_a, images_b)
    item_a = np.array([f"{s}/{k}" for s, k in zip(a.slates, a.item)], dtype=object)
    item_b = np.array([f"{s}/{k}" for s, k in zip(b.slates, b.item)], dtype=object)
    items = sorted(set(item_a) | set(item_b))
    positions = list(range(max(max(len(p) for p in a.p_click), max(len(p) for p in b.p_click))))
    pos_keys = [str(k) for k in positions]
    by_item, tv_ci = _effects(shares(a, users, item_a, items), shares(b, users, item_b, items), items, resamples,
                              level, seed)
    by_pos, _ = _effects(shares(a, users, a.click_slot.astype(str).astype(object), pos_keys),
                         shares(b, users, b.click_slot.astype(str).astype(object), pos_keys), pos_keys, resamples,
                         level, seed + 1)
    labels = position_labels(a, images_a, len(positions), slates_a)
    per_position = [{"position": row["position"], "label": labels[row["position"]], **row}
                    for row in _rows(by_pos, "position")]
    return {
        "format": "fixate-rt/compare/1", "a": str(path_a), "b": str(path_b), "users": len(users),
        "rows": {"a": int(a.users.size), "b": int(b.users.size)}, "level": level, "resamples": resamples,
        "seed": seed, "effect": "mean over users of (share in B − share in A)",
        "overall": {"total_variation": float(0.5 * np.abs(by_item.diff).sum()), "low": float(tv_ci[0]),
                    "high": float(tv_ci[1])},
        "per_item": _rows(by_item, "item"), "per_position": per_position,
    }


def position_labels(run: Run, images: Path | None, n: int, slates: dict[str, Slate] | None = None) -> list[str]:
    """What each position is called everywhere a person reads it: the slates' own slot labels (A–O on a RecGaze
    grid) when every slate of the run agrees on them, else the grid letters A, B, … (``position`` stays the
    0-based index in the JSON and CSV, for programs). ``slates``: the run's slates if already read."""
    from ..data.layout import LETTERS

    fallback = [LETTERS[k] if k < len(LETTERS) else str(k + 1) for k in range(n)]
    if slates is None:
        if (images or run.images) is None:
            return fallback
        try:
            slates = slates_of(run, images)
        except (ValidationError, InputError):
            return fallback
    seen = {slates[sid].layout.labels for sid in set(run.slates)}
    if len(seen) != 1 or len(next(iter(seen))) < n:
        return fallback
    return list(next(iter(seen)))[:n]


def _rows(e: Effects, name: str) -> list[dict]:
    return [{name: k if name == "item" else int(k), "share_a": float(sa), "share_b": float(sb), "diff": float(d),
             "low": float(lo), "high": float(hi), "p_wilcoxon": float(p)}
            for k, sa, sb, d, lo, hi, p in zip(e.keys, e.a, e.b, e.diff, e.low, e.high, e.p)]
