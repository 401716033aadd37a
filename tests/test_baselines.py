"""`score --baselines`: uniform and train-split slot priors scored on the model's rows, with Holm-corrected
per-user paired tests; recomputed here from the raw files, independently of fixate_rt.baselines."""

import csv
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy.stats import wilcoxon
from typer.testing import CliRunner

from fixate_rt import metrics as M
from fixate_rt.baselines import SlotPrior, parse_baselines
from fixate_rt.cli import app
from fixate_rt.data.tables import read_sessions
from fixate_rt.errors import ValidationError

runner = CliRunner()


def _run(args):
    return runner.invoke(app, [str(a) for a in args])


def _ok(args):
    result = _run(args)
    assert result.exit_code == 0, result.output + (result.stderr or "")
    return result


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """12 synthetic users (enough for a p-value), a tiny random model's simulation, scored on the test split."""
    from fixate_rt.data.synth import SynthConfig, write_synth

    root = tmp_path_factory.mktemp("baselines")
    write_synth(root / "data", SynthConfig(n_users=12, n_slates=8, seed=5))
    _ok(["simulate", "--users", root / "data" / "users.parquet", "--images", root / "data" / "slates",
         "--out", root / "sim", "--model", "tiny-qwen3vl", "--device", "cpu"])
    result = _ok(["score", "--sim", root / "sim", "--sessions", root / "data" / "sessions.parquet",
                  "--out", root / "score", "--split", "test", "--baselines", "uniform,population,user"])
    return root, result


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _prior(sessions, keep, n_slots):
    """The documented prior, written out: (Σ_train x + 1/S) / (n + 1), renormalised (equal slot counts here)."""
    gaze = [M.gaze_target(sessions.fixation_ms[i]) for i in keep]
    clicks = [np.eye(n_slots)[sessions.clicked_slot[i]] for i in keep]
    return [(np.sum(x, axis=0) + 1.0 / n_slots) / (len(keep) + 1) for x in (gaze, clicks)]


def test_baseline_rows_match_an_independent_fit(scored):
    root, result = scored
    sessions = read_sessions(root / "data" / "sessions.parquet")
    n_slots = sessions.fixation_ms[0].size
    train = [i for i, s in enumerate(sessions.splits) if s == "train" and sessions.fixation_ms[i].sum() > 0]
    rows = _rows(root / "score" / "per_sample_baselines.csv")
    model_rows = _rows(root / "score" / "per_sample.csv")
    assert [r["baseline"] for r in rows] == ["uniform"] * len(model_rows) + ["population"] * len(model_rows) + \
        ["user"] * len(model_rows)
    index = {(u, s): i for i, (u, s) in enumerate(zip(sessions.user_ids, sessions.slate_ids))}
    for row in rows:
        i = index[(row["user_id"], row["slate_id"])]
        assert sessions.splits[i] == "test"
        if row["baseline"] == "uniform":
            a = p = np.full(n_slots, 1.0 / n_slots)
        else:
            keep = [j for j in train if row["baseline"] == "population" or sessions.user_ids[j] == row["user_id"]]
            a, p = _prior(sessions, keep, n_slots)
        expected = M.sample_metrics(a, M.gaze_target(sessions.fixation_ms[i]), p, int(sessions.clicked_slot[i]))
        for name in M.METRIC_NAMES:
            assert float(row[name]) == pytest.approx(expected[name], rel=1e-6, abs=1e-7), (row["baseline"], name)
    assert "vs population" in result.output and "* primary endpoints (kl, csh@1)" in result.output


def test_paired_tests_are_holm_corrected_in_two_families(scored):
    root, _ = scored
    payload = json.loads((root / "score" / "metrics.json").read_text())
    section = payload["baselines"]
    assert section["primary_endpoints"] == ["kl", "csh@1"]
    model_rows, baseline_rows = _rows(root / "score" / "per_sample.csv"), _rows(root / "score" / "per_sample_baselines.csv")

    def per_user(rows, metric):
        users = sorted({r["user_id"] for r in rows})
        return np.array([np.mean([float(r[metric]) for r in rows if r["user_id"] == u]) for u in users])

    raw = {}
    for name in ("uniform", "population", "user"):
        mine = [r for r in baseline_rows if r["baseline"] == name]
        for metric in M.METRIC_NAMES:
            x, y = per_user(model_rows, metric), per_user(mine, metric)
            d = np.round(x - y, 6)  # the CSV's 8 digits; equal per-user changes tie, as the tool ranks them
            raw[(name, metric)] = None if np.all(d == 0) else wilcoxon(d).pvalue
            test = section["models"][name]["model_vs_baseline"][metric]
            assert test["n"] == 12 and test["mean_diff"] == pytest.approx((x - y).mean(), abs=1e-7)
            assert test["direction"] == M.direction(metric, test["mean_diff"])
            if raw[(name, metric)] is not None:
                assert test["p"] == pytest.approx(raw[(name, metric)], rel=1e-6)
    primary = sorted((p, key) for key, p in raw.items() if key[1] in ("kl", "csh@1") and p is not None)
    # Holm by hand for the primary family: the k-th smallest p times (m − k + 1), made monotone.
    running = 0.0
    for k, (p, (name, metric)) in enumerate(primary):
        running = max(running, min(1.0, (len(primary) - k) * p))
        test = section["models"][name]["model_vs_baseline"][metric]
        assert test["family"] == "primary" and test["p_holm"] == pytest.approx(running, rel=1e-6)
    assert section["models"]["population"]["fitted_on"] == {"split": "train", "sessions": 12 * 6}
    assert section["models"]["user"]["fallback_to_population"] == []
    assert section["models"]["population"]["model_vs_baseline"]["js"]["family"] == "secondary"


