"""Reading finished simulations for the experiment commands (through `fixate_rt.run.layout`'s one reader: a
simulate --out folder, its simulations/ folder or a Parquet file), with the slates each run was made on."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from ..data.slates import Slate, read_slates
from ..data.text import check_id
from ..errors import ValidationError, where
from ..run.layout import read_simulation, run_images
from ..score import simulated_row

COLUMNS = ("user_id", "slate_id", "click_slot", "click_label", "p_click", "slot_relevance")


@dataclass(frozen=True)
class Run:
    """One simulation: R rows with user/slate ids, the clicked position and item key, p_click and relevance
    per row (lists of S floats), and the slates folder it ran on when known (from its run.json)."""

    source: Path
    users: np.ndarray  # [R] str
    slates: np.ndarray  # [R] str
    click_slot: np.ndarray  # [R] int
    item: np.ndarray  # [R] str: the clicked item's id, else its label (a variant's ids are its source labels)
    p_click: list
    relevance: list
    images: Path | None


def _table(path: Path) -> tuple[pa.Table, Path | None]:
    table, files = read_simulation(path)
    return table, run_images(files)


def read_run(path: Path) -> Run:
    """Read and check a simulation (ids, click positions, finite probabilities)."""
    path = Path(path)
    table, images = _table(path)
    missing = [c for c in COLUMNS if c not in table.column_names]
    if missing:
        raise ValidationError(f"{where(path, field=missing[0])}: required column is missing")
    if table.num_rows == 0:
        raise ValidationError(f"{path}: no rows")
    users = table.column("user_id").to_pylist()
    slates = table.column("slate_id").to_pylist()
    for row, (u, s) in enumerate(zip(users, slates)):
        check_id(u, where(path, row, "user_id"))
        check_id(s, where(path, row, "slate_id"))
    slot = np.asarray(table.column("click_slot").to_pylist(), dtype=object)
    labels = table.column("click_label").to_pylist()
    ids = table.column("click_item_id").to_pylist() if "click_item_id" in table.column_names else [None] * len(labels)
    p = table.column("p_click").to_pylist()
    rel = table.column("slot_relevance").to_pylist()
    first: dict[tuple[str, str], tuple[int, np.ndarray, np.ndarray]] = {}
    for row, (u, s, k, pr, r) in enumerate(zip(users, slates, slot, p, rel)):
        sim = simulated_row(path, row, pr, r)  # `score`'s row rules: one length, finite, ≥ 0, sums to 1
        if not isinstance(k, int) or not 0 <= k < sim.p_click.size:
            raise ValidationError(f"{where(path, row, 'click_slot')}: {k!r} is not a slot of the row's p_click")
        seen = first.setdefault((u, s), (row, sim.p_click, sim.relevance))
        if seen[0] != row and not (np.array_equal(seen[1], sim.p_click) and np.array_equal(seen[2], sim.relevance)):
            raise ValidationError(f"{where(path, row)}: ({u}, {s}) repeats row {seen[0]} with other p_click or "
                                  "slot_relevance (two simulations mixed?)")
    # an all-null id column written by an older Ray run reads as float NaN: treated as null, like any missing id
    item = np.array([str(i) if isinstance(i, str) else str(lab) for i, lab in zip(ids, labels)], dtype=object)
    return Run(path, np.array(users, dtype=object), np.array(slates, dtype=object), slot.astype(np.int64), item, p,
               rel, images)


def slates_of(run: Run, images: Path | None) -> dict[str, Slate]:
    """The slates a run was made on: ``images`` if given, else the folder its run.json names."""
    folder = images if images is not None else run.images
    if folder is None:
        raise ValidationError(f"{run.source}: its slates folder is unknown (no run.json naming an existing "
                              "folder); pass --images")
    slates = read_slates(folder)
    unknown = sorted(set(run.slates) - set(slates))
    if unknown:
        raise ValidationError(f"{run.source}: slate '{unknown[0]}' is not in {folder}")
    for row, (sid, p) in enumerate(zip(run.slates, run.p_click)):
        if len(p) != slates[sid].layout.n_slots:
            raise ValidationError(f"{where(run.source, row, 'p_click')}: {len(p)} slots but slate '{sid}' in {folder} "
                                  f"has {slates[sid].layout.n_slots}")
    return slates


def item_keys(slate: Slate) -> list[str]:
    """Per position, the key a click on it is counted under: the item's id, else its label."""
    items = slate.layout.items or tuple({} for _ in slate.layout.labels)
    return [str(it.get("id", it.get("item_id", lab))) for it, lab in zip(items, slate.layout.labels)]
