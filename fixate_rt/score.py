"""`fixate-rt score`: attention alignment and click metrics of a simulation against observed sessions."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch

from . import metrics as M
from . import ops
from .baselines import FITTED, Baseline, FittedBaselines, fit_baselines, parse_baselines
from .config import TieRule, parse_choice
from .data.join import dwell_of
from .data.tables import SIMULATIONS_SCHEMA, read_sessions, require_column
from .data.text import check_id
from .errors import ValidationError, where
from .io import atomic_path, write_json
from .outputs import owned_output

PER_SAMPLE_COLUMNS = ("user_id", "slate_id", *M.METRIC_NAMES)
BASELINE_SAMPLE_COLUMNS = ("baseline", *PER_SAMPLE_COLUMNS)
# Stated before any result is seen (docs/metrics.md): gaze alignment and the click hit. Holm corrects them as one family
# over the baselines asked for, and every other metric as a second family.
PRIMARY_ENDPOINTS = ("kl", "csh@1")
SUM_TOLERANCE = 1e-3  # simulations store float32 distributions


@dataclass(frozen=True)
class Simulated:
    """One (user, slate) of a simulation: relevance a [S] and click probabilities π [S]."""

    relevance: np.ndarray
    p_click: np.ndarray


def read_simulations(path: Path) -> dict[tuple[str, str], Simulated]:
    """A simulation (a simulate --out folder, its simulations/ folder or a Parquet file; `fixate_rt.run.layout`)
    -> {(user, slate): Simulated}; samples of a pair share p and relevance."""
    from .run.layout import read_simulation

    table, files = read_simulation(path)
    return simulated_pairs(table, files.rows)


def simulated_pairs(table, path: Path) -> dict[tuple[str, str], Simulated]:
    """`read_simulations` on a table already read (``path``: where its rows came from, for the messages)."""
    cols = {}
    for name in ("user_id", "slate_id", "p_click", "slot_relevance"):
        kind = SIMULATIONS_SCHEMA.field(name).type
        cols[name] = require_column(table, path, name, ("string",) if kind == "string" else ("list<float>",)).to_pylist()
    out: dict[tuple[str, str], Simulated] = {}
    first_row: dict[tuple[str, str], int] = {}
    for row, (u, s, p, a) in enumerate(zip(cols["user_id"], cols["slate_id"], cols["p_click"], cols["slot_relevance"])):
        check_id(u, where(path, row, "user_id"))
        check_id(s, where(path, row, "slate_id"))
        sim = simulated_row(path, row, p, a)
        if (u, s) in out:  # the samples of one pair repeat its p_click and relevance; anything else is two runs mixed
            seen = out[(u, s)]
            if not (np.array_equal(seen.p_click, sim.p_click) and np.array_equal(seen.relevance, sim.relevance)):
                raise ValidationError(f"{where(path, row)}: ({u}, {s}) repeats row {first_row[(u, s)]} with other "
                                      "p_click or slot_relevance (two simulations mixed?)")
            continue
        out[(u, s)] = sim
        first_row[(u, s)] = row
    return out


def simulated_row(path: Path, row: int, p, a) -> Simulated:
    """One row's p_click and slot_relevance: the same slot count, finite, ≥ 0, each summing to 1."""
    if p is None or a is None:
        raise ValidationError(f"{where(path, row)}: missing p_click or slot_relevance")
    p, a = np.asarray(p, np.float64), np.asarray(a, np.float64)
    if p.size == 0:
        raise ValidationError(f"{where(path, row, 'p_click')}: empty list")
    if p.shape != a.shape:
        raise ValidationError(f"{path}, row {row}: p_click has {p.size} slots but slot_relevance has {a.size}")
    for name, values in (("p_click", p), ("slot_relevance", a)):
        if not np.isfinite(values).all():
            raise ValidationError(f"{where(path, row, name)}: non-finite value")
        if (values < 0).any():
            raise ValidationError(f"{where(path, row, name)}: negative value {values.min():g}")
        if abs(values.sum() - 1.0) > SUM_TOLERANCE:
            raise ValidationError(f"{where(path, row, name)}: sums to {values.sum():.6g}, not 1 (a distribution "
                                  "over the slots)")
    return Simulated(a, p)


