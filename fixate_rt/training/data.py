"""Training/evaluation samples: validated sessions joined with users and slates, slates vision-encoded once."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .. import metrics as M
from ..backbones import SlateFeatures
from ..data.slates import Slate, read_slates
from ..data.tables import Users, read_sessions, read_users
from ..errors import ValidationError
from .config import TrainConfig


@dataclass(frozen=True)
class Sample:
    user_id: str
    slate_id: str
    split: str
    gaze: np.ndarray  # [S] gaze target g (method.md §1.7)
    clicked: int


@dataclass
class Corpus:
    users: Users
    slates: dict[str, Slate]
    samples: list[Sample]
    dropped_no_mass: int

    def split(self, name: str) -> list[Sample]:
        return [s for s in self.samples if s.split == name]


def load_corpus(cfg: TrainConfig) -> Corpus:
    """Read and cross-check users, slates and sessions; fail with file/row/field on any inconsistency."""
    users = read_users(cfg.users)
    slates = read_slates(cfg.images)
    sessions = read_sessions(cfg.sessions)
    if cfg.signal == "cursor" and sessions.cursor_ms is None:
        raise ValidationError(f"{cfg.sessions}, field 'cursor_ms': --signal cursor needs this column")
    dwell = sessions.fixation_ms if cfg.signal == "fixation" else sessions.cursor_ms
    known = set(users.ids)
    samples, dropped = [], 0
    for row, (u, s, split) in enumerate(zip(sessions.user_ids, sessions.slate_ids, sessions.splits)):
        if u not in known:
            raise ValidationError(f"{cfg.sessions}, row {row}, field 'user_id': unknown user '{u}' (not in {cfg.users})")
        if s not in slates:
            raise ValidationError(f"{cfg.sessions}, row {row}, field 'slate_id': unknown slate '{s}' (not in {cfg.images})")
        n = slates[s].layout.n_slots
        if dwell[row].size != n:
            raise ValidationError(f"{cfg.sessions}, row {row}, field '{cfg.signal}_ms': {dwell[row].size} values but "
                                  f"slate '{s}' has {n} slots")
        if dwell[row].sum() <= 0:  # as the reference: samples without the chosen signal are not used
            dropped += 1
            continue
        samples.append(Sample(u, s, split, M.gaze_target(dwell[row], cfg.tau), int(sessions.clicked_slot[row])))
    if not any(s.split == "train" for s in samples):
        raise ValidationError(f"{cfg.sessions}: no train-split session with {cfg.signal} mass")
    return Corpus(users, slates, samples, dropped)


class SlateCache:
    """Vision features, token boxes and answer-token ids per slate, computed once (the tower is frozen)."""

    def __init__(self, backbone, slates: dict[str, Slate]) -> None:
        self.backbone = backbone
        self.slates = slates
        self._feats: dict[str, SlateFeatures] = {}
        self._labels: dict[str, list[int]] = {}

    def features(self, slate_id: str) -> SlateFeatures:
        if slate_id not in self._feats:
            self._feats[slate_id] = self.backbone.encode_slate(self.slates[slate_id].load_image())
        return self._feats[slate_id]

    def label_ids(self, slate_id: str) -> list[int]:
        if slate_id not in self._labels:
            self._labels[slate_id] = self.backbone.label_token_ids(self.slates[slate_id].layout.labels)
        return self._labels[slate_id]

    def slot_boxes(self, slate_ids: list[str]) -> torch.Tensor:
        """[B, S_max, 4]; slates with fewer slots are padded with empty boxes (pooled to 0)."""
        boxes = [self.slates[s].layout.boxes for s in slate_ids]
        S = max(len(b) for b in boxes)
        out = np.zeros((len(boxes), S, 4), dtype=np.float32)
        for i, b in enumerate(boxes):
            out[i, : len(b)] = b
        return torch.from_numpy(out)


def batches(samples: list[Sample], size: int, order: np.ndarray | None = None) -> list[list[Sample]]:
    idx = np.arange(len(samples)) if order is None else order
    return [[samples[i] for i in idx[k:k + size]] for k in range(0, len(idx), size)]
