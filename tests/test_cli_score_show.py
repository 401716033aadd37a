"""`fixate-rt score` and `fixate-rt show` on the synthetic data, end to end through the CLI."""

import csv
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from fixate_rt import metrics as M
from fixate_rt.cli import app
from fixate_rt.data.tables import read_sessions
from fixate_rt.run.layout import read_simulation

runner = CliRunner()


def _ok(args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output + (result.stderr or "")
    return result


@pytest.fixture(scope="module")
def sims(tmp_path_factory, synth_dir):
    out = {}
    for probe in ("rollout", "attnlrp"):
        d = tmp_path_factory.mktemp(probe)
        _ok(["simulate", "--users", synth_dir / "users.parquet", "--images", synth_dir / "slates", "--out", d,
             "--device", "cpu", "--probe", probe, "--samples", "2"])
        out[probe] = d
    return out


def test_score_writes_metrics_and_per_sample(sims, synth_dir, tmp_path):
    result = _ok(["score", "--sim", sims["rollout"], "--sessions",
                  synth_dir / "sessions.parquet", "--out", tmp_path])
    assert "csh@1" in result.output
    with open(tmp_path / "per_sample.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["user_id", "slate_id", "kl", "js", "cosine", "csh@1", "csh@3", "csh@5", "tgo@1", "tgo@3",
                             "tgo@5", "topk_js", "cc", "sim", "nss", "logloss", "auc", "correct"]
    assert len(rows) == 24  # one row per (user, slate), not per sample
    payload = json.loads((tmp_path / "metrics.json").read_text())
    assert payload["n_samples"] == 24 and payload["n_users"] == 6
    # Recompute one row independently from the raw files.
    table = read_simulation(sims["rollout"])[0].to_pylist()
    sim = next(r for r in table if r["user_id"] == rows[5]["user_id"] and r["slate_id"] == rows[5]["slate_id"])
    sessions = read_sessions(synth_dir / "sessions.parquet")
    i = next(i for i, (u, s) in enumerate(zip(sessions.user_ids, sessions.slate_ids))
             if (u, s) == (sim["user_id"], sim["slate_id"]))
    expected = M.sample_metrics(np.array(sim["slot_relevance"]), M.gaze_target(sessions.fixation_ms[i]),
                                np.array(sim["p_click"]), int(sessions.clicked_slot[i]))
    for name in M.METRIC_NAMES:
        assert float(rows[5][name]) == pytest.approx(expected[name], rel=1e-6, abs=1e-9)
    assert payload["micro"]["kl"] == pytest.approx(np.mean([float(r["kl"]) for r in rows]), rel=1e-6)


def test_score_split_cursor_and_compare(sims, synth_dir, tmp_path):
    _ok(["score", "--sim", sims["attnlrp"], "--sessions", synth_dir / "sessions.parquet",
         "--out", tmp_path / "a"])
    result = _ok(["score", "--sim", sims["rollout"], "--sessions",
                  synth_dir / "sessions.parquet", "--out", tmp_path / "r", "--signal", "cursor", "--split", "test",
                  "--compare", tmp_path / "a"])
    payload = json.loads((tmp_path / "r" / "metrics.json").read_text())
    sessions = read_sessions(synth_dir / "sessions.parquet")
    n_test = sum(1 for s, c in zip(sessions.splits, sessions.cursor_ms) if s == "test" and c.sum() > 0)
    assert payload["n_samples"] == n_test and payload["config"]["signal"] == "cursor"
    assert set(payload["compare"]["wilcoxon"]) == set(M.METRIC_NAMES)
    assert payload["compare"]["wilcoxon"]["kl"]["n"] == 6 and "paired Wilcoxon" in result.output


def test_score_reports_sessions_without_mass(sims, synth_dir, tmp_path):
    table = pq.read_table(synth_dir / "sessions.parquet")
    fix = table.column("fixation_ms").to_pylist()
    fix[0] = [0.0] * 15
    table = table.set_column(table.column_names.index("fixation_ms"), "fixation_ms",
                             pa.array(fix, pa.list_(pa.float32())))
    pq.write_table(table, tmp_path / "sessions.parquet")
    result = _ok(["score", "--sim", sims["rollout"], "--sessions",
                  tmp_path / "sessions.parquet", "--out", tmp_path / "o"])
    payload = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert payload["skipped_no_mass"]["count"] == 1 and payload["n_samples"] == 23
    assert "skipped 1 sessions with no fixation mass" in result.output


def test_score_bad_inputs_exit_2(sims, synth_dir, tmp_path):
    result = runner.invoke(app, ["score", "--sim", str(synth_dir / "users.parquet"), "--sessions",
                                 str(synth_dir / "sessions.parquet"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "field 'slate_id'" in result.stderr
    assert not (tmp_path / "o" / "metrics.json").exists()


def test_show_writes_pngs(sims, synth_dir, tmp_path):
    result = _ok(["show", "--sim", sims["attnlrp"], "--sessions",
                  synth_dir / "sessions.parquet", "--images", synth_dir / "slates", "--out", tmp_path,
                  "--user", "u002", "--limit", "2"])
    pngs = sorted(tmp_path.glob("*.png"))
    assert [p.name for p in pngs] == ["u002__s000__fixation.png", "u002__s001__fixation.png"]
    from PIL import Image

    with Image.open(pngs[0]) as img:
        assert img.size[0] > 1000 and img.getextrema()[0][1] > 0
    assert "KL" in result.output
