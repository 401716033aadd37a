"""Simulated sessions as click logs for the click-model ecosystem (`fixate-rt export-clicks`).

One session per simulation row (user, slate, sample): the slate's items in slot order, one click.

Everything goes into one output folder, written whole or not at all:

* ``yandex``: ``clicks.tsv``, the Yandex Relevance Prediction Challenge log format that PyClick's parser reads,
  tab-separated: a query line ``SessionID  0  Q  QueryID  RegionID  URL_1 … URL_S`` and a click line
  ``SessionID  1  C  URL``. Ids are integers: QueryID numbers the slates, URL numbers the (slate, item) pairs,
  RegionID is 0. ``ids.csv`` maps them back; ``examination.tsv`` holds, per session, the model's attention
  per position (the log format has no room for it).
* ``clax``: ``clicks.parquet``, one row per session in the array layout of clax-models' datasets:
  ``query_doc_ids`` (int32 per position, ≥ 1), ``positions`` (int16, 1-based), ``clicks`` (float), ``mask``
  (bool), plus ``examination`` (the model's attention per position) and the ids (``session_id``, ``user_id``,
  ``slate_id``, ``query_id``).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import ValidationError
from ..outputs import check_output
from .reports import report_folder
from .runs import Run, item_keys, slates_of

FORMATS = ("yandex", "clax")
# The file each format's log is in; a folder holding either is a finished export.
LOG_FILES = {"yandex": "clicks.tsv", "clax": "clicks.parquet"}


def _ids(run: Run, images) -> tuple[dict[str, int], dict[tuple[str, str], int], dict[str, list[str]]]:
    """Query id per slate, URL id (from 1) per (slate, item key), and each slate's item keys in slot order."""
    slates = slates_of(run, images)
    used = sorted(set(run.slates))
    keys = {sid: item_keys(slates[sid]) for sid in used}
    queries = {sid: q for q, sid in enumerate(used)}
    urls: dict[tuple[str, str], int] = {}
    for sid in used:  # numbered in sorted order, so variants of a slate give an item the same id
        for key in sorted(keys[sid]):
            urls.setdefault((sid, key), len(urls) + 1)
    return queries, urls, keys


def export_clicks(run: Run, out: Path, fmt: str, images=None, *, overwrite: bool = False) -> dict:
    """Write ``run``'s sessions into the folder ``out`` in ``fmt``; returns counts and the log file's path."""
    if fmt not in FORMATS:
        raise ValidationError(f"--format must be one of {', '.join(FORMATS)}, got '{fmt}'")
    out = Path(out)
    check_output(out, "export-clicks", inputs=(run.source, images), overwrite=overwrite)
    queries, urls, keys = _ids(run, images)
    for sid in set(run.slates):
        n = len(keys[sid])
        rows = np.flatnonzero(run.slates == sid)
        if any(len(run.p_click[r]) != n for r in rows):
            raise ValidationError(f"{run.source}: slate '{sid}' has {n} slots in its layout but the run has "
                                  f"{len(run.p_click[rows[0]])}")
    with report_folder(out, "export-clicks", inputs=(run.source, images), overwrite=overwrite) as stage:
        (_write_yandex if fmt == "yandex" else _write_clax)(run, stage, queries, urls, keys)
    return {"sessions": int(run.users.size), "queries": len(queries), "urls": len(urls),
            "out": str(out / LOG_FILES[fmt])}


def _write_yandex(run: Run, folder: Path, queries, urls, keys) -> None:
    with open(folder / LOG_FILES["yandex"], "w", encoding="utf-8") as fh:
        for i, (sid, slot) in enumerate(zip(run.slates, run.click_slot)):
            ids = [urls[(sid, k)] for k in keys[sid]]
            fh.write("\t".join(map(str, (i, 0, "Q", queries[sid], 0, *ids))) + "\n")
            fh.write("\t".join(map(str, (i, 1, "C", ids[slot]))) + "\n")
    with open(folder / "ids.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["kind", "id", "slate_id", "item"])
        writer.writerows([("query", q, sid, "") for sid, q in queries.items()])
        writer.writerows([("url", u, sid, key) for (sid, key), u in urls.items()])
    with open(folder / "examination.tsv", "w", encoding="utf-8") as fh:
        for i, (u, sid, rel) in enumerate(zip(run.users, run.slates, run.relevance)):
            fh.write("\t".join([str(i), u, sid, *(f"{v:.6g}" for v in rel)]) + "\n")


def _write_clax(run: Run, folder: Path, queries, urls, keys) -> None:
    ids, positions, clicks, mask = [], [], [], []
    for sid, slot in zip(run.slates, run.click_slot):
        n = len(keys[sid])
        ids.append([urls[(sid, k)] for k in keys[sid]])
        positions.append(list(range(1, n + 1)))
        row = [0.0] * n
        row[slot] = 1.0
        clicks.append(row)
        mask.append([True] * n)
    table = pa.table({
        "session_id": pa.array(np.arange(run.users.size), pa.int64()),
        "user_id": pa.array(list(run.users), pa.string()),
        "slate_id": pa.array(list(run.slates), pa.string()),
        "query_id": pa.array([queries[s] for s in run.slates], pa.int32()),
        "query_doc_ids": pa.array(ids, pa.list_(pa.int32())),
        "positions": pa.array(positions, pa.list_(pa.int16())),
        "clicks": pa.array(clicks, pa.list_(pa.float32())),
        "mask": pa.array(mask, pa.list_(pa.bool_())),
        "examination": pa.array([list(r) for r in run.relevance], pa.list_(pa.float32())),
    })
    pq.write_table(table, folder / LOG_FILES["clax"])
