"""One join-and-validate step for users, slates, sessions and pairs, used by every command.

Each file is read and checked on its own (tables.py, slates.py); `load_inputs` then cross-checks whatever was
given against everything else (unknown user or slate ids, dwell lists whose length is not the slate's slot
count, a missing cursor column for ``--signal cursor``), before any model is loaded or any file written.
Every failure is one `ValidationError` naming the file, row and field.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ValidationError, where
from .slates import Slate, read_slates
from .tables import Sessions, Users, read_pairs, read_sessions, read_users

SIGNALS = ("fixation", "cursor", "intersect")


@dataclass
class Inputs:
    """What a command reads, each None when not given; ``dwell`` is the chosen signal's per-session dwell."""

    users: Users | None = None
    slates: dict[str, Slate] | None = None
    sessions: Sessions | None = None
    pairs: list[tuple[str, str]] | None = None
    dwell: tuple[np.ndarray, ...] | None = None

    def all_pairs(self) -> list[tuple[str, str]]:
        """The given pairs, else every user on every slate (slate-major, so each slate is encoded once)."""
        if self.pairs is not None:
            return self.pairs
        return [(u, s) for s in self.slates for u in self.users.ids]

    def profiles(self) -> dict[str, str]:
        return dict(zip(self.users.ids, self.users.profiles))


def dwell_of(sessions: Sessions, path: Path, signal: str) -> tuple[np.ndarray, ...]:
    """The per-session dwell lists of ``signal``: fixation, cursor, or intersect.

    ``intersect`` is the dual-signal subset: fixation dwell, but only for sessions that also have cursor dwell;
    the others get all-zero dwell, so every command drops them as sessions without signal mass.
    """
    if signal not in SIGNALS:
        raise ValidationError(f"--signal must be one of {', '.join(SIGNALS)}, got '{signal}'")
    if signal in ("cursor", "intersect") and sessions.cursor_ms is None:
        raise ValidationError(f"{path}, field 'cursor_ms': --signal {signal} needs this column")
    if signal == "fixation":
        return sessions.fixation_ms
    if signal == "cursor":
        return sessions.cursor_ms
    return tuple(f if c.sum() > 0 else np.zeros_like(f) for f, c in zip(sessions.fixation_ms, sessions.cursor_ms))


def check_pairs(pairs: list[tuple[str, str]], users: Users, slates: dict[str, Slate], path: Path) -> None:
    known_users = set(users.ids)
    for row, (uid, sid) in enumerate(pairs):
        if uid not in known_users:
            raise ValidationError(f"{where(path, row, 'user_id')}: unknown user '{uid}'")
        if sid not in slates:
            raise ValidationError(f"{where(path, row, 'slate_id')}: unknown slate '{sid}'")


def check_sessions(sessions: Sessions, path: Path, *, users: Users | None = None, users_path: Path | None = None,
                   slates: dict[str, Slate] | None = None, images_path: Path | None = None) -> None:
    """Every session's user and slate exist, and its dwell lists have one value per slot of its slate."""
    known = set(users.ids) if users is not None else None
    lists = [("fixation_ms", sessions.fixation_ms)]
    if sessions.cursor_ms is not None:
        lists.append(("cursor_ms", sessions.cursor_ms))
    for row, (uid, sid) in enumerate(zip(sessions.user_ids, sessions.slate_ids)):
        if known is not None and uid not in known:
            raise ValidationError(f"{where(path, row, 'user_id')}: unknown user '{uid}' (not in {users_path})")
        if slates is None:
            continue
        if sid not in slates:
            raise ValidationError(f"{where(path, row, 'slate_id')}: unknown slate '{sid}' (not in {images_path})")
        n = slates[sid].layout.n_slots
        for field, values in lists:
            if values[row].size != n:
                raise ValidationError(f"{where(path, row, field)}: {values[row].size} values but slate '{sid}' "
                                      f"has {n} slots")


def load_inputs(*, users: Path | None = None, images: Path | None = None, sessions: Path | None = None,
                pairs: Path | None = None, signal: str = "fixation") -> Inputs:
    """Read every given file and cross-check them; raises before anything is loaded or written."""
    data = Inputs()
    if users is not None:
        data.users = read_users(users)
    if images is not None:
        data.slates = read_slates(images)
    if sessions is not None:
        data.sessions = read_sessions(sessions)
        data.dwell = dwell_of(data.sessions, Path(sessions), signal)
        check_sessions(data.sessions, Path(sessions), users=data.users, users_path=users, slates=data.slates,
                       images_path=images)
    if pairs is not None:
        data.pairs = read_pairs(pairs)
        if data.users is None or data.slates is None:
            raise ValueError("pairs are checked against users and slates: pass both")
        check_pairs(data.pairs, data.users, data.slates, Path(pairs))
    return data
