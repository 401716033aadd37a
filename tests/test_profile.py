"""`fixate-rt profile` on CPU with the tiny model: every stage timed, report and trace written."""

import json
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from fixate_rt.cli import app
from fixate_rt.latency import STAGES, decoder_flops


def test_profile_reports_every_stage_and_writes_a_trace(tmp_path):
    result = CliRunner().invoke(app, ["profile", "--n-pairs", "4", "--batch-size", "2", "--warmup", "0", "--device",
                                      "cpu", "--out", str(tmp_path / "p"), "--trace"])
    assert result.exit_code == 0, result.output + (result.stderr or "")
    report = json.loads((tmp_path / "p" / "profile.json").read_text())
    assert set(report["stages_ms"]) == {*STAGES, "decoder", "probe"} and report["pairs"] == 4
    # simulate's own pipeline ran: two slates of two users, one batch each, vision once per slate
    assert report["stages_ms"]["decoder_and_probe"]["calls"] == 2 and report["stages_ms"]["vision"]["calls"] == 2
    assert all(v["p90"] >= v["p50"] >= 0 for v in report["stages_ms"].values())
    assert report["stages_ms"]["decoder"]["p50"] > 0 and report["pairs_per_s"] > 0
    assert report["ms_per_pair"] == pytest.approx(sum(report["stages_ms"][s]["per_pair"] for s in STAGES))
    assert report["implementations"]["slot_pool"]["device"] == "cpu"
    assert report["mfu"] is None and report["decoder_tflops_achieved"] > 0  # no known CPU peak
    assert "traceEvents" in json.loads((tmp_path / "p" / "trace.json").read_text())


@pytest.mark.slow
def test_profile_on_given_data_times_every_pair(synth_dir, tmp_path):
    """With --users/--images the profile runs simulate's pipeline over exactly those pairs (after warm-up)."""
    result = CliRunner().invoke(app, ["profile", "--users", str(synth_dir / "users.parquet"), "--images",
                                      str(synth_dir / "slates"), "--batch-size", "4", "--device", "cpu",
                                      "--out", str(tmp_path / "p")])
    assert result.exit_code == 0, result.output + (result.stderr or "")
    report = json.loads((tmp_path / "p" / "profile.json").read_text())
    assert report["warmup_pairs"] == 4 and report["pairs"] == 6 * 4 - 4
    assert report["data"]["users"].endswith("users.parquet")


def test_profile_needs_users_and_images_together(synth_dir):
    result = CliRunner().invoke(app, ["profile", "--users", str(synth_dir / "users.parquet")])
    assert result.exit_code == 2 and "--users and --images go together" in result.stderr


def test_decoder_flop_count_by_hand():
    c = SimpleNamespace(head_dim=2, hidden_size=4, num_attention_heads=2, num_key_value_heads=1, intermediate_size=8,
                        num_hidden_layers=3, vocab_size=10)
    T = 5
    per_layer = 2 * T * (4 * 4 * 2 + 4 * 2 * 2) + 2 * T * 3 * 4 * 8 + 2 * 2 * 2 * 2 * T * T / 2
    assert decoder_flops(SimpleNamespace(text_config=c), T) == pytest.approx(3 * per_layer + 2 * 4 * 10)
