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
import json
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import InputError, ValidationError
from ..io import atomic_path, ensure_writable_dir
from .slates import Layout, write_layout
from .tables import SPLITS, Sessions, Users, write_sessions, write_users

TARGET_WIDTH = 1100
REQUIRED = ("user_id", "task_id", "visit_index", "split", "image_index_path", "label", "n_candidates", "bboxes",
            "slot_fix")


def _profiles(path: Path | None) -> dict[str, str]:
    if path is None:
        return {}
    try:
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise InputError(f"{path}: cannot read user features ({exc.strerror or exc})") from None
    out = {}
    for i, row in enumerate(rows):
        uid = row.get("user_id") or row.get("User_ID") or row.get("UserID")
        if not uid:
            raise ValidationError(f"{path}, row {i}, field 'user_id': missing (also tried User_ID, UserID)")
        out[uid] = f"Top_genre: {row.get('Top_genre', '')}, Preferred_genres: {row.get('Preferred_genres', '')}"
    return out


def _record(line: str, path: Path, lineno: int) -> dict:
    try:
        rec = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValidationError(f"{path}, line {lineno}: invalid JSON ({exc.msg})") from None
    for key in REQUIRED:
        if key not in rec:
            raise ValidationError(f"{path}, line {lineno}, field '{key}': missing")
    n = rec["n_candidates"]
    where = f"{path}, line {lineno}"
    if not isinstance(n, int) or not 1 <= n <= 26:
        raise ValidationError(f"{where}, field 'n_candidates': expected 1..26, got {n!r}")
    if not (isinstance(rec["label"], int) and 0 <= rec["label"] < n):
        raise ValidationError(f"{where}, field 'label': {rec['label']!r} is outside 0..{n - 1}")
    if not isinstance(rec["bboxes"], list) or len(rec["bboxes"]) != n:
        raise ValidationError(f"{where}, field 'bboxes': expected {n} boxes")
    for key in ("slot_fix", "slot_cursor"):
        values = rec.get(key)
        if values is None:
            continue
        arr = np.asarray(values, dtype=np.float64)
        if arr.size < n or not np.isfinite(arr).all() or (arr < 0).any():
            raise ValidationError(f"{where}, field '{key}': expected ≥ {n} finite non-negative values")
    if rec["split"] not in SPLITS:
        raise ValidationError(f"{where}, field 'split': '{rec['split']}' is not one of {', '.join(SPLITS)}")
    return rec


def import_recgaze(jsonl: Path, images_root: Path, out: Path, user_features: Path | None = None) -> dict:
    """Convert; returns counts. Every problem names the file and line (and field)."""
    jsonl, images_root = Path(jsonl), Path(images_root)
    if not jsonl.is_file():
        raise InputError(f"{jsonl}: records file not found")
    if not images_root.is_dir():
        raise InputError(f"{images_root}: image folder not found")
    profiles = _profiles(user_features)
    records = [_record(line, jsonl, i + 1) for i, line in enumerate(jsonl.read_text().splitlines()) if line.strip()]
    if not records:
        raise ValidationError(f"{jsonl}: no records")
    for rec in records:  # every image is checked before anything is written
        src = images_root / rec["image_index_path"]
        try:
            with Image.open(src) as img:
                img.verify()
        except (FileNotFoundError, UnidentifiedImageError, OSError, SyntaxError) as exc:
            raise InputError(f"{src}: cannot read the record's image ({type(exc).__name__})") from None
    out = ensure_writable_dir(Path(out))
    slates_dir = out / "slates"
    slates_dir.mkdir(exist_ok=True)
    sess = {"u": [], "s": [], "split": [], "fix": [], "cur": [], "click": []}
    has_cursor = all(r.get("slot_cursor") is not None for r in records)
    for rec in records:
        slate_id = f"{rec['user_id']}_{rec['task_id']}_{rec['visit_index']}"
        src = images_root / rec["image_index_path"]
        try:
            with Image.open(src) as img:
                img = img.convert("RGB")
        except (FileNotFoundError, UnidentifiedImageError, OSError) as exc:
            raise InputError(f"{src}: cannot read the record's image ({type(exc).__name__})") from None
        scale = TARGET_WIDTH / img.width
        size = (TARGET_WIDTH, int(round(img.height * scale)))
        with atomic_path(slates_dir / f"{slate_id}.png") as tmp:
            img.resize(size, Image.LANCZOS).save(tmp, format="PNG")
        n = rec["n_candidates"]
        boxes = np.clip(np.asarray(rec["bboxes"], dtype=np.float64) * scale, 0, [size[0], size[1]] * 2)
        labels = tuple(chr(ord("A") + i) for i in range(n))
        write_layout(slates_dir / f"{slate_id}.json", Layout(size, boxes.astype(np.float32), labels))
        sess["u"].append(str(rec["user_id"]))
        sess["s"].append(slate_id)
        sess["split"].append(rec["split"])
        sess["fix"].append(np.asarray(rec["slot_fix"][:n], dtype=np.float64))
        sess["cur"].append(np.asarray((rec.get("slot_cursor") or [0.0] * n)[:n], dtype=np.float64))
        sess["click"].append(int(rec["label"]))
    user_ids = tuple(dict.fromkeys(sess["u"]))
    write_users(out / "users.parquet", Users(user_ids, tuple(profiles.get(u, "") for u in user_ids)))
    write_sessions(out / "sessions.parquet", Sessions(tuple(sess["u"]), tuple(sess["s"]), tuple(sess["split"]),
                                                      tuple(sess["fix"]), tuple(sess["cur"]) if has_cursor else None,
                                                      np.asarray(sess["click"], dtype=np.int64)))
    return {"records": len(records), "users": len(user_ids), "slates": len(records),
            "profiles_found": sum(u in profiles for u in user_ids)}
