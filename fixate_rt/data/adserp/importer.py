"""AdSERP → fixate-rt formats: one slate per trial, the viewport of the last scroll stop before the click.

Per trial: scroll stops (geometry.scroll_stops), slots = organic results (Chromium layout, organic.py) and ads
(the trial's JSON) that intersect the viewport, clipped to it and listed in reading order, each with a visible
label badge; fixation and cursor dwell per slot during the stop; the clicked slot from the click's XPath
(organic results) or its position (ads and anything else). Trials that cannot be resolved are skipped and
reported with the reason (``import_report.json``), never silently.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ...errors import InputError, ValidationError
from ...io import cache_root, read_utf8, write_json
from ...outputs import check_output
from ..badges import draw_badges
from ..images import load_rgb
from ..slates import MAX_SLOTS, Layout, default_labels, write_layout
from ..staging import staged_dataset
from ..tables import Sessions, Users, write_sessions, write_users
from ..text import check_id, check_path_id, check_prompt_text
from . import geometry as geo
from .organic import OrganicBoxes
from .trial import Trial, list_trials, read_trial

REPORT = "import_report.json"
REPORT_FORMAT = "fixate-rt/adserp-import/1"
ORGANIC_XPATH = re.compile(r"^//\*\[@id='rso'\]/div\[(\d+)\]")


@dataclass(frozen=True)
class Sample:
    """One imported trial. Boxes in viewport px; dwell [S] in ms; ``clicked`` is a slot index."""

    trial: str
    participant: str
    layout: Layout
    image: Image.Image
    fixation_ms: np.ndarray
    cursor_ms: np.ndarray
    clicked: int


class Skip(Exception):
    """A trial that cannot become a sample; the message is the reason shown to the user."""


def slot_candidates(trial: Trial, organic: dict) -> tuple[list[dict], np.ndarray]:
    """Every AOI of the page: (kind, rank) records and page boxes [A, 4] in screenshot px."""
    meta, boxes = [], []
    for rank, *box in organic["boxes"]:
        meta.append({"kind": "organic", "rank": int(rank)})
        boxes.append(np.asarray(box, dtype=np.float64) * geo.CSS_TO_PX)
    for kind, j, box in trial.ads:
        meta.append({"kind": kind, "rank": j + 1})
        boxes.append(np.asarray(box, dtype=np.float64))
    return meta, np.asarray(boxes, dtype=np.float64).reshape(-1, 4)


def resolve_click(click: tuple[float, float, float, str], meta: list[dict], page_boxes: np.ndarray,
                  organic_ranks: set[int]) -> tuple[int, str]:
    """(index into the kept slots, how) for the click; Skip with the reason when it lands on no kept slot.

    ``meta``/``page_boxes`` [S, 4] are the kept slots (page px, clipped to the viewport); ``organic_ranks`` are
    every organic rank on the page (to tell "scrolled out of view" from "not a result").
    """
    _, x_css, y_css, xpath = click
    m = ORGANIC_XPATH.match(xpath)
    if m:
        rank = int(m[1])
        for i, s in enumerate(meta):
            if s["kind"] == "organic" and s["rank"] == rank:
                return i, "xpath"
        if rank in organic_ranks:
            raise Skip(f"the clicked organic result {rank} ({xpath}) is outside the viewport of the last scroll stop")
    point = np.array([[x_css * geo.CSS_TO_PX, y_css * geo.CSS_TO_PX]])
    hits = np.flatnonzero(geo.inside(point, page_boxes)[:, 0])
    if len(hits):
        area = (page_boxes[hits, 2] - page_boxes[hits, 0]) * (page_boxes[hits, 3] - page_boxes[hits, 1])
        return int(hits[np.argmin(area)]), "position"
    raise Skip(f"the click at ({point[0, 0]:.0f}, {point[0, 1]:.0f}) px ({xpath}) lands on no slot in the viewport")


def crop_viewport(screenshot: Path, offset: float, viewport: tuple[int, int]) -> Image.Image:
    """The viewport at scroll ``offset`` cut from the full-page screenshot (white below the page's end)."""
    w, h = viewport
    page = load_rgb(screenshot)
    if page.width != geo.SCREENSHOT_WIDTH:
        raise ValidationError(f"{screenshot}: screenshot is {page.width} px wide, expected {geo.SCREENSHOT_WIDTH}")
    top = int(round(offset))
    out = Image.new("RGB", (w, h), (255, 255, 255))
    out.paste(page.crop((0, top, w, min(top + h, page.height))), (0, 0))
    return out


def build_sample(trial: Trial, organic: dict, *, viewport: tuple[int, int] = geo.VIEWPORT,
                 gap_ms: float = geo.STOP_GAP_MS) -> tuple[Sample, dict]:
    """One trial → (sample, report entry). Raises Skip with the reason when the trial cannot be used."""
    if trial.click is None:
        raise Skip("no click event in the mouse log")
    t_click = trial.click[0]
    stops = geo.scroll_stops(trial.scroll_t, trial.scroll_css * geo.CSS_TO_PX, trial.t_begin, t_click, gap_ms)
    stop = stops[-1]
    meta, boxes = slot_candidates(trial, organic)
    keep, view = geo.clip_to_viewport(boxes, stop.offset, viewport)
    if not len(keep):
        raise Skip("no slot intersects the viewport of the last scroll stop")
    if len(keep) > MAX_SLOTS:
        raise Skip(f"{len(keep)} slots in the viewport, more than the supported {MAX_SLOTS}")
    order = np.lexsort((view[:, 0], view[:, 1]))  # reading order: top to bottom, then left to right
    keep, view = keep[order], view[order]
    meta = [meta[i] for i in keep]
    page = view + np.array([0.0, stop.offset, 0.0, stop.offset])
    fixation = geo.fixation_dwell(trial.fix_t, trial.fix_xy, trial.fix_ms, page, stop)
    cursor = geo.cursor_dwell(trial.mouse_t, trial.mouse_css * geo.CSS_TO_PX, page, stop)
    organic_ranks = {int(r[0]) for r in organic["boxes"]}
    clicked, how = resolve_click(trial.click, meta, page, organic_ranks)
    if fixation.sum() <= 0:
        raise Skip("no fixation falls inside a slot during the last scroll stop")
    labels = default_labels(len(meta))
    layout = Layout(viewport, view.astype(np.float32), labels, tuple(meta), f"Search query: {trial.query}")
    image = draw_badges(crop_viewport(trial.paths["screenshot"], stop.offset, viewport), view, labels)
    report = {"trial": trial.name, "status": "imported", "n_slots": len(labels), "clicked_slot": clicked,
              "clicked_label": labels[clicked], "clicked_kind": meta[clicked]["kind"], "click_resolved_by": how,
              "n_stops": len(stops), "stop": {"t_start": stop.t_start, "t_end": stop.t_end, "offset_px": stop.offset},
              "fixation_ms_in_slots": float(fixation.sum()), "cursor_ms_in_slots": float(cursor.sum())}
    return Sample(trial.name, trial.participant, layout, image, fixation, cursor, clicked), report


def split_sessions(samples: list[Sample], seed: int) -> list[str]:
    """Per user (docs/method.md §1.8): shuffle, test = max(1, round(0.2n)) and val = max(1, round(0.15·rest)), each
    leaving at least one session for training."""
    splits = ["train"] * len(samples)
    by_user: dict[str, list[int]] = {}
    for i, s in enumerate(samples):
        by_user.setdefault(s.participant, []).append(i)
    for user in sorted(by_user):
        idx = np.array(by_user[user])
        n = len(idx)
        idx = idx[np.random.RandomState(seed).permutation(n)]
        n_test = min(max(1, round(0.2 * n)), n - 1)
        rest = idx[n_test:]
        rest = rest[np.random.RandomState(seed + 1000).permutation(len(rest))]
        n_val = min(max(1, round(0.15 * len(rest))), len(rest) - 1)
        for i in idx[:n_test]:
            splits[i] = "test"
        for i in rest[:n_val]:
            splits[i] = "val"
    return splits


def read_participants(path: Path) -> dict[str, str]:
    """participant_id → profile text ("column: value, ..." over the demographic columns, as given)."""
    text = read_utf8(path, "participants file")
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        if "participant_id" not in (reader.fieldnames or []):
            raise ValidationError(f"{path}: missing column 'participant_id'")
        out = {}
        for i, row in enumerate(reader, start=2):
            pid = (row.pop("participant_id") or "").strip()
            if not pid:
                raise ValidationError(f"{path}, row {i}, field 'participant_id': empty")
            check_id(pid, f"{path}, row {i}, field 'participant_id'")
            profile = ", ".join(f"{k}: {v.strip()}" for k, v in row.items() if isinstance(k, str) and k
                                and isinstance(v, str) and v.strip())
            out[pid] = check_prompt_text(profile, f"{path}, row {i}")
    except csv.Error as exc:
        raise ValidationError(f"{path}: not a CSV file ({exc})") from None
    return out


def import_adserp(data_dir: Path, out: Path, *, seed: int = 0, cache_dir: Path | None = None,
                  viewport: tuple[int, int] = geo.VIEWPORT, gap_ms: float = geo.STOP_GAP_MS,
                  on_trial: Callable[[str], None] | None = None, overwrite: bool = False) -> dict:
    """Import every trial of ``data_dir`` into ``out`` (users.parquet, slates/, sessions.parquet, import_report.json).

    The output is built in a temporary folder beside ``out`` and moved into place at the end, so an interrupted
    import leaves nothing half-written. ``out`` may be absent, empty, or a previous AdSERP import (replaced with ``overwrite``).
    """
    data_dir, out = Path(data_dir), Path(out)
    if not data_dir.is_dir():
        raise InputError(f"{data_dir}: AdSERP folder not found")
    if not (math.isfinite(gap_ms) and gap_ms > 0):
        raise ValidationError(f"--stop-gap-ms must be > 0, got {gap_ms}")
    if not (100 <= viewport[1] <= 20_000 and 100 <= viewport[0] <= geo.SCREENSHOT_WIDTH):
        raise ValidationError(f"--viewport-height must be in 100..20000, got {viewport[1]}")
    check_output(out, "import-adserp", inputs=(data_dir, cache_dir), overwrite=overwrite)
    profiles = read_participants(data_dir / "participants.csv")
    names = list_trials(data_dir)
    for name in names:
        check_path_id(name, f"{data_dir / 'fixation-data' / name}.csv (the trial name)")
    trials = [read_trial(data_dir, name) for name in names]  # every file validated before any work
    cache_dir = Path(cache_dir) if cache_dir is not None else cache_root() / "adserp-organic"
    if cache_dir.exists() and not cache_dir.is_dir():
        raise InputError(f"{cache_dir}: the organic-box cache must be a folder")
    samples, entries = [], []
    with OrganicBoxes(cache_dir) as organic:
        for trial in trials:
            if on_trial is not None:
                on_trial(trial.name)
            page = organic.boxes(trial.paths["html"], trial.window_css[0])
            if not page["found"]:
                entries.append({"trial": trial.name, "status": "skipped", "reason": "the page has no #rso results element"})
                continue
            try:
                sample, entry = build_sample(trial, page, viewport=viewport, gap_ms=gap_ms)
            except Skip as why:
                entries.append({"trial": trial.name, "status": "skipped", "reason": str(why)})
                continue
            samples.append(sample)
            entries.append(entry)
        cache = {"dir": str(cache_dir), "hits": organic.hits, "misses": organic.misses}
    if not samples:
        raise ValidationError(f"{data_dir}: no trial could be imported ({entries[0]['trial']}: {entries[0]['reason']})")
    splits = split_sessions(samples, seed)
    for entry, split in zip((e for e in entries if e["status"] == "imported"), splits):
        entry["split"] = split
    user_ids = tuple(sorted({s.participant for s in samples}))
    report = {"format": REPORT_FORMAT, "source": str(data_dir.resolve()), "seed": seed, "viewport": list(viewport),
              "stop_gap_ms": gap_ms, "trials": len(trials), "imported": len(samples),
              "skipped": len(trials) - len(samples), "users": len(user_ids),
              "users_without_profile": [u for u in user_ids if u not in profiles], "organic_box_cache": cache,
              "per_trial": entries}
    _write(out, samples, splits, Users(user_ids, tuple(profiles.get(u, "") for u in user_ids)), report,
           inputs=(data_dir, cache_dir), overwrite=overwrite)
    return report


def _write(out: Path, samples: list[Sample], splits: list[str], users: Users, report: dict, *, inputs=(),
           overwrite: bool = False) -> None:
    """Stage, validate and swap the whole output into place (`staging.staged_dataset`)."""
    with staged_dataset(out, "import-adserp", inputs=inputs, overwrite=overwrite) as stage:
        slates = stage / "slates"
        slates.mkdir()
        for s in samples:  # the staging folder makes the whole output atomic; files need no temp names of their own
            s.image.save(slates / f"{s.trial}.png", format="PNG")
            write_layout(slates / f"{s.trial}.json", s.layout)
        write_users(stage / "users.parquet", users)
        write_sessions(stage / "sessions.parquet", Sessions(
            tuple(s.participant for s in samples), tuple(s.trial for s in samples), tuple(splits),
            tuple(s.fixation_ms for s in samples), tuple(s.cursor_ms for s in samples),
            np.array([s.clicked for s in samples], dtype=np.int64)))
        write_json(stage / REPORT, report)
