"""What a new user meets first: the pretrained model by default, a loud note when a random-weight model runs, a
warm-up that fits the run, and p-values that say which way the metric moved."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import typer

from fixate_rt.cli import app
from fixate_rt.config import DEFAULT_MODEL, RANDOM_WEIGHTS, SimulateConfig


def test_every_command_that_runs_a_model_defaults_to_the_pretrained_one():
    from fixate_rt.training.config import TrainConfig

    group = typer.main.get_command(app)
    for name in ("simulate", "train", "profile", "export", "info", "validate"):
        (model,) = [p for p in group.commands[name].params if p.name == "model"]
        assert model.default == DEFAULT_MODEL == "slates-qwen3vl", name
    assert SimulateConfig.__dataclass_fields__["model"].default == DEFAULT_MODEL
    assert TrainConfig.__dataclass_fields__["model"].default == DEFAULT_MODEL


def _simulate(data, out, *extra) -> subprocess.CompletedProcess:
    """A fresh process: the note is said once per process."""
    return subprocess.run([sys.executable, "-m", "fixate_rt", "simulate", "--users", str(data / "users.parquet"),
                           "--images", str(data / "slates"), "--out", str(out), "--device", "cpu", *extra],
                          capture_output=True, text=True)


@pytest.mark.slow
def test_a_random_weight_model_says_so_once_on_stderr_and_in_run_json(synth_dir, tmp_path):
    random_run = _simulate(synth_dir, tmp_path / "tiny", "--model", "tiny-qwen3vl")
    assert random_run.returncode == 0, random_run.stderr[-1000:]
    notes = [line for line in random_run.stderr.splitlines() if RANDOM_WEIGHTS in line]
    assert len(notes) == 1 and "tiny-qwen3vl" in notes[0], random_run.stderr
    assert json.loads((tmp_path / "tiny" / "run.json").read_text())["model_weights"] == RANDOM_WEIGHTS
    trained_run = _simulate(synth_dir, tmp_path / "default")
    assert trained_run.returncode == 0, trained_run.stderr[-1000:]
    assert RANDOM_WEIGHTS not in trained_run.stderr
    record = json.loads((tmp_path / "default" / "run.json").read_text())
    assert record["model_weights"] == "trained" and record["backbone"]["name"] == "slates-qwen3vl"


def test_a_warm_up_longer_than_the_run_is_fitted_to_it_and_said():
    import dataclasses

    from fixate_rt.training.config import TrainConfig
    from fixate_rt.training.run import fit_warmup, optimiser_steps

    def config(**kw):
        return TrainConfig.from_preset(kw.pop("preset", "none"), sessions="s", images="i", users="u", out="o",
                                       epochs=2, batch_size=4, grad_accum=2, **kw)

    cfg = config()
    assert cfg.warmup_steps == 30 and optimiser_steps(cfg, 36) == 2 * 5  # ⌈⌈36/4⌉/2⌉ = 5 steps an epoch
    fitted, note = fit_warmup(cfg, {42: 36, 123: 40})
    assert fitted.warmup_steps == 2 and "fitted to 10 steps" in fitted.protocol()["warmup_steps"]["source"]
    assert note.startswith("warm-up cut from 30 (default) to 2 steps")
    long_enough = dataclasses.replace(cfg, epochs=12)  # 60 steps: λ reaches λ* at step 2W = 60
    assert fit_warmup(long_enough, {42: 36}) == (long_enough, None)
    for kept in (config(warmup_steps=30), config(preset="recgaze")):  # an option, or the paper's protocol
        same, note = fit_warmup(kept, {42: 36})
        assert same is kept and "never acts" in note and "kept as given" in note


@pytest.mark.parametrize("metric, diff, word", [("kl", 0.0062, "worse"), ("kl", -0.01, "better"),
                                                ("csh@1", 0.05, "better"), ("csh@1", -0.05, "worse"),
                                                ("logloss", 0.0, "same"), ("auc", 0.00001, "same")])
def test_every_p_value_is_printed_with_the_direction_and_size_of_the_change(metric, diff, word):
    from fixate_rt import metrics as M

    text = M.format_change({"mean_diff": diff, "p": 0.021, "n": 12}, metric)
    assert text == f"{diff:+.4f} {word}, p 0.021"


def test_the_first_line_of_train_names_the_seeds_and_where_they_came_from(capsys):
    from fixate_rt.cli.display import print_protocol
    from fixate_rt.training.config import TrainConfig

    print_protocol(TrainConfig.from_preset("none", sessions="s", images="i", users="u", out="o"))
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("training 5 seeds (42, 123, 456, 789, 2024; default)"), first


def test_table_titles_break_between_phrases_not_inside_them():
    from fixate_rt.cli.display import fit_title

    title = fit_title("test (test, 48 samples)", "mean ± std over seeds [1, 2, 3]", "preset none", "ties average",
                      width=44)
    assert title.splitlines() == ["test (test, 48 samples)", "mean ± std over seeds [1, 2, 3]",
                                  "preset none · ties average"]


def test_the_closing_progress_line_is_not_printed_twice():
    from fixate_rt.cli.progress import LineReporter

    lines = []
    reporter = LineReporter("simulating", "pairs", every_s=0.0)
    reporter._line = (lambda original: lambda: (lines.append(reporter.done), original())[1])(reporter._line)
    with reporter:
        reporter.total(4)
        reporter.advance(2)
        reporter.advance(2)  # the 100 % line, printed here ...
    assert lines == [2, 4]  # ... and not again on exit


def test_permute_row_headers_stay_or_follow_the_content_as_asked(synth_dir, tmp_path):
    import numpy as np
    from PIL import Image

    from fixate_rt.experiments.permute import _header_strip, parse_policy, permute_folder

    source = np.asarray(Image.open(synth_dir / "slates" / "s000.png"))
    for headers in ("position", "content"):
        permute_folder(synth_dir / "slates", tmp_path / headers, parse_policy("reverse", 0), headers=headers)
        variant = np.asarray(Image.open(tmp_path / headers / "s000.png"))
        record = json.loads((tmp_path / headers / ".permutation.json").read_text())
        assert record["headers"] == headers
        x0, y0, x1, y1 = _header_strip(0)
        top = variant[y0:y1, x0:x1]
        if headers == "position":
            assert np.array_equal(top, source[y0:y1, x0:x1])  # the header stays with the position
        else:  # reversed: the bottom row's items, and its header, are now on top
            X0, Y0, X1, Y1 = _header_strip(2)
            assert np.array_equal(top, source[Y0:Y1, X0:X1]) and not np.array_equal(top, source[y0:y1, x0:x1])
