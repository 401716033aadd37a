"""Importer for FixATE's processed RecGaze records (docs/method.md §1.4) into fixate-rt's formats.

Input: ``fixate_dataset.jsonl`` (one record per click page-visit) and the folder of lettered viewport images
(``image_index_path`` is relative to it). Each record becomes one slate (its own viewport) and one session:

* image: the lettered 1920×1080 viewport resized (LANCZOS) to 1100 px wide, as the reference feeds the model;
* layout: the record's ``bboxes`` (1920×1080 px) scaled by 1100/1920, labels A, B, … (n_candidates);
* session: ``slot_fix`` / ``slot_cursor`` truncated to n_candidates, ``label`` as the clicked slot, ``split``.
Optional ``user_features.csv`` (``User_ID``/``user_id``, ``Top_genre``, ``Preferred_genres``) gives the profile
text ``Top_genre: <g>, Preferred_genres: <list>`` exactly as the reference builds it.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import InputError, ValidationError
from ..io import read_utf8
from ..outputs import check_output
from .images import MAX_PIXELS, image_size, load_rgb
from .slates import Layout, write_layout
from .staging import staged_dataset
from .tables import SPLITS, Sessions, Users, write_sessions, write_users
from .text import check_id, check_path_id, check_prompt_text

TARGET_WIDTH = 1100
REQUIRED = ("user_id", "task_id", "visit_index", "split", "image_index_path", "label", "n_candidates", "bboxes",
            "slot_fix")


def _profiles(path: Path | None) -> dict[str, str]:
    """user id → the reference's profile text, from RecGaze's user_features.csv."""
    if path is None:
        return {}
    try:
        rows = list(csv.DictReader(io.StringIO(read_utf8(path, "user features file"), newline="")))
    except csv.Error as exc:
        raise ValidationError(f"{path}: not a CSV file ({exc})") from None
    out: dict[str, str] = {}
    for i, row in enumerate(rows):
        uid = row.get("user_id") or row.get("User_ID") or row.get("UserID")
        if not uid:
            raise ValidationError(f"{path}, row {i}, field 'user_id': missing (also tried User_ID, UserID)")
        check_id(uid, f"{path}, row {i}, field 'user_id'")
        if uid in out:
            raise ValidationError(f"{path}, row {i}, field 'user_id': duplicate user '{uid}'")
        text = f"Top_genre: {row.get('Top_genre') or ''}, Preferred_genres: {row.get('Preferred_genres') or ''}"
        out[uid] = check_prompt_text(text, f"{path}, row {i}")
    return out


def _numbers(values: object, where: str, n: int) -> np.ndarray:
    """≥ n finite, non-negative numbers (dwell per slot; the first n are used)."""
    if not isinstance(values, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                for v in values):
        raise ValidationError(f"{where}: expected a list of numbers")
    arr = np.asarray(values, dtype=np.float64)
    if arr.size < n or not np.isfinite(arr).all() or (arr < 0).any():
        raise ValidationError(f"{where}: expected ≥ {n} finite non-negative values")
    return arr[:n]


def _boxes(values: object, where: str, n: int) -> np.ndarray:
    """n boxes [x0, y0, x1, y1] of finite numbers with x0 < x1 and y0 < y1 (source-image px) -> [n, 4]."""
    if not isinstance(values, list) or len(values) != n:
        raise ValidationError(f"{where}: expected {n} boxes")
    for i, box in enumerate(values):
        if not (isinstance(box, list) and len(box) == 4 and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in box)):
            raise ValidationError(f"{where}, box {i}: expected [x0, y0, x1, y1] finite numbers, got {box!r}")
        if not (box[0] < box[2] and box[1] < box[3]):
            raise ValidationError(f"{where}, box {i}: empty or inverted box {box}")
    return np.asarray(values, dtype=np.float64)


def _inside_root(root: Path, relative: object, where: str) -> Path:
    """``root / relative`` when it stays inside ``root`` (no absolute paths, no '..' out of it)."""
    if not isinstance(relative, str) or not relative or "\x00" in relative:
        raise ValidationError(f"{where}: expected a relative path, got {relative!r}")
    if Path(relative).is_absolute():
        raise ValidationError(f"{where}: '{relative}' is an absolute path; it must be relative to --images-root")
    path = root / relative
    resolved, base = path.resolve(), root.resolve()
    if resolved != base and base not in resolved.parents:
        raise ValidationError(f"{where}: '{relative}' points outside --images-root {root}")
    return path


def _record(line: str, path: Path, lineno: int, root: Path) -> dict:
    where = f"{path}, line {lineno}"
    try:
        rec = json.loads(line, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
    except json.JSONDecodeError as exc:
        raise ValidationError(f"{where}: invalid JSON ({exc.msg})") from None
    except ValueError as exc:
        raise ValidationError(f"{where}: {exc} is not a JSON number") from None
    if not isinstance(rec, dict):
        raise ValidationError(f"{where}: expected a JSON object, got {type(rec).__name__}")
    for key in REQUIRED:
        if key not in rec:
            raise ValidationError(f"{where}, field '{key}': missing")
    n = rec["n_candidates"]
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 26:
        raise ValidationError(f"{where}, field 'n_candidates': expected 1..26, got {n!r}")
    if not (isinstance(rec["label"], int) and not isinstance(rec["label"], bool) and 0 <= rec["label"] < n):
        raise ValidationError(f"{where}, field 'label': {rec['label']!r} is outside 0..{n - 1}")
    if rec["split"] not in SPLITS:
        raise ValidationError(f"{where}, field 'split': '{rec['split']}' is not one of {', '.join(SPLITS)}")
    check_id(rec["user_id"], f"{where}, field 'user_id'")
    for key in ("task_id", "visit_index"):
        if not isinstance(rec[key], (int, str)) or isinstance(rec[key], bool):
            raise ValidationError(f"{where}, field '{key}': expected an integer or a string, got {rec[key]!r}")
    slate_id = f"{rec['user_id']}_{rec['task_id']}_{rec['visit_index']}"
    check_path_id(slate_id, f"{where}, fields 'user_id', 'task_id', 'visit_index' (the slate id)")
    return {
        "user_id": rec["user_id"], "slate_id": slate_id, "split": rec["split"], "label": rec["label"], "n": n,
        "where": where,
        "image": _inside_root(root, rec["image_index_path"], f"{where}, field 'image_index_path'"),
        "boxes": _boxes(rec["bboxes"], f"{where}, field 'bboxes'", n),
        "fix": _numbers(rec["slot_fix"], f"{where}, field 'slot_fix'", n),
        "cur": None if rec.get("slot_cursor") is None else _numbers(rec["slot_cursor"], f"{where}, field 'slot_cursor'", n),
    }


def _scaled_layout(rec: dict, source_size: tuple[int, int]) -> tuple[tuple[int, int], Layout]:
    """(target size, layout) of a record's viewport resized to TARGET_WIDTH, its boxes scaled and clipped."""
    w, h = source_size
    scale = TARGET_WIDTH / w
    size = (TARGET_WIDTH, max(1, int(round(h * scale))))
    if size[0] * size[1] > MAX_PIXELS:  # a 1×4000 image would become 1100×4 400 000
        raise ValidationError(f"{rec['image']}: a {w}x{h} image resized to {TARGET_WIDTH} px wide would be "
                              f"{size[0]}x{size[1]}, more than the {MAX_PIXELS:,} pixels allowed")
    boxes = np.clip(rec["boxes"] * scale, 0, [size[0], size[1]] * 2)
    for i, box in enumerate(boxes):
        if not (box[0] < box[2] and box[1] < box[3]):
            raise ValidationError(f"{rec['where']}, field 'bboxes', box {i}: {rec['boxes'][i].tolist()} lies outside "
                                  f"the {w}x{h} image")
    labels = tuple(chr(ord("A") + i) for i in range(rec["n"]))
    return size, Layout(size, boxes.astype(np.float32), labels)


