"""Bad input through the CLI: exit code 2, one line naming the file/row/field, no output left behind."""

import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from fixate_rt.cli import app
from fixate_rt.data.tables import Sessions, write_sessions
from fixate_rt.prompts import SoftPromptBank

runner = CliRunner()


@pytest.fixture
def case(tmp_path, synth_dir):
    """A private copy of the synthetic inputs that each test breaks in its own way."""
    shutil.copytree(synth_dir / "slates", tmp_path / "slates")
    shutil.copy(synth_dir / "users.parquet", tmp_path / "users.parquet")
    shutil.copy(synth_dir / "sessions.parquet", tmp_path / "sessions.parquet")
    return tmp_path


def _expect_error(args, *needles, out=None):
    result = runner.invoke(app, args)
    assert result.exit_code == 2, f"exit {result.exit_code}: {result.output}"
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line, got: {lines}"
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    if out is not None:
        leftovers = [p.name for p in out.rglob("*")] if out.exists() else []
        assert not [name for name in leftovers if not name.startswith(".")], leftovers
        assert "simulations" not in leftovers and "run.json" not in leftovers
    return lines[0]


def _sim(case, **over):
    opts = {"--users": case / "users.parquet", "--images": case / "slates", "--out": case / "out",
            "--device": "cpu", "--model": "tiny-qwen3vl", **over}
    return ["simulate", *[str(x) for kv in opts.items() for x in kv]]


