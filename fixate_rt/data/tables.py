"""Parquet tables: users, sessions and the simulate output. Validated on read; written atomically.

Schemas are documented in docs/formats.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import InputError, ValidationError, where
from ..io import atomic_path
from .images import require_regular_file
from .text import check_id, check_prompt_text

SPLITS = ("train", "val", "test")

SIMULATIONS_SCHEMA = pa.schema(
    [
        ("user_id", pa.string()),
        ("slate_id", pa.string()),
        ("sample", pa.int32()),
        ("click_slot", pa.int32()),
        ("click_label", pa.string()),
        ("p_click", pa.list_(pa.float32())),
        ("slot_relevance", pa.list_(pa.float32())),
        ("cold_start", pa.bool_()),
        # the clicked slot's join keys from its layout item (null where the layout has none)
        ("click_item_id", pa.string()),
        ("click_item_kind", pa.string()),
        ("click_item_rank", pa.int32()),
        ("click_row", pa.int32()),
        ("click_col", pa.int32()),
    ]
)


def read_parquet(path: Path, what: str) -> pa.Table:
    """Read a Parquet file or raise a one-line `InputError` naming it."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: {what} file not found")
    if path.is_dir():
        raise InputError(f"{path}: expected a {what} Parquet file, got a folder")
    require_regular_file(path, f"{what} file")
    try:
        table = pq.read_table(path)
        table.validate(full=True)  # catches e.g. invalid UTF-8 in string columns before any value is read
        return table
    except (pa.ArrowInvalid, OSError, pa.ArrowException) as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{path}: not a readable Parquet file ({first_line})") from None


def require_column(table: pa.Table, path: Path, name: str, types: tuple[str, ...]) -> pa.ChunkedArray:
    """Return column ``name``; fail naming the file and field if it is missing or of the wrong kind."""
    if name not in table.column_names:
        raise ValidationError(f"{where(path, field=name)}: required column is missing (columns: {table.column_names})")
    col = table.column(name)
    kind = _kind(col.type)
    if kind not in types:
        raise ValidationError(f"{where(path, field=name)}: expected {' or '.join(types)}, got {col.type}")
    null_rows = np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))
    if null_rows.size:
        raise ValidationError(f"{where(path, int(null_rows[0]), name)}: value is null")
    return col


def _kind(t: pa.DataType) -> str:
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "string"
    if pa.types.is_integer(t):
        return "int"
    if pa.types.is_floating(t):
        return "float"
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return "list<float>" if (pa.types.is_floating(t.value_type) or pa.types.is_integer(t.value_type)) else "list"
    return str(t)


# --------------------------------------------------------------------------------------------- users
@dataclass(frozen=True)
class Users:
    """Users to simulate: ids in file order and their text profiles ("" when absent)."""

    ids: tuple[str, ...]
    profiles: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.ids)


def read_users(path: Path) -> Users:
    """Read and validate ``users.parquet`` (``user_id`` string unique; optional ``profile`` string)."""
    path = Path(path)
    table = read_parquet(path, "users")
    ids = [str(x) for x in require_column(table, path, "user_id", ("string",)).to_pylist()]
    if not ids:
        raise ValidationError(f"{path}: users file has no rows")
    seen: dict[str, int] = {}
    for row, uid in enumerate(ids):
        check_id(uid, where(path, row, 'user_id'))
        if uid in seen:
            raise ValidationError(f"{where(path, row, 'user_id')}: duplicate user id '{uid}' (first at row {seen[uid]})")
        seen[uid] = row
    if "profile" in table.column_names:
        col = table.column("profile")
        if _kind(col.type) != "string":
            raise ValidationError(f"{where(path, field='profile')}: expected string, got {col.type}")
        profiles = [check_prompt_text(p or "", where(path, row, "profile")) for row, p in enumerate(col.to_pylist())]
    else:
        profiles = [""] * len(ids)
    return Users(tuple(ids), tuple(profiles))


def write_users(path: Path, users: Users) -> None:
    table = pa.table({"user_id": pa.array(users.ids, pa.string()), "profile": pa.array(users.profiles, pa.string())})
    with atomic_path(Path(path)) as tmp:
        pq.write_table(table, tmp)


# ------------------------------------------------------------------------------------------ sessions
@dataclass(frozen=True)
class Sessions:
    """Observed sessions: per (user, slate) the per-slot dwell and the click. Lists are ragged over slots."""

    user_ids: tuple[str, ...]
    slate_ids: tuple[str, ...]
    splits: tuple[str, ...]
    fixation_ms: tuple[np.ndarray, ...]
    cursor_ms: tuple[np.ndarray, ...] | None
    clicked_slot: np.ndarray

    def __len__(self) -> int:
        return len(self.user_ids)


