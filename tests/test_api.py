"""The Python API validates like the CLI, returns what the CLI writes, and leaves the host process alone."""

from __future__ import annotations

import datetime
import json
import os
import stat
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from fixate_rt import Layout, SimulateConfig, Simulator
from fixate_rt.errors import FixateError, ValidationError
from fixate_rt.run.layout import read_simulation

runner = CliRunner()


@pytest.fixture(scope="module")
def cli_run(synth_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("api-cli")
    from fixate_rt.cli import app

    result = runner.invoke(app, ["simulate", "--users", str(synth_dir / "users.parquet"), "--images",
                                 str(synth_dir / "slates"), "--out", str(out), "--device", "cpu", "--samples", "3",
                                 "--seed", "5", "--model", "tiny-qwen3vl"])
    assert result.exit_code == 0, result.output
    return out, read_simulation(out)[0].to_pydict()


@pytest.mark.parametrize("kwargs, message", [
    (dict(image_size=(100, 50), boxes=[[0, 0, 10, 10]], labels=["A", "B"]), "1 boxes but 2 labels"),
    (dict(image_size=(100, 50), boxes=[[0, 0, 200, 10]], labels=["A"]), "outside the 100x50 image"),
    (dict(image_size=(100, 50), boxes=[[0, 0, 10, 10], [1, 1, 5, 5]], labels=["A", "A"]), "duplicate label 'A'"),
    (dict(image_size=(100, 50), boxes=[[0, 0, float("nan"), 10]], labels=["A"]), "non-finite"),
    (dict(image_size=(100, 0), boxes=[[0, 0, 10, 10]], labels=["A"]), "image_size"),
    (dict(image_size=(100, 50), boxes=[[0, 0, 10]], labels=["A"]), "shape [S, 4]"),
])
def test_layouts_built_in_memory_are_validated_like_files(kwargs, message):
    with pytest.raises(ValidationError, match=__import__("re").escape(message)):
        Layout(**kwargs)


def test_layout_accepts_lists_and_normalises_them():
    layout = Layout([100, 50], [[0, 0, 10, 10], [10, 0, 20, 10]], ["A", "B"])
    assert layout.image_size == (100, 50) and layout.boxes.dtype == np.float32 and layout.labels == ("A", "B")


def test_config_accepts_strings_and_names_a_bad_one(tmp_path):
    config = SimulateConfig(users=tmp_path, images=tmp_path, out=tmp_path, probe="glimpse", kernel="torch",
                            device="cpu", pool_mode="area", backend="torch")
    assert config.probe.value == "glimpse" and config.to_json()["pool_mode"] == "area"
    with pytest.raises(ValidationError, match="probe must be one of rollout, glimpse, attnlrp; got 'lrp'"):
        SimulateConfig(users=tmp_path, images=tmp_path, out=tmp_path, probe="lrp")


def test_simulate_slate_draws_the_clicks_the_cli_draws(tiny, synth_dir, cli_run):
    from fixate_rt.data.slates import read_slates
    from fixate_rt.data.tables import read_users

    _, rows = cli_run
    users, slate = read_users(synth_dir / "users.parquet"), read_slates(synth_dir / "slates")["s001"]
    sim = Simulator(loaded=tiny)
    res = sim.simulate_slate(slate.load_image(), slate.layout, list(users.ids), list(users.profiles),
                             slate_id="s001", seed=5, samples=3)
    expected = {(u, k): c for u, s, k, c in zip(rows["user_id"], rows["slate_id"], rows["sample"], rows["click_slot"])
                if s == "s001"}
    assert res.clicks.shape == (len(users), 3)
    assert all(res.clicks[i, k] == expected[(u, k)] for i, u in enumerate(users.ids) for k in range(3))
    with pytest.raises(ValidationError, match="profiles: 1 given for 2 user_ids"):
        sim.simulate_slate(slate.load_image(), slate.layout, ["a", "b"], ["x"])
    with pytest.raises(ValidationError, match="layout: expected a fixate_rt Layout"):
        sim.simulate_slate(slate.load_image(), {"boxes": []}, ["a"])


def test_batch_dict_call_returns_the_cli_rows(tiny, synth_dir, cli_run):
    _, rows = cli_run
    sim = Simulator(loaded=tiny).bind(slates=synth_dir / "slates", users=synth_dir / "users.parquet", samples=3,
                                      seed=5)
    pick = [i for i in range(0, len(rows["user_id"]), 3)][:7]  # one row per pair (sample 0), mixed slates
    out = sim({"user_id": np.array([rows["user_id"][i] for i in pick]),
               "slate_id": np.array([rows["slate_id"][i] for i in pick])})
    assert list(out["user_id"]) == [rows["user_id"][i] for i in pick for _ in range(3)]
    assert list(out["click_slot"]) == [rows["click_slot"][i + k] for i in pick for k in range(3)]
    np.testing.assert_allclose(np.stack(out["p_click"]), np.array([rows["p_click"][i + k] for i in pick for k in range(3)]),
                               atol=1e-6)
    with pytest.raises(FixateError, match="row 0, field 'slate_id': unknown slate 'nope'"):
        sim({"user_id": ["u000"], "slate_id": ["nope"]})


def test_run_json_has_timestamps_digests_and_json_types(cli_run):
    out, _ = cli_run
    run = json.loads((out / "run.json").read_text())
    start = datetime.datetime.fromisoformat(run["started_at"])
    assert start.tzinfo is not None and datetime.datetime.fromisoformat(run["finished_at"]) >= start
    for name in ("users", "slates", "pairs", "model"):
        assert len(run["digests_sha256"][name]) == 64
    assert isinstance(run["versions"]["cpp_module"], bool) and isinstance(run["config"]["resume"], bool)


def test_import_changes_no_global_state_and_the_module_is_reachable():
    code = ("import transformers.utils.logging as hf; import fixate_rt, fixate_rt.simulate, inspect; "
            "print(hf.is_progress_bar_enabled(), inspect.ismodule(fixate_rt.simulate))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["True", "True"]


def test_output_files_follow_the_umask(synth_dir, tmp_path):
    code = ("import os, sys; os.umask(0o027); from fixate_rt.cli import app; "
            "sys.argv = ['fixate-rt', 'synth', sys.argv[1], '--users', '2', '--slates', '3']; app()")
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "d")], capture_output=True, check=True,
                   env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert stat.S_IMODE((tmp_path / "d" / "users.parquet").stat().st_mode) == 0o640


def test_info_lists_versions_and_every_registered_op():
    from fixate_rt import ops
    from fixate_rt.cli import app

    result = runner.invoke(app, ["info"])
    assert result.exit_code == 0, result.output
    assert "cpp_module" in result.output and all(op in result.output for op in ops.REGISTRY)
