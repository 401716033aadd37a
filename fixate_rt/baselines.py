"""Cheap predictors of a session's gaze and click that a simulator has to beat (docs/metrics.md, "Baselines").

* ``uniform``: every slot equally likely, for gaze and click;
* ``population``: the mean train gaze target and click share per slot position, over every train session;
* ``user``: the same, over that user's own train sessions; a user without any falls back to ``population``, and
  the output names those users.

Fitted priors keep one uniform pseudo-session, so that no slot has probability 0 (KL and LogLoss stay finite):
    prior_i = (Σ_train x_i + 1/S) / (n_i + 1)
where x is the session's gaze target g (or its one-hot click), n_i the train sessions that have slot i and S the
scored slate's slot count; the result is renormalised over the S slots (train slates may be longer or shorter).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from . import metrics as M
from .errors import ValidationError

TRAIN_SPLIT = "train"


class Baseline(str, Enum):
    """A `score --baselines` choice."""

    uniform = "uniform"
    population = "population"
    user = "user"


FITTED = frozenset({Baseline.population, Baseline.user})


def parse_baselines(text: str | Sequence[str | Baseline]) -> tuple[Baseline, ...]:
    """``"uniform,population,user"`` (or a sequence of names) -> the baselines, in the given order, once each."""
    names = [n.strip() for n in text.split(",")] if isinstance(text, str) else [getattr(n, "value", n) for n in text]
    out: list[Baseline] = []
    for name in names:
        if not name:
            continue
        try:
            baseline = Baseline(name)
        except ValueError:
            known = ", ".join(b.value for b in Baseline)
            raise ValidationError(f"--baselines: unknown baseline '{name}' (known: {known})") from None
        if baseline not in out:
            out.append(baseline)
    if not out:
        raise ValidationError("--baselines: no baseline named (known: " + ", ".join(b.value for b in Baseline) + ")")
    return tuple(out)


@dataclass
class SlotPrior:
    """Sums over train sessions per slot position (grown to the longest slate seen): gaze target g, clicks and the
    number of sessions that had the slot."""

    gaze: np.ndarray = field(default_factory=lambda: np.zeros(0))
    clicks: np.ndarray = field(default_factory=lambda: np.zeros(0))
    sessions: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def add(self, gaze: np.ndarray, clicked: int) -> None:
        """One train session: its gaze target g [S] and its clicked slot."""
        n = gaze.size
        if n > self.gaze.size:
            grow = n - self.gaze.size
            self.gaze, self.clicks, self.sessions = (np.concatenate([a, np.zeros(grow)])
                                                     for a in (self.gaze, self.clicks, self.sessions))
        self.gaze[:n] += gaze
        self.clicks[clicked] += 1.0
        self.sessions[:n] += 1.0

    @property
    def count(self) -> int:
        """Train sessions added."""
        return int(self.sessions[0]) if self.sessions.size else 0

    def predict(self, n_slots: int) -> tuple[np.ndarray, np.ndarray]:
        """(gaze prior [S], click prior [S]) for a slate of S = ``n_slots`` slots; uniform when nothing was added."""
        gaze, clicks, sessions = (np.zeros(n_slots) for _ in range(3))
        k = min(n_slots, self.gaze.size)
        gaze[:k], clicks[:k], sessions[:k] = self.gaze[:k], self.clicks[:k], self.sessions[:k]
        smoothed = [(x + 1.0 / n_slots) / (sessions + 1.0) for x in (gaze, clicks)]
        return smoothed[0] / smoothed[0].sum(), smoothed[1] / smoothed[1].sum()


@dataclass
class FittedBaselines:
    """The requested baselines, fitted on the train sessions; `predict` gives (relevance [S], p_click [S])."""

    names: tuple[Baseline, ...]
    population: SlotPrior
    per_user: dict[str, SlotPrior]
    fallback_users: tuple[str, ...] = ()

    def predict(self, name: Baseline, user: str, n_slots: int) -> tuple[np.ndarray, np.ndarray]:
        if name is Baseline.uniform:
            flat = np.full(n_slots, 1.0 / n_slots)
            return flat, flat.copy()
        if name is Baseline.user and user in self.per_user:
            return self.per_user[user].predict(n_slots)
        return self.population.predict(n_slots)

    def describe(self) -> dict[str, dict]:
        """What each baseline was fitted on, for metrics.json."""
        out: dict[str, dict] = {}
        for name in self.names:
            if name is Baseline.uniform:
                out[name.value] = {"fitted_on": None}
            elif name is Baseline.population:
                out[name.value] = {"fitted_on": {"split": TRAIN_SPLIT, "sessions": self.population.count}}
            else:
                out[name.value] = {"fitted_on": {"split": TRAIN_SPLIT, "sessions": self.population.count,
                                                 "users": len(self.per_user)},
                                   "fallback_to_population": list(self.fallback_users)}
        return out


def fit_baselines(names: tuple[Baseline, ...], user_ids: Sequence[str], splits: Sequence[str],
                  dwell: Sequence[np.ndarray], clicked: np.ndarray, tau: float, scored_users: Sequence[str],
                  where: str) -> FittedBaselines:
    """Fit the priors on the sessions whose split is ``train`` and that have dwell mass (rows of a sessions file:
    user ids, splits, dwell [S] per row, clicked slot per row), with the same gaze target (τ) that is scored.

    A fitted baseline with no train session is an error naming ``where`` (the sessions file); a scored user with no
    train session of their own gets the population prior under ``user``, listed in ``fallback_users``."""
    population, per_user = SlotPrior(), {}
    if FITTED & set(names):
        for u, split, t, c in zip(user_ids, splits, dwell, clicked):
            if split != TRAIN_SPLIT or t.sum() <= 0:
                continue
            g = M.gaze_target(t, tau)
            population.add(g, int(c))
            if Baseline.user in names:
                per_user.setdefault(u, SlotPrior()).add(g, int(c))
        if population.count == 0:
            fitted = ", ".join(n.value for n in names if n in FITTED)
            raise ValidationError(f"{where}: no session with split '{TRAIN_SPLIT}' and dwell mass, so the baselines "
                                  f"{fitted} cannot be fitted (they are fitted on the train split only; "
                                  "--baselines uniform needs none)")
    fallback = tuple(sorted({u for u in scored_users if u not in per_user})) if Baseline.user in names else ()
    return FittedBaselines(names, population, per_user, fallback)