def _metrics_table(picked, users, slates, sims, dwell_lists, clicked, tau: float, kernel: str, tie_rule: TieRule,
                   topk_js_k: int):
    """Per-sample metric dicts via the batched op (ragged slot counts padded, n_cand per row); ``sims`` maps each
    (user, slate) to its `Simulated`."""
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
          topk_js_k: int = M.TOPK_JS_K, overwrite: bool = False, inputs: tuple = (),
          baselines: str | tuple[Baseline | str, ...] = ()) -> dict:
    """Score and write ``metrics.json`` + ``per_sample.csv``. Returns the metrics payload.

    ``baselines`` (`fixate_rt.baselines`, e.g. ``"uniform,population,user"``): scored on the same rows with the same
    metrics; the fitted ones learn from the ``train`` split, so ``split`` must then be a held-out one. metrics.json
    gains ``baselines`` (each one's metrics and the per-user paired test of the model against it, Holm-corrected)
    and ``per_sample_baselines.csv`` their rows.

    ``out`` follows `fixate_rt.outputs` (new, empty, or an earlier score output with ``overwrite``); ``inputs``:
    further paths the caller reads, which ``out`` may not be or contain.

    ``tie_rule`` (docs/metrics.md): ``average`` reports ranking metrics as their expected value under random
    tie-breaking; ``lower-index`` and ``reference`` (higher index first) break ties deterministically."""
    tie_rule = parse_choice(TieRule, tie_rule, "tie_rule")
    if not 1 <= topk_js_k <= 64:
        raise ValidationError(f"--topk-js-k must be in 1..64, got {topk_js_k}")
    if not (math.isfinite(tau) and tau > 0):
        raise ValidationError(f"--tau must be > 0, got {tau}")
    chosen = parse_baselines(baselines) if baselines else ()
    if FITTED & set(chosen) and split in ("all", "train"):
        raise ValidationError(f"--baselines {','.join(b.value for b in chosen)}: population and user baselines are "
                              f"fitted on the train split, so score a held-out split (--split test or val), "
                              f"not '{split}'")
    sims = read_simulations(sim_path)
    sessions = read_sessions(sessions_path)
    dwell_lists = dwell_of(sessions, sessions_path, signal)
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
    fitted = (fit_baselines(chosen, sessions.user_ids, sessions.splits, dwell_lists, sessions.clicked_slot, tau, users,
                            f"{sessions_path} ({signal})") if chosen else None)
    with owned_output(out, "score", inputs=(sim_path, sessions_path, *inputs), overwrite=overwrite) as folder:
        return _write_scores(folder, picked, users, slates, sims, dwell_lists, sessions, skipped_no_mass, unmatched,
                             dict(sim=sim_path, sessions=sessions_path, signal=signal, tau=tau, split=split,
                                  kernel=kernel, tie_rule=tie_rule, topk_js_k=topk_js_k), fitted)


def _write_scores(out: Path, picked, users, slates, sims, dwell_lists, sessions, skipped_no_mass, unmatched,
                  options: dict, fitted: FittedBaselines | None = None) -> dict:
    sim_path, sessions_path, signal, tau, split, kernel, tie_rule, topk_js_k = (
        options[k] for k in ("sim", "sessions", "signal", "tau", "split", "kernel", "tie_rule", "topk_js_k"))
    rows, impl_used = _metrics_table(picked, users, slates, sims, dwell_lists, sessions.clicked_slot, tau, kernel,
                                     tie_rule, topk_js_k)
    _write_metric_rows(out / "per_sample.csv", PER_SAMPLE_COLUMNS, ([u, s] for u, s in zip(users, slates)), rows)
    payload = {
        "command": "score",
        "config": {"sim": str(sim_path), "sessions": str(sessions_path), "signal": signal, "tau": tau, "split": split,
                   "kernel": kernel, "tie_rule": tie_rule.value, "topk_js_k": topk_js_k},
        "implementations": {"batch_metrics": impl_used},
        **M.aggregate(rows, users),
        "skipped_no_mass": {"count": len(skipped_no_mass), "pairs": skipped_no_mass[:50]},
        "sessions_without_simulation": unmatched,
    }
    if fitted is not None:
        score_rows = partial(_metrics_table, picked, users, slates, dwell_lists=dwell_lists,
                             clicked=sessions.clicked_slot, tau=tau, kernel=kernel, tie_rule=tie_rule,
                             topk_js_k=topk_js_k)
        payload["baselines"] = _baseline_scores(out, fitted, rows, users, slates, sims, score_rows)
    write_json(out / "metrics.json", payload)
    return payload


