"""Training/evaluation samples: validated sessions joined with users and slates, slates vision-encoded once."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .. import metrics as M
from ..backbones import SlateFeatures
from ..data.join import load_inputs
from ..data.slates import Slate
from ..data.tables import Users
from ..errors import ValidationError
from .config import TrainConfig
from .presets import per_seed_split


@dataclass(frozen=True)
class Sample:
    user_id: str
    slate_id: str
    split: str
    gaze: np.ndarray  # [S] gaze target g (docs/method.md §1.7)
    clicked: int


@dataclass
class Corpus:
    users: Users
    slates: dict[str, Slate]
    samples: list[Sample]
    dropped_no_mass: int

    def split(self, name: str) -> list[Sample]:
        return [s for s in self.samples if s.split == name]

    def resplit(self, seed: int) -> Corpus:
        """The same samples with the reference's per-seed, per-user split (`presets.per_seed_split`)."""
        splits = per_seed_split([s.user_id for s in self.samples], seed)
        return Corpus(self.users, self.slates, [replace(s, split=sp) for s, sp in zip(self.samples, splits)],
                      self.dropped_no_mass)


def load_corpus(cfg: TrainConfig) -> Corpus:
    """Read and cross-check users, slates and sessions (`fixate_rt.data.join`); keep the sessions with gaze mass."""
    data = load_inputs(users=cfg.users, images=cfg.images, sessions=cfg.sessions, signal=cfg.signal)
    sessions = data.sessions
    samples, dropped = [], 0
    for row, (u, s, split) in enumerate(zip(sessions.user_ids, sessions.slate_ids, sessions.splits)):
        if data.dwell[row].sum() <= 0:  # as the reference: samples without the chosen signal are not used
            dropped += 1
            continue
        samples.append(Sample(u, s, split, M.gaze_target(data.dwell[row], cfg.tau), int(sessions.clicked_slot[row])))
    if cfg.split_mode == "data" and not any(s.split == "train" for s in samples):
        raise ValidationError(f"{cfg.sessions}: no train-split session with {cfg.signal} mass")
    if not samples:
        raise ValidationError(f"{cfg.sessions}: no session with {cfg.signal} mass")
    return Corpus(data.users, data.slates, samples, dropped)


class SlateCache:
    """Vision features (with their token boxes) per slate, computed once: the tower is frozen."""

    def __init__(self, backbone, slates: dict[str, Slate]) -> None:
        self.backbone = backbone
        self.slates = slates
        self._feats: dict[str, SlateFeatures] = {}

    def features(self, slate_id: str) -> SlateFeatures:
        if slate_id not in self._feats:
            self._feats[slate_id] = self.backbone.encode_slate(self.slates[slate_id].load_image())
        return self._feats[slate_id]


def batches(samples: list[Sample], size: int, order: np.ndarray | None = None) -> list[list[Sample]]:
    idx = np.arange(len(samples)) if order is None else order
    return [[samples[i] for i in idx[k:k + size]] for k in range(0, len(idx), size)]
