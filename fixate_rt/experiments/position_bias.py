"""Position bias (`fixate-rt position-bias`): how much a position draws attention and clicks, whatever it shows.

From one or more runs (ideally on variants that move items between positions, `fixate-rt permute`):

* attention: the model's mean slot relevance per position;
* ``logit`` — a conditional-logit choice model, P(click k | slate) ∝ exp(β_k + γ_item(k)), fitted by maximum
  likelihood (the simulator draws exactly one click per slate, which is this model's assumption). β_0 = 0 (the
  first position is the reference) and the item effects γ are centred; a tiny ridge keeps items that were never
  clicked finite;
* ``pbm`` — the position-based model (examination θ_k × attractiveness α_item, each position an independent
  Bernoulli click), fitted by EM as in the click-model literature. Its independence assumption does not hold
  for one-click-per-slate data, so it is reported for comparison with click-model toolkits;
* ``cascade`` — the cascade model (positions scanned in slot order, the first attractive item clicked): item
  attractiveness α = clicks / examinations, and per position the implied examination probability
  P(reach k) = mean over sessions of Π_{j<k} (1 − α_item(j)).

A "configuration" is one slate as shown in one run (which item sits at which position); clicks are counted
per configuration and position, so the fits cost O(configurations × slots), not O(sessions).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..data.slates import Slate
from ..errors import ValidationError
from .runs import Run, item_keys

RIDGE = 1e-4  # per parameter, on the log-likelihood's scale (negligible against thousands of clicks)


@dataclass(frozen=True)
class Configurations:
    """C configurations over at most P positions: item index [C, P] (−1 = no slot), clicks [C, P], sessions [C]."""

    items: np.ndarray
    clicks: np.ndarray
    sessions: np.ndarray
    item_names: list[str]

    @property
    def mask(self) -> np.ndarray:
        return self.items >= 0


def configurations(runs: list[Run], slates_per_run: list[dict[str, Slate]]) -> tuple[Configurations, dict]:
    """Count clicks per (run, slate) configuration and position; also the attention and click share per
    position (means over rows)."""
    names: dict[str, int] = {}
    rows_items, rows_clicks, rows_n = [], [], []
    P = max(len(p) for run in runs for p in run.p_click)
    attention, share, n_rows = np.zeros(P), np.zeros(P), 0
    for run, slates in zip(runs, slates_per_run):
        keys = {sid: [names.setdefault(f"{sid}/{k}", len(names)) for k in item_keys(slate)]
                for sid, slate in slates.items() if sid in set(run.slates)}
        for sid, idx in keys.items():
            rows = np.flatnonzero(run.slates == sid)
            if len(idx) != len(run.p_click[rows[0]]):
                raise ValidationError(f"{run.source}: slate '{sid}' has {len(run.p_click[rows[0]])} slots in the run "
                                      f"but {len(idx)} in its layout")
            counts = np.bincount(run.click_slot[rows], minlength=len(idx))
            rows_items.append(np.pad(np.array(idx), (0, P - len(idx)), constant_values=-1))
            rows_clicks.append(np.pad(counts, (0, P - len(idx))))
            rows_n.append(len(rows))
            for r in rows:
                attention[: len(run.relevance[r])] += run.relevance[r]
                share[run.click_slot[r]] += 1
            n_rows += len(rows)
    config = Configurations(np.stack(rows_items), np.stack(rows_clicks).astype(np.float64),
                            np.array(rows_n, dtype=np.float64), sorted(names, key=names.get))
    return config, {"attention": (attention / n_rows).tolist(), "click_share": (share / n_rows).tolist(),
                    "sessions": n_rows}


def fit_logit(c: Configurations, iterations: int = 200) -> dict:
    """Maximum-likelihood β [P] (β_0 = 0) and centred γ [I] of the conditional logit."""
    mask = torch.from_numpy(c.mask)
    items = torch.from_numpy(np.where(c.mask, c.items, 0))
    clicks, n = torch.from_numpy(c.clicks), torch.from_numpy(c.sessions)
    P, I = c.items.shape[1], len(c.item_names)
    beta = torch.zeros(P - 1, dtype=torch.float64, requires_grad=True)
    gamma = torch.zeros(I, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([beta, gamma], lr=1, max_iter=iterations, tolerance_grad=1e-10,
                            tolerance_change=1e-12, line_search_fn="strong_wolfe")

    def utilities():
        b = torch.cat([beta.new_zeros(1), beta])
        u = b.unsqueeze(0) + gamma[items]
        return u.masked_fill(~mask, float("-inf"))

    def loglik():
        u = utilities()
        return (clicks * u.masked_fill(~mask, 0)).sum() - (n * torch.logsumexp(u, dim=1)).sum()

    def closure():
        opt.zero_grad()
        loss = -loglik() + RIDGE * (beta.square().sum() + gamma.square().sum())
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        b = torch.cat([beta.new_zeros(1), beta]).numpy()
        g = (gamma - gamma.mean()).numpy()
        final = float(loglik())
    return {"beta": b.tolist(), "theta": (np.exp(b) / np.exp(b).max()).tolist(), "gamma": dict(zip(c.item_names,
                                                                                                    g.tolist())),
            "loglik": final}


def fit_pbm(c: Configurations, iterations: int = 200) -> dict:
    """EM for the position-based model: examination θ [P], attractiveness α [I]."""
    mask = c.mask
    items = np.where(mask, c.items, 0)
    P, I = c.items.shape[1], len(c.item_names)
    theta, alpha = np.full(P, 0.5), np.full(I, 0.5)
    clicks = c.clicks
    misses = (c.sessions[:, None] - clicks) * mask
    exposures = c.sessions[:, None] * mask
    for _ in range(iterations):
        t, a = theta[None, :], alpha[items]
        denom = np.maximum(1 - t * a, 1e-12)
        post_e = clicks + misses * t * (1 - a) / denom  # expected examinations per (config, position)
        post_a = clicks + misses * a * (1 - t) / denom  # expected attractive impressions
        theta = post_e.sum(0) / np.maximum(exposures.sum(0), 1e-12)
        alpha = np.bincount(items[mask], weights=post_a[mask], minlength=I) / np.maximum(
            np.bincount(items[mask], weights=exposures[mask], minlength=I), 1e-12)
    return {"theta": theta.tolist(), "theta_relative": (theta / theta.max()).tolist(),
            "alpha": dict(zip(c.item_names, alpha.tolist()))}


def fit_cascade(c: Configurations) -> dict:
    """Cascade model: α_item = clicks / examinations (positions up to the click); examination per position."""
    mask = c.mask
    items = np.where(mask, c.items, 0)
    I = len(c.item_names)
    # sessions that reached position k = sessions whose click is at k or later
    reached = np.flip(np.cumsum(np.flip(c.clicks, 1), 1), 1) * mask
    clicks = np.bincount(items[mask], weights=c.clicks[mask], minlength=I)
    examined = np.bincount(items[mask], weights=reached[mask], minlength=I)
    alpha = np.divide(clicks, examined, out=np.zeros(I), where=examined > 0)
    survive = np.cumprod(np.where(mask, 1 - alpha[items], 1.0), axis=1)
    reach = np.concatenate([np.ones((len(items), 1)), survive[:, :-1]], axis=1) * mask
    weights = c.sessions[:, None] * mask
    examination = (reach * weights).sum(0) / np.maximum(weights.sum(0), 1e-12)
    return {"examination": examination.tolist(), "alpha": dict(zip(c.item_names, alpha.tolist()))}


ASSUMPTIONS = {
    "logit": "exactly one click per slate, chosen with probability ∝ exp(position effect + item effect) (the "
             "simulator's own sampling scheme); β_0 = 0",
    "pbm": "each position examined independently with probability θ_k and clicked if examined and attractive; "
           "ignores that the simulator draws one click per slate",
    "cascade": "positions scanned in slot order, the first attractive item is clicked and the scan stops; "
               "examination = probability of reaching the position",
}


def per_position(c: Configurations) -> dict[str, np.ndarray]:
    """Each click model's per-position parameter on one scale (largest = 1 for logit and PBM; the cascade's
    examination is already a probability)."""
    return {"logit": np.asarray(fit_logit(c, iterations=60)["theta"]),
            "pbm": np.asarray(fit_pbm(c, iterations=60)["theta_relative"]),
            "cascade": np.asarray(fit_cascade(c)["examination"])}


def bootstrap_intervals(c: Configurations, resamples: int = 100, level: float = 0.95, seed: int = 0) -> dict:
    """Percentile intervals of every model's per-position parameter, resampling the slate configurations (with
    their clicks) with replacement and refitting; the interval is over refits, so it covers the fits' own noise."""
    rng = np.random.default_rng(seed)
    draws: dict[str, list[np.ndarray]] = {"logit": [], "pbm": [], "cascade": []}
    for _ in range(resamples):
        pick = rng.integers(0, len(c.sessions), len(c.sessions))
        sample = Configurations(c.items[pick], c.clicks[pick], c.sessions[pick], c.item_names)
        for name, values in per_position(sample).items():
            draws[name].append(values)
    alpha = (1 - level) / 2
    return {"level": level, "resamples": resamples, "seed": seed, "unit": "slate configuration",
            **{name: {"low": np.quantile(v, alpha, axis=0).tolist(), "high": np.quantile(v, 1 - alpha, axis=0).tolist()}
               for name, v in ((n, np.stack(d)) for n, d in draws.items())}}