def _dwell_lists(col: pa.ChunkedArray, path: Path, field: str) -> list[np.ndarray]:
    out = []
    for row, values in enumerate(col.to_pylist()):
        arr = np.asarray(values, dtype=np.float64)
        if arr.size == 0:
            raise ValidationError(f"{where(path, row, field)}: empty dwell list")
        bad = np.flatnonzero(~np.isfinite(arr) | (arr < 0))
        if bad.size:
            v = arr[bad[0]]
            what = "NaN" if math.isnan(v) else ("infinite" if math.isinf(v) else "negative")
            raise ValidationError(f"{where(path, row, field)}: {what} dwell {v} at slot {int(bad[0])}")
        out.append(arr)
    return out


def read_sessions(path: Path) -> Sessions:
    """Read and validate ``sessions.parquet``. Dwell must be finite and ≥ 0; the click must index a slot."""
    path = Path(path)
    table = read_parquet(path, "sessions")
    users = [str(x) for x in require_column(table, path, "user_id", ("string",)).to_pylist()]
    slates = [str(x) for x in require_column(table, path, "slate_id", ("string",)).to_pylist()]
    splits = [str(x) for x in require_column(table, path, "split", ("string",)).to_pylist()]
    if not users:
        raise ValidationError(f"{path}: sessions file has no rows")
    for row, split in enumerate(splits):
        if split not in SPLITS:
            raise ValidationError(f"{where(path, row, 'split')}: '{split}' is not one of {', '.join(SPLITS)}")
    fixation = _dwell_lists(require_column(table, path, "fixation_ms", ("list<float>",)), path, "fixation_ms")
    cursor = None
    if "cursor_ms" in table.column_names:
        cursor = _dwell_lists(require_column(table, path, "cursor_ms", ("list<float>",)), path, "cursor_ms")
        for row, (f, c) in enumerate(zip(fixation, cursor)):
            if f.size != c.size:
                raise ValidationError(
                    f"{where(path, row, 'cursor_ms')}: {c.size} slots but fixation_ms has {f.size}"
                )
    clicked = np.asarray(require_column(table, path, "clicked_slot", ("int",)).to_pylist(), dtype=np.int64)
    for row, (c, f) in enumerate(zip(clicked, fixation)):
        if not 0 <= c < f.size:
            raise ValidationError(f"{where(path, row, 'clicked_slot')}: {c} is outside 0..{f.size - 1}")
    seen: dict[tuple[str, str], int] = {}
    for row, key in enumerate(zip(users, slates)):
        if key in seen:
            raise ValidationError(
                f"{where(path, row)}: duplicate (user_id, slate_id) = {key} (first at row {seen[key]})"
            )
        seen[key] = row
    return Sessions(
        tuple(users), tuple(slates), tuple(splits), tuple(fixation),
        tuple(cursor) if cursor is not None else None, clicked,
    )


def write_sessions(path: Path, sessions: Sessions) -> None:
    cols = {
        "user_id": pa.array(sessions.user_ids, pa.string()),
        "slate_id": pa.array(sessions.slate_ids, pa.string()),
        "split": pa.array(sessions.splits, pa.string()),
        "fixation_ms": pa.array([a.tolist() for a in sessions.fixation_ms], pa.list_(pa.float32())),
    }
    if sessions.cursor_ms is not None:
        cols["cursor_ms"] = pa.array([a.tolist() for a in sessions.cursor_ms], pa.list_(pa.float32()))
    cols["clicked_slot"] = pa.array(sessions.clicked_slot, pa.int32())
    with atomic_path(Path(path)) as tmp:
        pq.write_table(pa.table(cols), tmp)


def read_pairs(path: Path) -> list[tuple[str, str]]:
    """Read an optional ``pairs.parquet`` (``user_id``, ``slate_id``) listing which pairs to simulate."""
    path = Path(path)
    table = read_parquet(path, "pairs")
    users = [str(x) for x in require_column(table, path, "user_id", ("string",)).to_pylist()]
    slates = [str(x) for x in require_column(table, path, "slate_id", ("string",)).to_pylist()]
    if not users:
        raise ValidationError(f"{path}: pairs file has no rows")
    seen: dict[tuple[str, str], int] = {}
    for row, key in enumerate(zip(users, slates)):
        if key in seen:  # a repeated pair would simulate (and write) the same rows twice
            raise ValidationError(f"{where(path, row)}: duplicate pair (user_id, slate_id) = {key} "
                                  f"(first at row {seen[key]})")
        seen[key] = row
    return list(zip(users, slates))
