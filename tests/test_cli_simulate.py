"""`fixate-rt simulate` end to end on generated data with the tiny model."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from fixate_rt.cli import app
from fixate_rt.prompts import SoftPromptBank
from fixate_rt.run.layout import read_simulation

runner = CliRunner()


def _simulate(synth_dir, out, *extra):
    args = ["simulate", "--users", str(synth_dir / "users.parquet"), "--images", str(synth_dir / "slates"),
            "--out", str(out), "--device", "cpu", *(("--model", "tiny-qwen3vl") if "--model" not in extra else ()),
            *extra]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output + (result.stderr or "")
    return read_simulation(out)[0], json.loads((out / "run.json").read_text())


@pytest.fixture(scope="module")
def bank_path(tmp_path_factory, tiny, synth_dir):
    from fixate_rt.data.tables import read_users

    users = read_users(synth_dir / "users.parquet").ids
    bank = SoftPromptBank.init(users[:4], n_basis=3, n_tokens=4, hidden_size=tiny.hidden_size, seed=2)
    bank.basis.mul_(50)  # large enough to move the random tiny model's answers
    bank.alpha.normal_(0, 2, generator=__import__("torch").Generator().manual_seed(0))
    path = tmp_path_factory.mktemp("bank") / "prompts.safetensors"
    bank.save(path)
    return path


@pytest.fixture(scope="module")
def run_b7(tmp_path_factory, synth_dir, bank_path):
    return _simulate(synth_dir, tmp_path_factory.mktemp("b7"), "--batch-size", "7", "--samples", "3",
                     "--seed", "5", "--prompts", str(bank_path))


def test_output_schema_and_row_count(run_b7):
    table, info = run_b7
    assert table.column_names == ["user_id", "slate_id", "sample", "click_slot", "click_label", "p_click",
                                  "slot_relevance", "cold_start", "click_item_id", "click_item_kind",
                                  "click_item_rank", "click_row", "click_col", "pair"]
    assert table.column("pair").to_pylist() == sorted(table.column("pair").to_pylist())  # the reader's order
    # the synthetic 3 × 5 grid's layout carries each slot's row and column: the click's position follows
    cols = table.to_pydict()
    assert all(divmod(s, 5) == (r, c) for s, r, c in zip(cols["click_slot"], cols["click_row"], cols["click_col"]))
    assert table.num_rows == 6 * 4 * 3 == info["rows"]
    cpp = __import__("fixate_rt.ops").ops.cpp_available()
    assert info["pairs"] == 24
    # with the C++ module: every layer SDPA, the row from Q/K in C++; without it: eager capture + torch row
    probe_op = ({"rollout_row_qk": {"impl": "cpp", "device": "cpu", "capture": "qk_cpp"}} if cpp
                else {"rollout_row": {"impl": "torch", "device": "cpu", "capture": "mean"}})
    assert info["implementations"] == {**probe_op, "slot_pool": {"impl": "cpp" if cpp else "torch", "device": "cpu"}}
    keys = set(zip(table.column("user_id").to_pylist(), table.column("slate_id").to_pylist(),
                   table.column("sample").to_pylist()))
    assert len(keys) == table.num_rows


def test_probabilities_and_relevance_are_distributions(run_b7):
    table, _ = run_b7
    p = np.array(table.column("p_click").to_pylist())
    rel = np.array(table.column("slot_relevance").to_pylist())
    assert p.shape == rel.shape == (72, 15)
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-5)
    np.testing.assert_allclose(rel.sum(1), 1.0, atol=1e-5)
    assert (rel >= 0).all() and rel.std(1).max() > 1e-3, "relevance is not just the uniform fallback"
    labels = table.column("click_label").to_pylist()
    assert all(lab == chr(ord("A") + s) for lab, s in zip(labels, table.column("click_slot").to_pylist()))


def test_same_seed_same_clicks_for_batch_sizes_1_and_7(run_b7, tmp_path, synth_dir, bank_path):
    b7, _ = run_b7
    b1, _ = _simulate(synth_dir, tmp_path, "--batch-size", "1", "--samples", "3", "--seed", "5",
                      "--prompts", str(bank_path))
    assert b1.column("click_slot").to_pylist() == b7.column("click_slot").to_pylist()
    np.testing.assert_allclose(np.array(b1.column("p_click").to_pylist()),
                               np.array(b7.column("p_click").to_pylist()), atol=1e-5)


def test_samples_are_drawn_from_p_click(tmp_path, synth_dir):
    table, _ = _simulate(synth_dir, tmp_path, "--samples", "60", "--seed", "1")
    p = np.array(table.column("p_click").to_pylist())
    clicks = np.array(table.column("click_slot").to_pylist())
    observed = np.bincount(clicks, minlength=15) / len(clicks)
    expected = p.mean(0)
    assert np.abs(observed - expected).max() < 0.05


def test_cold_start_flags_follow_the_bank(run_b7, synth_dir):
    table, info = run_b7
    from fixate_rt.data.tables import read_users

    users = read_users(synth_dir / "users.parquet").ids
    cold = dict(zip(table.column("user_id").to_pylist(), table.column("cold_start").to_pylist()))
    assert [cold[u] for u in users] == [False] * 4 + [True] * 2
    assert info["cold_start_pairs"] == 2 * 4


def test_prompt_bank_changes_predictions(run_b7, tmp_path, synth_dir):
    with_bank, _ = run_b7
    without, _ = _simulate(synth_dir, tmp_path, "--samples", "3", "--seed", "5")
    assert all(without.column("cold_start").to_pylist())
    diff = np.abs(np.array(with_bank.column("p_click").to_pylist()) - np.array(without.column("p_click").to_pylist()))
    assert diff.max() > 1e-3


def test_pairs_file_selects_pairs(tmp_path, synth_dir):
    pairs = pa.table({"user_id": ["u001", "u000"], "slate_id": ["s002", "s002"]})
    pq.write_table(pairs, tmp_path / "pairs.parquet")
    table, info = _simulate(synth_dir, tmp_path / "out", "--pairs", str(tmp_path / "pairs.parquet"))
    assert table.column("user_id").to_pylist() == ["u001", "u000"] and info["pairs"] == 2


def test_run_json_records_config_versions_and_timings(run_b7):
    _, info = run_b7
    assert info["config"]["batch_size"] == 7 and info["config"]["seed"] == 5
    assert {"torch", "transformers", "fixate_rt"} <= set(info["versions"])
    assert {"vision", "decoder_and_probe", "pooling", "sampling", "write"} <= set(info["timings_s"])
    assert info["backbone"]["probe_layers"] == [2, 3, 4, 5, 6, 7]


def test_python_api_simulator_matches_cli(run_b7, synth_dir, bank_path):
    from fixate_rt import Simulator
    from fixate_rt.data.slates import read_slates
    from fixate_rt.data.tables import read_users

    table, _ = run_b7
    users = read_users(synth_dir / "users.parquet")
    profile = dict(zip(users.ids, users.profiles))
    slate = read_slates(synth_dir / "slates")["s001"]
    sim = Simulator("tiny-qwen3vl", prompts=bank_path, device="cpu", batch_size=3)
    res = sim.simulate_slate(slate.load_image(), slate.layout, ["u000", "u005"], [profile["u000"], profile["u005"]])
    assert res.cold_start == [False, True]
    cli = {(u, s): p for u, s, k, p in zip(*(table.column(c).to_pylist() for c in
                                             ("user_id", "slate_id", "sample", "p_click"))) if k == 0}
    np.testing.assert_allclose(res.p_click[0], cli[("u000", "s001")], atol=1e-5)
    np.testing.assert_allclose(res.p_click[1], cli[("u005", "s001")], atol=1e-5)