def position_bias(runs: list[Run], slates_per_run: list[dict[str, Slate]], *, resamples: int = 100,
                  seed: int = 0) -> dict:
    """``slates_per_run``: the slates each run was made on (`runs.slates_of`), read once by the caller.
    ``resamples``: bootstrap refits for the intervals (0: none)."""
    config, observed = configurations(runs, slates_per_run)
    if len(config.item_names) < 2 or observed["sessions"] < 10:
        raise ValidationError("position bias needs at least 10 simulated sessions and 2 items")
    logit, pbm, cascade = fit_logit(config), fit_pbm(config), fit_cascade(config)
    intervals = bootstrap_intervals(config, resamples, seed=seed) if resamples else None
    return {
        "format": "fixate-rt/position-bias/1", "runs": [str(r.source) for r in runs],
        "sessions": observed["sessions"], "configurations": int(len(config.sessions)),
        "positions": int(config.items.shape[1]),
        "attention": observed["attention"], "click_share": observed["click_share"],
        "logit": {"beta": logit["beta"], "theta": logit["theta"], "loglik": logit["loglik"]},
        "pbm": {"theta": pbm["theta"], "theta_relative": pbm["theta_relative"]},
        "cascade": {"examination": cascade["examination"]},
        "intervals": intervals,
        "assumptions": ASSUMPTIONS,
        "items": {"logit_gamma": logit["gamma"], "pbm_alpha": pbm["alpha"], "cascade_alpha": cascade["alpha"]},
    }
