"""One validation layer for the CLI and the Python API: every public entry point checks its arguments here.

Each check returns the value in its canonical type or raises a `ValidationError` (one line naming the argument),
so a Python caller gets the same refusal, in the same words, as a shell user — never a raw ``TypeError`` from deep
inside torch. The text rules (ids, prompt text) are `fixate_rt.data.text`'s, shared with the file readers.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

from .data.text import check_id, check_prompt_text
from .errors import ValidationError

MAX_SEED = 2**63 - 1
MAX_SAMPLES = 10_000  # clicks drawn per (user, slate)
MAX_BATCH = 65_536  # users per decoder batch, pairs per shard


def integer(value: object, low: int, high: int, what: str) -> int:
    """An int (not a bool, not a float) in ``low..high``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"{what} must be an integer, got {value!r}")
    if not low <= value <= high:
        raise ValidationError(f"{what} must be in {low}..{high}, got {value}")
    return value


def seed(value: object, what: str = "seed") -> int:
    return integer(value, 0, MAX_SEED, what)


def finite(value: object, low: float, high: float, what: str) -> float:
    """A finite real number in ``[low, high]`` (NaN and infinities refused)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError(f"{what} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or not low <= value <= high:
        raise ValidationError(f"{what} must be a finite number in [{low:g}, {high:g}], got {value}")
    return value


def sequence(value: object, what: str) -> list:
    """A list, tuple or other sequence of items — never a string (which would be one item per character)."""
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        if hasattr(value, "tolist") and not isinstance(value, str | bytes):  # numpy arrays, pandas/pyarrow columns
            value = value.tolist()
        else:
            raise ValidationError(f"{what} must be a list of values (not {type(value).__name__})")
    return list(value)


def user_ids(value: object, what: str = "user_ids") -> list[str]:
    """A non-empty sequence of string ids (`check_id` each)."""
    ids = sequence(value, what)
    if not ids:
        raise ValidationError(f"{what}: empty (give at least one user id)")
    return [check_id(u, f"{what}[{i}]") for i, u in enumerate(ids)]


def profiles(value: object, n: int, what: str = "profiles") -> list[str]:
    """``n`` profile texts (None means all empty), each allowed in a prompt (`check_prompt_text`)."""
    if value is None:
        return [""] * n
    texts = sequence(value, what)
    if len(texts) != n:
        raise ValidationError(f"{what}: {len(texts)} given for {n} user_ids (one per user)")
    return [check_prompt_text(t, f"{what}[{i}]") for i, t in enumerate(texts)]


def path(value: object, what: str, *, optional: bool = False) -> Path | None:
    """A filesystem path given as ``str`` or ``os.PathLike`` (None only when ``optional``)."""
    if value is None and optional:
        return None
    if isinstance(value, bytes) or not isinstance(value, str | os.PathLike) or not str(value):
        raise ValidationError(f"{what} must be a path (str or os.PathLike), got {value!r}")
    text = os.fspath(value)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError(f"{what}: {text!r} is not valid UTF-8") from None
    return Path(text)


def flag(value: object, what: str) -> bool:
    if not isinstance(value, bool):
        raise ValidationError(f"{what} must be True or False, got {value!r}")
    return value