def import_recgaze(jsonl: Path, images_root: Path, out: Path, user_features: Path | None = None, *,
                   overwrite: bool = False) -> dict:
    """Convert; returns counts. Every problem names the file and line (and field); every record, image and box
    is checked before anything is written, and the output is validated before it is moved into place."""
    jsonl, images_root, out = Path(jsonl), Path(images_root), Path(out)
    text = read_utf8(jsonl, "records file")
    if not images_root.is_dir():
        raise InputError(f"{images_root}: image folder not found")
    sources = (jsonl, images_root, user_features)
    check_output(out, "import-recgaze", inputs=sources, overwrite=overwrite)
    profiles = _profiles(user_features)
    records = [_record(line, jsonl, i + 1, images_root) for i, line in enumerate(text.splitlines()) if line.strip()]
    if not records:
        raise ValidationError(f"{jsonl}: no records")
    first: dict[str, str] = {}
    for rec in records:
        if rec["slate_id"] in first:
            raise ValidationError(f"{rec['where']}: duplicate record (user_id, task_id, visit_index) = slate "
                                  f"'{rec['slate_id']}', first at {first[rec['slate_id']]}")
        first[rec["slate_id"]] = rec["where"].rsplit(", ", 1)[1]
    layouts = [_scaled_layout(rec, image_size(rec["image"])) for rec in records]  # every image decoded once here
    has_cursor = all(rec["cur"] is not None for rec in records)
    with staged_dataset(out, "import-recgaze", inputs=sources, overwrite=overwrite) as stage:
        slates_dir = stage / "slates"
        slates_dir.mkdir()
        for rec, (size, layout) in zip(records, layouts):
            load_rgb(rec["image"]).resize(size, Image.LANCZOS).save(slates_dir / f"{rec['slate_id']}.png", format="PNG")
            write_layout(slates_dir / f"{rec['slate_id']}.json", layout)
        user_ids = tuple(dict.fromkeys(rec["user_id"] for rec in records))
        write_users(stage / "users.parquet", Users(user_ids, tuple(profiles.get(u, "") for u in user_ids)))
        write_sessions(stage / "sessions.parquet", Sessions(
            tuple(rec["user_id"] for rec in records), tuple(rec["slate_id"] for rec in records),
            tuple(rec["split"] for rec in records), tuple(rec["fix"] for rec in records),
            tuple(rec["cur"] for rec in records) if has_cursor else None,
            np.asarray([rec["label"] for rec in records], dtype=np.int64)))
    return {"records": len(records), "users": len(user_ids), "slates": len(records),
            "profiles_found": sum(u in profiles for u in user_ids)}
