"""Outputs are owned: each command writes only into a new or empty folder or one it marked itself, --overwrite
replaces only its own marked output, an --out that is or contains an input is refused, and the lock is taken
before anything is deleted."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from test_export_safety import _one_line_error
from typer.testing import CliRunner

from fixate_rt.cli import app
from fixate_rt.outputs import MARKER, WRITES, check_output

runner = CliRunner()


def _tree(folder):
    return sorted((str(p.relative_to(folder)), p.stat().st_size if p.is_file() else -1) for p in folder.rglob("*"))


@pytest.fixture(scope="module")
def sim(synth_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("owned") / "sim"
    result = runner.invoke(app, ["simulate", "--users", str(synth_dir / "users.parquet"), "--images",
                                 str(synth_dir / "slates"), "--out", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output + (result.stderr or "")
    return out


def test_outputs_carry_a_marker_naming_the_command(sim):
    marker = json.loads((sim / MARKER).read_text())
    assert marker["command"] == "simulate" and marker["format"] == "fixate-rt/output/1" and len(marker["run_id"]) == 32


def test_export_clicks_into_its_own_input_is_refused(sim):
    before = _tree(sim)
    _one_line_error(runner.invoke(app, ["export-clicks", str(sim), "--format", "yandex", "--out", str(sim)]),
                    "is the input")
    _one_line_error(runner.invoke(app, ["export-clicks", str(sim), "--format", "yandex", "--out", str(sim),
                                        "--overwrite"]), "is the input")
    assert _tree(sim) == before


def test_position_bias_into_its_run_is_refused(sim):
    before = _tree(sim)
    _one_line_error(runner.invoke(app, ["position-bias", str(sim), "--out", str(sim), "--overwrite"]),
                    "is the input")
    _one_line_error(runner.invoke(app, ["position-bias", str(sim / "simulations"), "--out", str(sim),
                                        "--overwrite"]), "contains the input")
    assert _tree(sim) == before


def test_compare_never_replaces_a_folder_of_the_users_files(sim, tmp_path):
    mine = tmp_path / "analysis"
    mine.mkdir()
    (mine / "table.csv").write_text("a,b\n1,2\n")
    (mine / "notes.json").write_text("{}")
    for extra in ([], ["--overwrite"]):
        _one_line_error(runner.invoke(app, ["compare", str(sim), str(sim), "--out", str(mine), *extra]),
                        "not created by `fixate-rt compare`")
    assert sorted(p.name for p in mine.iterdir()) == ["notes.json", "table.csv"]


def test_permute_never_replaces_another_datasets_slates(synth_dir, tmp_path):
    import shutil

    other = tmp_path / "other"
    shutil.copytree(synth_dir / "slates", other)
    before = _tree(other)
    for extra in ([], ["--overwrite"]):
        _one_line_error(runner.invoke(app, ["permute", "--images", str(synth_dir / "slates"), "--out", str(other),
                                            "--policy", "reverse", *extra]), "not created by `fixate-rt permute`")
    assert _tree(other) == before


def test_overwrite_replaces_only_the_commands_own_marked_output(sim, tmp_path):
    out = tmp_path / "log"
    args = ["export-clicks", str(sim), "--format", "yandex", "--out", str(out)]
    assert runner.invoke(app, args).exit_code == 0
    _one_line_error(runner.invoke(app, args), "earlier `fixate-rt export-clicks` output", "--overwrite")
    assert runner.invoke(app, [*args, "--overwrite"]).exit_code == 0
    (out / "my-notes.md").write_text("mine")  # the user adds a file: the folder is no longer only the output
    _one_line_error(runner.invoke(app, [*args, "--overwrite"]), "my-notes.md")
    assert (out / "my-notes.md").read_text() == "mine"
    # another command's output is not this command's to replace
    _one_line_error(runner.invoke(app, ["position-bias", str(sim), "--out", str(out), "--overwrite"]),
                    "output of `fixate-rt export-clicks`")


def test_broken_symlink_and_file_as_out(sim, tmp_path):
    link = tmp_path / "dangling"
    link.symlink_to(tmp_path / "nowhere")
    _one_line_error(runner.invoke(app, ["export-clicks", str(sim), "--format", "yandex", "--out", str(link)]),
                    "broken symbolic link")
    afile = tmp_path / "afile"
    afile.write_text("x")
    _one_line_error(runner.invoke(app, ["export-clicks", str(sim), "--format", "yandex", "--out", str(afile)]),
                    "not a folder")
    assert afile.read_text() == "x"


def test_refusals_leave_no_folder(synth_dir, tmp_path):
    """Options and inputs are checked before --out is created."""
    out = tmp_path / "never"
    for args in (["simulate", "--users", str(synth_dir / "users.parquet"), "--images", str(synth_dir / "slates"),
                  "--out", str(out), "--device", "cpu", "--model", str(tmp_path / "nope")],
                 ["simulate", "--users", str(synth_dir / "users.parquet"), "--images", str(synth_dir / "slates"),
                  "--out", str(out), "--device", "cpu", "--engine", "ray", "--address", "127.0.0.1:1"],
                 ["export", "--out", str(out), "--model", "tiny-qwen2vl"],
                 ["export", "--out", str(out), "--sign-key", str(tmp_path / "no-key.pem")]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert not out.exists(), args


def test_train_overwrite_waits_for_the_lock_before_deleting(synth_dir, tmp_path):
    """A training run in progress holds --out's lock: a second run with --overwrite is refused before it deletes
    anything of the first one's."""
    out = tmp_path / "run"
    args = ["train", "--sessions", str(synth_dir / "sessions.parquet"), "--images", str(synth_dir / "slates"),
            "--users", str(synth_dir / "users.parquet"), "--out", str(out), "--epochs", "1", "--basis", "2",
            "--soft-tokens", "2", "--seeds", "1", "--device", "cpu"]
    assert runner.invoke(app, args).exit_code == 0
    before = _tree(out)
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time, pathlib\n"
        "from fixate_rt.locking import output_lock\n"
        "with output_lock(pathlib.Path(sys.argv[1]), 'fixate-rt train'):\n"
        "    print('held', flush=True)\n"
        "    time.sleep(60)\n"), str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        _one_line_error(runner.invoke(app, [*args, "--overwrite"]), "in use by fixate-rt train")
    finally:
        holder.kill()
        holder.wait()
    after = [entry for entry in _tree(out) if entry[0] != ".fixate-rt.lock"]
    assert after == [entry for entry in before if entry[0] != ".fixate-rt.lock"]


