"""Reading one AdSERP trial (``pPPP-bB-tT``) from the data set's folders, with one-line errors for bad files."""

from __future__ import annotations

import csv
import json
import math
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import InputError, ValidationError

FOLDERS = {"fixations": ("fixation-data", ".csv"), "mouse": ("mouse-movement-data", ".csv"),
           "ads": ("ad-boundary-data", ".json"), "screenshot": ("full-page-screenshots", ".png"),
           "metadata": ("trial-metadata", ".xml"), "html": ("serps", ".html")}
AD_KINDS = ("native_ad", "dd_top", "dd_right")  # the JSON's keys, in the order slots are listed
MOUSE_POSITION_EVENTS = ("mousemove", "mouseover")


@dataclass(frozen=True)
class Trial:
    name: str
    participant: str
    paths: dict[str, Path]
    window_css: tuple[int, int]
    query: str
    fix_t: np.ndarray  # [F] ms
    fix_xy: np.ndarray  # [F, 2] page px
    fix_ms: np.ndarray  # [F]
    scroll_t: np.ndarray  # [E] ms
    scroll_css: np.ndarray  # [E] CSS px
    mouse_t: np.ndarray  # [M] ms, mousemove/mouseover only
    mouse_css: np.ndarray  # [M, 2] page CSS px
    t_begin: float
    click: tuple[float, float, float, str] | None  # the last click: (t, x_css, y_css, xpath)
    ads: list[tuple[str, int, list[float]]]  # (kind, index within kind, [x0, y0, x1, y1] page px)


def trial_paths(root: Path, name: str) -> dict[str, Path]:
    return {key: root / folder / f"{name}{suffix}" for key, (folder, suffix) in FOLDERS.items()}


def list_trials(root: Path) -> list[str]:
    """Trial names: every fixation CSV (the other files are checked per trial)."""
    folder = root / FOLDERS["fixations"][0]
    if not folder.is_dir():
        raise InputError(f"{folder}: not found; expected an AdSERP folder with {', '.join(f for f, _ in FOLDERS.values())}")
    names = sorted(p.stem for p in folder.glob("*.csv"))
    if not names:
        raise InputError(f"{folder}: no fixation CSVs")
    return names


def _number(value: str | None, path: Path, row: int, field: str, *, non_negative: bool = False) -> float:
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValidationError(f"{path}, row {row}, field '{field}': expected a number, got {value!r}") from None
    if not math.isfinite(x):
        raise ValidationError(f"{path}, row {row}, field '{field}': {value!r} is not finite")
    if non_negative and x < 0:
        raise ValidationError(f"{path}, row {row}, field '{field}': negative value {x:g}")
    return x


def _rows(path: Path, fields: tuple[str, ...]) -> list[dict[str, str]]:
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            missing = [f for f in fields if f not in (reader.fieldnames or [])]
            if missing:
                raise ValidationError(f"{path}: missing column '{missing[0]}' (has {reader.fieldnames})")
            return list(reader)
    except UnicodeDecodeError:
        raise ValidationError(f"{path}: not a UTF-8 CSV file") from None


def read_fixations(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows = _rows(path, ("timestamp", "FPOGX", "FPOGY", "FPOGD"))
    t, xy, d = [], [], []
    for i, r in enumerate(rows, start=2):  # row numbers as a spreadsheet shows them (header = 1)
        t.append(_number(r["timestamp"], path, i, "timestamp"))
        xy.append((_number(r["FPOGX"], path, i, "FPOGX"), _number(r["FPOGY"], path, i, "FPOGY")))
        d.append(_number(r["FPOGD"], path, i, "FPOGD", non_negative=True))
    return np.asarray(t, dtype=np.float64), np.asarray(xy, dtype=np.float64).reshape(-1, 2), np.asarray(d, dtype=np.float64)


def read_mouse(path: Path):
    rows = _rows(path, ("timestamp", "xpos", "ypos", "event", "xpath"))
    if not rows:
        raise ValidationError(f"{path}: no events")
    scroll, moves, click = [], [], None
    t_begin = math.inf
    for i, r in enumerate(rows, start=2):
        t = _number(r["timestamp"], path, i, "timestamp")
        t_begin = min(t_begin, t)
        event = (r["event"] or "").strip()
        if event == "scroll":
            scroll.append((t, _number(r["ypos"], path, i, "ypos")))
        elif event in MOUSE_POSITION_EVENTS or event == "click":
            x, y = _number(r["xpos"], path, i, "xpos"), _number(r["ypos"], path, i, "ypos")
            if event == "click":
                click = (t, x, y, r["xpath"] or "")
            else:
                moves.append((t, x, y))
    s = np.asarray(scroll, dtype=np.float64).reshape(-1, 2)
    m = np.asarray(moves, dtype=np.float64).reshape(-1, 3)
    order = np.argsort(m[:, 0], kind="stable")
    return s[:, 0], s[:, 1], m[order, 0], m[order, 1:], t_begin, click


def read_ads(path: Path) -> list[tuple[str, int, list[float]]]:
    try:
        payload = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValidationError(f"{path}: invalid JSON (line {exc.lineno}: {exc.msg})") from None
    if not isinstance(payload, dict):
        raise ValidationError(f"{path}: expected an object with {', '.join(AD_KINDS)}")
    ads = []
    for kind in AD_KINDS:
        entries = payload.get(kind, [])
        if not isinstance(entries, list):
            raise ValidationError(f"{path}, field '{kind}': expected a list")
        for j, ad in enumerate(entries):
            try:
                x, y = float(ad["location"]["x"]), float(ad["location"]["y"])
                w, h = float(ad["size"]["width"]), float(ad["size"]["height"])
            except (KeyError, TypeError, ValueError):
                raise ValidationError(f"{path}, field '{kind}[{j}]': expected location {{x, y}} and size "
                                      "{width, height}") from None
            if not all(math.isfinite(v) for v in (x, y, w, h)) or w < 0 or h < 0:
                raise ValidationError(f"{path}, field '{kind}[{j}]': invalid box {ad}")
            ads.append((kind, j, [x, y, x + w, y + h]))
    return ads


def read_metadata(path: Path) -> tuple[tuple[int, int], str]:
    """(window size in CSS px, the search query) from ``trial-metadata/<trial>.xml``."""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise ValidationError(f"{path}: invalid XML ({exc})") from None
    window = (root.findtext("window") or "").strip()
    m = re.fullmatch(r"(\d+)x(\d+)", window)
    if not m:
        raise ValidationError(f"{path}, field 'window': expected WxH, got {window!r}")
    task = (root.findtext("task") or "").strip()
    slug = task.split("|", 1)[1].strip() if "|" in task else task
    return (int(m[1]), int(m[2])), slug.replace("-", " ").strip()


def read_trial(root: Path, name: str) -> Trial:
    paths = trial_paths(root, name)
    missing = [str(p) for p in paths.values() if not p.exists()]
    if missing:
        raise InputError(f"trial {name}: missing {missing[0]}")
    window, query = read_metadata(paths["metadata"])
    fix_t, fix_xy, fix_ms = read_fixations(paths["fixations"])
    scroll_t, scroll_css, mouse_t, mouse_css, t_begin, click = read_mouse(paths["mouse"])
    return Trial(name, name.split("-", 1)[0], paths, window, query, fix_t, fix_xy, fix_ms, scroll_t, scroll_css,
                 mouse_t, mouse_css, t_begin, click, read_ads(paths["ads"]))
