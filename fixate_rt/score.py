"""`fixate-rt score`: attention alignment and click metrics of a simulation against observed sessions."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import metrics as M
from . import ops
from .config import TieRule, parse_choice
from .data.join import dwell_of
from .data.tables import SIMULATIONS_SCHEMA, read_parquet, read_sessions, require_column
from .errors import ValidationError
from .io import atomic_path, ensure_writable_dir, write_json

PER_SAMPLE_COLUMNS = ("user_id", "slate_id", *M.METRIC_NAMES)


@dataclass(frozen=True)
class Simulated:
    """One (user, slate) of a simulation: relevance a [S] and click probabilities π [S]."""

    relevance: np.ndarray
    p_click: np.ndarray


def read_simulations(path: Path) -> dict[tuple[str, str], Simulated]:
    """simulations.parquet -> {(user, slate): Simulated}; samples of a pair share p and relevance."""
    path = Path(path)
    table = read_parquet(path, "simulations")
    cols = {}
    for name in ("user_id", "slate_id", "p_click", "slot_relevance"):
        kind = SIMULATIONS_SCHEMA.field(name).type
        cols[name] = require_column(table, path, name, ("string",) if kind == "string" else ("list<float>",)).to_pylist()
    out: dict[tuple[str, str], Simulated] = {}
    for row, (u, s, p, a) in enumerate(zip(cols["user_id"], cols["slate_id"], cols["p_click"], cols["slot_relevance"])):
        if (u, s) in out:
            continue
        p, a = np.asarray(p, np.float64), np.asarray(a, np.float64)
        if p.shape != a.shape:
            raise ValidationError(f"{path}, row {row}: p_click has {p.size} slots but slot_relevance has {a.size}")
        if not (np.isfinite(p).all() and np.isfinite(a).all()):
            raise ValidationError(f"{path}, row {row}: non-finite p_click or slot_relevance")
        out[(u, s)] = Simulated(a, p)
    return out


def _metrics_table(picked, users, slates, sims, dwell_lists, clicked, tau: float, kernel: str, tie_rule: TieRule,
                   topk_js_k: int):
    """Per-sample metric dicts via the batched op (ragged slot counts padded, n_cand per row)."""
    S = max(sims[(u, s)].relevance.size for u, s in zip(users, slates))
    R = len(picked)
    a, g, p = np.zeros((R, S)), np.zeros((R, S)), np.zeros((R, S))
    n = np.zeros(R, dtype=np.int64)
    for r, (i, u, s) in enumerate(zip(picked, users, slates)):
        sim = sims[(u, s)]
        k = sim.relevance.size
        a[r, :k], p[r, :k], g[r, :k], n[r] = sim.relevance, sim.p_click, M.gaze_target(dwell_lists[i], tau), k
    impl = ops.resolve("batch_metrics", kernel, device=torch.device("cpu"))
    table = ops.batch_metrics(torch.from_numpy(a), torch.from_numpy(g), torch.from_numpy(p),
                              torch.as_tensor(clicked[picked]), torch.from_numpy(n), tie_rule=tie_rule,
                              topk_js_k=topk_js_k, impl=impl).numpy()
    return [dict(zip(M.METRIC_NAMES, map(float, row))) for row in table], impl


def score(sim_path: Path, sessions_path: Path, out: Path, *, signal: str = "fixation", tau: float = 1.0,
          split: str = "all", kernel: str = "auto", tie_rule: TieRule | str = TieRule.average,
          topk_js_k: int = M.TOPK_JS_K) -> dict:
    """Score and write ``metrics.json`` + ``per_sample.csv``. Returns the metrics payload.

    ``tie_rule`` (docs/metrics.md): ``average`` reports ranking metrics as their expected value under random
    tie-breaking; ``lower-index`` and ``reference`` (higher index first) break ties deterministically."""
    tie_rule = parse_choice(TieRule, tie_rule, "tie_rule")
    if not 1 <= topk_js_k <= 64:
        raise ValidationError(f"--topk-js-k must be in 1..64, got {topk_js_k}")
    if not (math.isfinite(tau) and tau > 0):
        raise ValidationError(f"--tau must be > 0, got {tau}")
    sims = read_simulations(sim_path)
    sessions = read_sessions(sessions_path)
    dwell_lists = dwell_of(sessions, sessions_path, signal)
    out = ensure_writable_dir(Path(out))
    picked, skipped_no_mass, unmatched = [], [], 0
    for i, (u, s, split_i) in enumerate(zip(sessions.user_ids, sessions.slate_ids, sessions.splits)):
        if split != "all" and split_i != split:
            continue
        sim = sims.get((u, s))
        if sim is None:
            unmatched += 1
            continue
        dwell = dwell_lists[i]
        if dwell.size != sim.relevance.size:
            raise ValidationError(f"{sessions_path}, row {i}, field '{signal}_ms': {dwell.size} slots but the "
                                  f"simulation of ({u}, {s}) has {sim.relevance.size}")
        if dwell.sum() <= 0:
            skipped_no_mass.append(f"{u}/{s}")
            continue
        picked.append(i)
    if not picked:
        raise ValidationError(f"{sessions_path}: no session matched a simulated (user_id, slate_id) "
                              f"(split '{split}', {unmatched} unmatched, {len(skipped_no_mass)} without {signal} mass)")
    users = [sessions.user_ids[i] for i in picked]
    slates = [sessions.slate_ids[i] for i in picked]
    rows, impl_used = _metrics_table(picked, users, slates, sims, dwell_lists, sessions.clicked_slot, tau, kernel,
                                     tie_rule, topk_js_k)
    with atomic_path(out / "per_sample.csv") as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(PER_SAMPLE_COLUMNS)
        for u, s, r in zip(users, slates, rows):
            writer.writerow([u, s, *(f"{r[name]:.8g}" for name in M.METRIC_NAMES)])
    payload = {
        "command": "score",
        "config": {"sim": str(sim_path), "sessions": str(sessions_path), "signal": signal, "tau": tau, "split": split,
                   "kernel": kernel, "tie_rule": tie_rule.value, "topk_js_k": topk_js_k},
        "implementations": {"batch_metrics": impl_used},
        **M.aggregate(rows, users),
        "skipped_no_mass": {"count": len(skipped_no_mass), "pairs": skipped_no_mass[:50]},
        "sessions_without_simulation": unmatched,
    }
    write_json(out / "metrics.json", payload)
    return payload


def read_per_sample(folder: Path) -> tuple[list[dict], list[str]]:
    """A score output folder's per_sample.csv -> (rows of metric values, user ids)."""
    path = Path(folder) / "per_sample.csv"
    if not path.is_file():
        raise ValidationError(f"{path}: not found (pass a folder written by `fixate-rt score`)")
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        missing = set(PER_SAMPLE_COLUMNS) - set(reader.fieldnames or ())
        if missing:
            raise ValidationError(f"{path}: missing columns {sorted(missing)}")
        data = list(reader)
    return [{k: float(r[k]) for k in M.METRIC_NAMES} for r in data], [r["user_id"] for r in data]


def compare(this: Path, other: Path) -> dict[str, dict]:
    """Per-user paired Wilcoxon for every metric between two score folders (this − other)."""
    rows_a, users_a = read_per_sample(this)
    rows_b, users_b = read_per_sample(other)
    return {name: M.paired_wilcoxon(M.per_user_means(rows_a, users_a, name), M.per_user_means(rows_b, users_b, name))
            for name in M.METRIC_NAMES}