def test_corrupt_image(case):
    (case / "slates" / "s001.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    _expect_error(_sim(case), "s001.png", "corrupt or unreadable image", out=case / "out")


def test_truncated_image(case):
    data = (case / "slates" / "s002.png").read_bytes()
    (case / "slates" / "s002.png").write_bytes(data[: len(data) // 2])
    _expect_error(_sim(case), "s002.png", out=case / "out")


def test_image_without_layout(case):
    (case / "slates" / "layout.json").unlink()
    _expect_error(_sim(case), "s000.png", "has no layout", out=case / "out")


def test_layout_box_outside_image(case):
    import json

    layout = json.loads((case / "slates" / "layout.json").read_text())
    layout["slots"][3]["box"] = [1000, 10, 1200, 50]
    (case / "slates" / "layout.json").write_text(json.dumps(layout))
    _expect_error(_sim(case), "layout.json", "slot 3", "field 'box'", "outside the 1100x619 image", out=case / "out")


def test_image_size_mismatch(case):
    from PIL import Image

    Image.new("RGB", (640, 480)).save(case / "slates" / "s003.png")
    _expect_error(_sim(case), "s003.png", "640x480", "1100x619", out=case / "out")


def test_missing_users_file(case):
    _expect_error(_sim(case, **{"--users": case / "nope.parquet"}), "nope.parquet", "not found", out=case / "out")


def test_users_without_user_id(case):
    pq.write_table(pa.table({"id": ["a"]}), case / "users.parquet")
    _expect_error(_sim(case), "users.parquet", "field 'user_id'", out=case / "out")


def test_duplicate_user_ids(case):
    pq.write_table(pa.table({"user_id": ["a", "b", "a"]}), case / "users.parquet")
    _expect_error(_sim(case), "users.parquet", "row 2", "duplicate user id 'a'", out=case / "out")


def test_empty_users_file(case):
    pq.write_table(pa.table({"user_id": pa.array([], pa.string())}), case / "users.parquet")
    _expect_error(_sim(case), "users.parquet", "no rows", out=case / "out")


def test_unknown_model_path(case):
    _expect_error(_sim(case, **{"--model": case / "no-such-model"}), "no-such-model", "not a model folder",
                  out=case / "out")


def test_prompt_bank_with_wrong_hidden_size(case):
    SoftPromptBank.init(["u000"], 2, 3, hidden_size=32).save(case / "bank.safetensors")
    _expect_error(_sim(case, **{"--prompts": case / "bank.safetensors"}), "bank.safetensors",
                  "hidden size 32 does not match the model's 64", out=case / "out")


def test_corrupt_prompt_bank(case):
    (case / "bank.safetensors").write_bytes(b"\x00" * 64)
    _expect_error(_sim(case, **{"--prompts": case / "bank.safetensors"}), "bank.safetensors", out=case / "out")


def test_out_dir_not_writable(case):
    (case / "a-file").write_text("x")
    _expect_error(_sim(case, **{"--out": case / "a-file" / "out"}), "a-file/out", "is not a folder")


def test_unknown_user_in_pairs(case):
    pq.write_table(pa.table({"user_id": ["u000", "ghost"], "slate_id": ["s000", "s000"]}), case / "pairs.parquet")
    _expect_error(_sim(case, **{"--pairs": case / "pairs.parquet"}), "pairs.parquet", "row 1", "unknown user 'ghost'",
                  out=case / "out")


def test_empty_slates_folder(case):
    (case / "empty").mkdir()
    _expect_error(_sim(case, **{"--images": case / "empty"}), "empty", "no slate images", out=case / "out")


def _write_bad_sessions(path, fixation):
    write_sessions(path, Sessions(("u000", "u001"), ("s000", "s000"), ("train", "train"),
                                  (np.ones(15), fixation), None, np.array([0, 0])))


@pytest.mark.parametrize("value, word", [(np.nan, "NaN"), (-3.0, "negative")])
def test_sessions_with_nan_or_negative_dwell(case, value, word):
    fixation = np.ones(15)
    fixation[4] = value
    _write_bad_sessions(case / "bad.parquet", fixation)
    _expect_error(["validate", "--sessions", str(case / "bad.parquet")], "bad.parquet", "row 1",
                  "field 'fixation_ms'", word, "slot 4")


def test_sessions_size_mismatch_against_layout(case):
    _write_bad_sessions(case / "bad.parquet", np.ones(12))
    _expect_error(["validate", "--sessions", str(case / "bad.parquet"), "--images", str(case / "slates")],
                  "row 1", "12 values but slate 's000' has 15 slots")


def test_validate_accepts_good_inputs(case):
    result = runner.invoke(app, ["validate", "--users", str(case / "users.parquet"), "--images", str(case / "slates"),
                                 "--sessions", str(case / "sessions.parquet")])
    assert result.exit_code == 0, result.output
    assert "6 users" in result.output and "4 slates" in result.output and "24 sessions" in result.output


def test_version_help_panels_and_builtin_models():
    from typer.main import get_command

    from fixate_rt import __version__
    from fixate_rt.backbones.builtins import builtin_names
    from fixate_rt.config import BUILTIN_MODELS

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"fixate-rt {__version__}"
    text = runner.invoke(app, ["--help"]).output
    assert all(name in text for name in get_command(app).commands)  # every command is listed
    assert builtin_names() == BUILTIN_MODELS  # the help's list of built-in models is the real one
    assert "qwen3vl-4b-shape" in " ".join(runner.invoke(app, ["simulate", "--help"]).output.split())


def test_device_accepts_a_gpu_index_and_names_bad_values(tmp_path):
    from fixate_rt.config import parse_device

    assert parse_device("cuda:1") == "cuda:1" and parse_device("cpu") == "cpu"
    result = runner.invoke(app, ["profile", "--device", "gpu0", "--n-pairs", "1"])
    assert result.exit_code == 2 and "--device must be auto, cpu, cuda or cuda:N" in result.stderr


def test_score_kernel_offers_only_what_exists():
    import fixate_rt.ops as ops
    from fixate_rt.config import MetricKernel

    assert {k.value for k in MetricKernel} - {"auto"} == set(ops.REGISTRY["batch_metrics"])
    result = runner.invoke(app, ["score", "--sim", "a", "--sessions", "b", "--out", "c", "--kernel", "triton"])
    assert result.exit_code == 2 and "--kernel" in result.stderr


@pytest.mark.slow
def test_a_finished_output_is_never_replaced_silently(tmp_path, synth_dir):
    """synth, simulate and score refuse a folder holding their finished output (nothing changes) unless
    --overwrite; export-clicks likewise."""
    import hashlib

    def digest(folder):
        return {p.relative_to(folder): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(folder.rglob("*")) if p.is_file()}

    sim_args = ["simulate", "--users", synth_dir / "users.parquet", "--images", synth_dir / "slates", "--out",
                tmp_path / "sim", "--device", "cpu"]
    runs = [["synth", tmp_path / "data", "--users", "2", "--slates", "3"], sim_args,
            ["score", "--sim", tmp_path / "sim", "--sessions", synth_dir / "sessions.parquet",
             "--out", tmp_path / "score"],
            ["export-clicks", tmp_path / "sim", "--format", "yandex", "--out", tmp_path / "log"]]
    for args in runs:
        args = [str(a) for a in args]
        assert runner.invoke(app, args).exit_code == 0
        before = digest(tmp_path)
        again = runner.invoke(app, args)
        assert again.exit_code == 2 and "--overwrite" in again.stderr, (args[0], again.output)
        assert digest(tmp_path) == before
        assert runner.invoke(app, [*args, "--overwrite"]).exit_code == 0, args[0]


def test_progress_is_printed_as_lines_off_a_terminal_and_quiet_silences_it(tmp_path, synth_dir):
    args = ["synth", str(tmp_path / "d"), "--users", "2", "--slates", "3"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0
    assert "fixate-rt: rendering: 3/3 slates (100 %)" in result.stderr  # CliRunner's stderr is not a terminal
    quiet = runner.invoke(app, ["-q", *args, "--overwrite"])
    assert quiet.exit_code == 0 and quiet.stderr.strip() == ""


def test_a_transformers_release_that_drops_image_features_is_refused(monkeypatch):
    import transformers

    from fixate_rt.backbones import require_transformers
    from fixate_rt.errors import UnavailableError

    monkeypatch.setattr(transformers, "__version__", "5.17.0")
    with pytest.raises(UnavailableError, match="needs >= 5.18"):
        require_transformers()
    monkeypatch.setattr(transformers, "__version__", "5.25.0")
    require_transformers()