def _write_metric_rows(path: Path, header: tuple[str, ...], keys, rows: list[dict]) -> None:
    """A per-sample CSV, atomically: each row's key columns (``keys``, one list per row) and then every metric of
    ``rows`` at 8 significant digits."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        for key, r in zip(keys, rows, strict=True):
            writer.writerow([*key, *(f"{r[name]:.8g}" for name in M.METRIC_NAMES)])


def _baseline_scores(out: Path, fitted: FittedBaselines, model_rows: list[dict], users: list[str], slates: list[str],
                     sims: dict, score_rows) -> dict:
    """Each baseline on the model's rows (``score_rows(sims)`` -> per-sample metric dicts), its aggregate metrics
    and the per-user paired Wilcoxon of the model against it; writes per_sample_baselines.csv."""
    scored: dict[Baseline, list[dict]] = {}
    for name in fitted.names:
        predicted = {}
        for u, s in zip(users, slates):
            relevance, p_click = fitted.predict(name, u, sims[(u, s)].relevance.size)
            predicted[(u, s)] = Simulated(relevance, p_click)
        scored[name] = score_rows(predicted)[0]
    _write_metric_rows(out / "per_sample_baselines.csv", BASELINE_SAMPLE_COLUMNS,
                       ([name.value, u, s] for name in scored for u, s in zip(users, slates)),
                       [r for rows in scored.values() for r in rows])
    tests = {(name, metric): M.paired_wilcoxon(M.per_user_means(model_rows, users, metric),
                                               M.per_user_means(rows, users, metric))
             for name, rows in scored.items() for metric in M.METRIC_NAMES}
    adjusted: dict = {}
    for family in (PRIMARY_ENDPOINTS, tuple(m for m in M.METRIC_NAMES if m not in PRIMARY_ENDPOINTS)):
        adjusted |= M.holm({key: test["p"] for key, test in tests.items() if key[1] in family})
    described = fitted.describe()
    for name, rows in scored.items():
        described[name.value] |= M.aggregate(rows, users)
        described[name.value]["model_vs_baseline"] = {
            metric: {**tests[(name, metric)], "p_holm": adjusted[(name, metric)],
                     "family": "primary" if metric in PRIMARY_ENDPOINTS else "secondary",
                     "direction": M.direction(metric, tests[(name, metric)]["mean_diff"])}
            for metric in M.METRIC_NAMES}
    return {"primary_endpoints": list(PRIMARY_ENDPOINTS),
            "test": "per-user paired Wilcoxon signed-rank, two-sided, on per-user means (model − baseline); Holm over "
                    "the primary endpoints × baselines, and separately over the other metrics × baselines",
            "models": described}


def read_per_sample(folder: Path) -> tuple[list[dict], list[str]]:
    """A score output folder's per_sample.csv -> (rows of metric values, user ids); every value finite."""
    path = Path(folder) / "per_sample.csv"
    if not path.is_file():
        raise ValidationError(f"{path}: not found (pass a folder written by `fixate-rt score`)")
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            missing = set(PER_SAMPLE_COLUMNS) - set(reader.fieldnames or ())
            if missing:
                raise ValidationError(f"{path}: missing columns {sorted(missing)}")
            data = list(reader)
    except UnicodeDecodeError:
        raise ValidationError(f"{path}: not UTF-8 text") from None
    except csv.Error as exc:
        raise ValidationError(f"{path}: not a CSV file ({exc})") from None
    rows = []
    for row, record in enumerate(data):
        values = {}
        for name in M.METRIC_NAMES:
            try:
                values[name] = float(record[name])
            except (TypeError, ValueError):
                raise ValidationError(f"{where(path, row, name)}: not a number: {record[name]!r}") from None
            if math.isnan(values[name]) or math.isinf(values[name]):
                raise ValidationError(f"{where(path, row, name)}: non-finite value {values[name]}")
        rows.append(values)
    if not rows:
        raise ValidationError(f"{path}: no rows")
    return rows, [r["user_id"] for r in data]


def compare(this: Path, other: Path) -> dict[str, dict]:
    """Per-user paired Wilcoxon for every metric between two score folders (this − other)."""
    rows_a, users_a = read_per_sample(this)
    rows_b, users_b = read_per_sample(other)
    return {name: M.paired_wilcoxon(M.per_user_means(rows_a, users_a, name), M.per_user_means(rows_b, users_b, name))
            for name in M.METRIC_NAMES}