def test_user_without_train_sessions_falls_back_and_is_named(scored, tmp_path):
    root, _ = scored
    table = pq.read_table(root / "data" / "sessions.parquet")
    users, splits = table.column("user_id").to_pylist(), table.column("split").to_pylist()
    lost = users[0]
    splits = ["val" if u == lost and s == "train" else s for u, s in zip(users, splits)]
    table = table.set_column(table.column_names.index("split"), "split", pa.array(splits, pa.string()))
    pq.write_table(table, tmp_path / "sessions.parquet")
    result = _ok(["score", "--sim", root / "sim", "--sessions", tmp_path / "sessions.parquet", "--out",
                  tmp_path / "score", "--split", "test", "--baselines", "user,population"])
    payload = json.loads((tmp_path / "score" / "metrics.json").read_text())
    assert payload["baselines"]["models"]["user"]["fallback_to_population"] == [lost]
    assert f"1 user(s) without train sessions use the population prior ({lost})" in " ".join(result.output.split())
    rows = [r for r in _rows(tmp_path / "score" / "per_sample_baselines.csv") if r["user_id"] == lost]
    assert {r["baseline"] for r in rows} == {"user", "population"}
    by = {r["baseline"]: r for r in rows}
    assert by["user"]["kl"] == by["population"]["kl"]  # the same prior, as documented


@pytest.mark.parametrize("case", ["unknown", "split_all", "no_train"])
def test_bad_baseline_requests_exit_2_before_writing(scored, tmp_path, case):
    root, _ = scored
    sessions = root / "data" / "sessions.parquet"
    args = ["--split", "test", "--baselines", "uniform,population"]
    if case == "unknown":
        args[3] = "uniform,pbm2"
    elif case == "split_all":
        args = ["--baselines", "population"]
    else:
        table = pq.read_table(sessions)
        splits = ["test" if s == "train" else s for s in table.column("split").to_pylist()]
        table = table.set_column(table.column_names.index("split"), "split", pa.array(splits, pa.string()))
        sessions = tmp_path / "sessions.parquet"
        pq.write_table(table, sessions)
    result = _run(["score", "--sim", root / "sim", "--sessions", sessions, "--out", tmp_path / "out", *args])
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())
    expected = {"unknown": "unknown baseline 'pbm2' (known: uniform, population, user)",
                "split_all": "score a held-out split (--split test or val), not 'all'",
                "no_train": "no session with split 'train' and dwell mass"}[case]
    assert expected in message
    assert not (tmp_path / "out").exists()


def test_uniform_alone_needs_no_train_split(scored, tmp_path):
    root, _ = scored
    _ok(["score", "--sim", root / "sim", "--sessions", root / "data" / "sessions.parquet", "--out", tmp_path,
         "--baselines", "uniform"])
    payload = json.loads((tmp_path / "metrics.json").read_text())
    assert list(payload["baselines"]["models"]) == ["uniform"]
    assert payload["baselines"]["models"]["uniform"]["n_samples"] == payload["n_samples"] == 12 * 8
    assert payload["baselines"]["models"]["uniform"]["micro"]["cc"] == pytest.approx(0.0, abs=1e-12)  # constant map


def test_slot_prior_renormalises_over_other_slate_lengths():
    prior = SlotPrior()
    prior.add(np.array([0.5, 0.3, 0.2, 0.0]), 0)
    prior.add(np.array([0.0, 1.0]), 1)
    gaze, clicks = prior.predict(3)
    # slot 0: (0.5 + 0 + 1/3) / 3, slot 1: (0.3 + 1 + 1/3) / 3, slot 2: (0.2 + 1/3) / 2, then renormalised
    raw = np.array([(0.5 + 1 / 3) / 3, (1.3 + 1 / 3) / 3, (0.2 + 1 / 3) / 2])
    np.testing.assert_allclose(gaze, raw / raw.sum())
    raw = np.array([(1 + 1 / 3) / 3, (1 + 1 / 3) / 3, (1 / 3) / 2])
    np.testing.assert_allclose(clicks, raw / raw.sum())
    np.testing.assert_allclose(SlotPrior().predict(4)[0], np.full(4, 0.25))


def test_holm_matches_the_textbook_example():
    adjusted = M.holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": 0.005, "e": None})
    assert adjusted == pytest.approx({"a": 0.03, "b": 0.06, "c": 0.06, "d": 0.02, "e": None})


def test_parse_baselines_keeps_order_and_rejects_empty():
    assert [b.value for b in parse_baselines("user, uniform,user")] == ["user", "uniform"]
    with pytest.raises(ValidationError, match="no baseline named"):
        parse_baselines(" , ")


def test_overwrite_replaces_a_score_with_baselines_whole(scored, tmp_path):
    """per_sample_baselines.csv is score's own file: --overwrite replaces it, and a rerun without baselines leaves
    no stale baseline rows behind."""
    root, _ = scored
    args = ["score", "--sim", root / "sim", "--sessions", root / "data" / "sessions.parquet", "--out", tmp_path / "s",
            "--split", "test"]
    _ok([*args, "--baselines", "uniform"])
    _ok([*args, "--baselines", "uniform,user", "--overwrite"])
    assert {r["baseline"] for r in _rows(tmp_path / "s" / "per_sample_baselines.csv")} == {"uniform", "user"}
    _ok([*args, "--overwrite"])
    assert not (tmp_path / "s" / "per_sample_baselines.csv").exists()
    assert "baselines" not in json.loads((tmp_path / "s" / "metrics.json").read_text())