def test_every_command_that_writes_a_folder_is_registered():
    import inspect

    from fixate_rt.cli import common

    commands = {c.name or c.callback.__name__.replace("_", "-") for c in common.app.registered_commands}
    writers = {name for name in commands if any(p == "out" for p in inspect.signature(
        next(c.callback for c in common.app.registered_commands
             if (c.name or c.callback.__name__.replace("_", "-")) == name)).parameters)}
    assert writers <= set(WRITES), writers - set(WRITES)


def test_check_output_is_read_only(tmp_path):
    target = tmp_path / "new" / "deeper"
    assert check_output(target, "score") is False
    assert not (tmp_path / "new").exists()
    os.makedirs(target)
    assert check_output(target, "score") is False and list(target.iterdir()) == []


def test_train_seeds_are_distinct_and_non_negative(synth_dir, tmp_path):
    base = ["train", "--sessions", str(synth_dir / "sessions.parquet"), "--images", str(synth_dir / "slates"),
            "--users", str(synth_dir / "users.parquet"), "--out", str(tmp_path / "run"), "--epochs", "1"]
    for seeds, needle in (("42,42", "given twice"), ("-1", "0..2^63-1")):
        result = runner.invoke(app, [*base, "--seeds", seeds])
        assert result.exit_code == 2 and needle in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert not (tmp_path / "run").exists()


def test_ray_options_are_bounded_before_any_work(synth_dir, tmp_path):
    """--workers beyond the bound, and an --address that answers but is not a Ray cluster (an HTTP server here):
    refused at once, nothing written."""
    import http.server
    import threading

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):  # the server's own log would share stderr with the one-line error
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = ["simulate", "--users", str(synth_dir / "users.parquet"), "--images", str(synth_dir / "slates"),
            "--out", str(tmp_path / "o"), "--engine", "ray"]
    try:
        _one_line_error(runner.invoke(app, [*base, "--workers", "100000"]), "--workers", "1..1024")
        _one_line_error(runner.invoke(app, [*base, "--address", f"127.0.0.1:{server.server_address[1]}"]),
                        "not a Ray cluster", "gRPC")
    finally:
        server.shutdown()
    assert not (tmp_path / "o").exists()
