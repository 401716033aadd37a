"""FixATE training end to end on tiny data: outputs, resume, cold start, ablations, differentiable probes."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from fixate_rt.cli import app
from fixate_rt.training import TrainConfig, train

pytestmark = pytest.mark.slow  # left out of the quick subset: bash scripts/test.sh -m "not slow"

runner = CliRunner()


def _cfg(synth_dir, out, **kw):
    base = dict(sessions=synth_dir / "sessions.parquet", images=synth_dir / "slates", users=synth_dir / "users.parquet",
                out=out, epochs=2, eval_every=1, batch_size=4, grad_accum=2, warmup_steps=1, seeds=(7,), device="cpu",
                soft_tokens=4, basis=3, lr_basis=1e-2, lr_alpha=5e-2, model="tiny-qwen3vl")
    base.update(kw)
    return TrainConfig(**base)


def test_train_simulate_score_end_to_end(tmp_path, synth_dir):
    args = ["train", "--sessions", synth_dir / "sessions.parquet", "--images", synth_dir / "slates", "--users",
            synth_dir / "users.parquet", "--out", tmp_path / "run", "--epochs", "2", "--eval-every", "1",
            "--soft-tokens", "4", "--basis", "3", "--seeds", "1,2", "--device", "cpu", "--warmup-steps", "1"]
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output + (result.stderr or "")
    assert "fixate_tf" in result.output
    run = tmp_path / "run"
    for name in ("prompts.safetensors", "train_config.json", "metrics.json", "learning_curve.png",
                 "per_sample_seed1_fixate_tf.csv", "per_sample_seed2_backbone_fg.csv"):
        assert (run / name).exists(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["seeds"] == [1, 2] and set(metrics["per_seed"]) == {"1", "2"}
    assert metrics["samples"]["train"] > 0 and metrics["samples"]["test"] > 0
    assert set(metrics["summary_micro_mean_std"]) == {"backbone_tf", "backbone_fg", "fixate_tf", "fixate_fg"}
    assert metrics["implementations"]["training"]["slot_pool"] == {"impl": "torch", "device": "cpu"}
    assert metrics["implementations"]["evaluation"]["slot_pool"]["impl"] in ("cpp", "torch")
    # The bank feeds simulate; every user is known to it (no cold start), then score the result.
    sim = runner.invoke(app, ["simulate", "--users", str(synth_dir / "users.parquet"), "--images",
                              str(synth_dir / "slates"), "--out", str(tmp_path / "sim"), "--device", "cpu",
                              "--prompts", str(run / "prompts.safetensors")])
    assert sim.exit_code == 0, sim.output
    info = json.loads((tmp_path / "sim" / "run.json").read_text())
    assert info["cold_start_pairs"] == 0
    score = runner.invoke(app, ["score", "--sim", str(tmp_path / "sim"), "--sessions",
                                str(synth_dir / "sessions.parquet"), "--out", str(tmp_path / "score"), "--split", "test"])
    assert score.exit_code == 0, score.output


def test_resume_reaches_the_same_prompt_bank(tmp_path, synth_dir):
    full = train(_cfg(synth_dir, tmp_path / "full", epochs=3))

    class Interrupt(Exception):
        pass

    def stop_after_first(epoch):
        if epoch == 1:
            raise Interrupt

    with pytest.raises(Interrupt):
        train(_cfg(synth_dir, tmp_path / "cut", epochs=3), on_epoch_end=stop_after_first)
    assert not (tmp_path / "cut" / "prompts.safetensors").exists()
    resumed = train(_cfg(synth_dir, tmp_path / "cut", epochs=3, resume=True))
    a = load_file(str(tmp_path / "full" / "prompts.safetensors"))
    b = load_file(str(tmp_path / "cut" / "prompts.safetensors"))
    torch.testing.assert_close(a["basis"], b["basis"], atol=0, rtol=0)
    torch.testing.assert_close(a["alpha"], b["alpha"], atol=0, rtol=0)
    assert full["per_seed"]["7"]["history"] == resumed["per_seed"]["7"]["history"]


def test_resume_refuses_a_changed_run_and_reruns_are_not_mixed(tmp_path, synth_dir):
    """--resume continues only the same run: another K, or other profile text, is named; a rerun without --resume
    into a folder holding a run is refused, and the folder is left as it was."""
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq

    data = tmp_path / "data"
    shutil.copytree(synth_dir, data)
    train(_cfg(data, tmp_path / "run", epochs=1))
    before = sorted((p.name, p.stat().st_mtime_ns) for p in (tmp_path / "run").rglob("*"))
    for over, needle in ((dict(resume=False), "earlier `fixate-rt train` output"), (dict(basis=2, resume=True), "'basis'")):
        with pytest.raises(Exception, match=needle):
            train(_cfg(data, tmp_path / "run", epochs=1, **over))
    users = pq.read_table(data / "users.parquet")
    changed = users.set_column(users.column_names.index("profile"), "profile",
                               pa.array(["Top_genre: Horror"] * users.num_rows))
    pq.write_table(changed, data / "users.parquet")
    with pytest.raises(Exception, match="content of --users"):
        train(_cfg(data, tmp_path / "run", epochs=1, resume=True))
    assert sorted((p.name, p.stat().st_mtime_ns) for p in (tmp_path / "run").rglob("*")) == before


def test_cold_start_trains_alpha_only(tmp_path, synth_dir):
    train(_cfg(synth_dir, tmp_path / "base", epochs=1))
    base = load_file(str(tmp_path / "base" / "prompts.safetensors"))
    train(_cfg(synth_dir, tmp_path / "cold", epochs=1, freeze_basis=True,
               init_from=tmp_path / "base" / "prompts.safetensors", lr_alpha=0.5))
    cold = load_file(str(tmp_path / "cold" / "prompts.safetensors"))
    torch.testing.assert_close(cold["basis"], base["basis"], atol=0, rtol=0)
    assert (cold["alpha"] - base["alpha"]).abs().max() > 1e-4
    # a bank of another shape is one clear error before any model work (it used to be a RuntimeError)
    from fixate_rt.errors import ValidationError

    with pytest.raises(ValidationError, match="K=3 bases of N=4 tokens but this run asks for --basis 5"):
        train(_cfg(synth_dir, tmp_path / "wrong", epochs=1, basis=5, freeze_basis=True,
                   init_from=tmp_path / "base" / "prompts.safetensors"))
    assert not (tmp_path / "wrong").exists()


def test_ablations_random_prompt_and_no_user_alpha(tmp_path, synth_dir):
    train(_cfg(synth_dir, tmp_path / "rand", epochs=1, random_prompt=True))
    rand = load_file(str(tmp_path / "rand" / "prompts.safetensors"))
    init = torch.randn(3, 4, 64, generator=torch.Generator().manual_seed(7)) * 0.01
    torch.testing.assert_close(rand["basis"], init)
    assert rand["alpha"].abs().max() == 0
    train(_cfg(synth_dir, tmp_path / "shared", epochs=1, no_user_alpha=True))
    shared = load_file(str(tmp_path / "shared" / "prompts.safetensors"))
    assert shared["alpha"].abs().max() == 0 and (shared["basis"] - init).abs().max() > 1e-5


@pytest.mark.parametrize("method", ["rollout", "attnlrp", "glimpse"])
def test_differentiable_probes_reach_the_soft_prompt(tiny, synth_dir, method):
    from PIL import Image

    from fixate_rt.data.layout import LETTERS
    from fixate_rt.plan import plan_ops
    from fixate_rt.probes.operators import probe

    feats = tiny.encode_slate(Image.open(synth_dir / "slates" / "s000.png"))
    inputs = tiny.build_inputs(["x", "y"], LETTERS, feats, 3)
    prompts = (torch.randn(2, 3, tiny.hidden_size) * 0.1).requires_grad_(True)
    plan = plan_ops(method, "torch", tiny.device, needs_grad=True)
    out = probe(tiny, inputs, feats, prompts, tiny.label_token_ids(LETTERS), plan,
                layers=tiny.default_probe_layers, targets=torch.tensor([0, 3]))
    (out.token_relevance[:, :20].sum()).backward()
    assert prompts.grad is not None and prompts.grad.abs().max() > 0
    assert np.isfinite(prompts.grad.numpy()).all()


def test_train_rejects_unknown_slate(tmp_path, synth_dir):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(synth_dir / "sessions.parquet")
    slates = table.column("slate_id").to_pylist()
    slates[3] = "ghost"
    table = table.set_column(table.column_names.index("slate_id"), "slate_id", pa.array(slates))
    pq.write_table(table, tmp_path / "s.parquet")
    result = runner.invoke(app, ["train", "--sessions", str(tmp_path / "s.parquet"), "--images", str(synth_dir / "slates"),
                                 "--users", str(synth_dir / "users.parquet"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "row 3, field 'slate_id': unknown slate 'ghost'" in result.stderr
