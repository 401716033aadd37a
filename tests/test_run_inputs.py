"""compare, position-bias and profile-match read runs with score's row rules: one run per file, distributions
that are finite, non-negative and sum to 1, one p_click value per slot of the slate; truth.json is checked too."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from fixate_rt.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def run(synth_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "sim"
    result = runner.invoke(app, ["simulate", "--users", str(synth_dir / "users.parquet"), "--images",
                                 str(synth_dir / "slates"), "--out", str(out), "--device", "cpu", "--samples", "2"])
    assert result.exit_code == 0, result.output
    return out


def _edited(run, tmp_path, edit):
    folder = tmp_path / "edited"
    shutil.copytree(run, folder)
    (part,) = sorted((folder / "simulations").glob("part-*.parquet"))  # a small run: one part file
    table = pq.read_table(part).to_pydict()
    edit(table)
    pq.write_table(pa.table(table, schema=pq.read_schema(part)), part)
    return folder


def _refused(result, *needles):
    assert result.exit_code == 2, result.output
    line = result.stderr.strip()
    assert "\n" not in line and "Traceback" not in line, line
    for needle in needles:
        assert needle in line, line


def _negative(table):
    p = list(table["p_click"][0])
    p[0], p[1] = -0.1, p[1] + p[0] + 0.1
    table["p_click"][0] = p
    table["p_click"][1] = p  # the second sample of the pair, kept consistent


def _mixed(table):
    p = np.array(table["p_click"][1])
    table["p_click"][1] = list(np.roll(p, 1))  # the pair's second sample now disagrees with its first


def _short(table):
    for i in range(len(table["p_click"])):
        p = np.array(table["p_click"][i][:-1])
        r = np.array(table["slot_relevance"][i][:-1])
        table["p_click"][i] = list(p / p.sum())
        table["slot_relevance"][i] = list(r / r.sum())
        table["click_slot"][i] = min(table["click_slot"][i], len(p) - 1)


@pytest.mark.parametrize("edit, needle", [(_negative, "negative value"), (_mixed, "two simulations mixed"),
                                          (_short, "14 slots but slate")])
@pytest.mark.parametrize("command", ["compare", "position-bias"])
def test_bad_runs_are_refused(run, tmp_path, edit, needle, command):
    bad = _edited(run, tmp_path, edit)
    args = ["compare", str(run), str(bad)] if command == "compare" else ["position-bias", str(bad)]
    _refused(runner.invoke(app, [*args, "--out", str(tmp_path / "o")]), needle)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("change, needle", [("string", "preferred_genres as a list"), ("twice", "listed twice")])
def test_profile_match_checks_truth(run, synth_dir, tmp_path, change, needle):
    data = tmp_path / "data"
    shutil.copytree(synth_dir, data)
    truth = json.loads((data / "truth.json").read_text())
    if change == "string":
        truth["users"][0]["preferred_genres"] = "Drama"
    else:
        truth["users"].append(dict(truth["users"][0]))
    (data / "truth.json").write_text(json.dumps(truth))
    _refused(runner.invoke(app, ["profile-match", "--data", str(data), "--sim", str(run)]), needle)


def test_compare_resamples_are_bounded(run, tmp_path):
    _refused(runner.invoke(app, ["compare", str(run), str(run), "--out", str(tmp_path / "o"), "--resamples",
                                 "1000000000"]), "--resamples")
