"""Error types. The CLI turns every `FixateError` into one line on stderr and exit code 2."""

from __future__ import annotations


class FixateError(Exception):
    """Base class of every error fixate-rt raises on purpose."""


class InputError(FixateError):
    """A user-supplied file, row or field is missing, corrupt or inconsistent."""


class ValidationError(InputError):
    """A file was readable but its content breaks the documented schema."""


class UnavailableError(FixateError):
    """An optional component (extra, C++ module, device) is not available; the message says how to get it."""


def where(path: object, row: int | None = None, field: str | None = None) -> str:
    """Format the location part of an error message: ``file.parquet, row 3, field 'user_id'``."""
    parts = [str(path)]
    if row is not None:
        parts.append(f"row {row}")
    if field is not None:
        parts.append(f"field '{field}'")
    return ", ".join(parts)
