"""Long simulate runs write part files chunk by chunk; a killed run resumes without losing or duplicating rows."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from fixate_rt.cli import app
from fixate_rt.run.layout import read_simulation

pytestmark = pytest.mark.slow  # left out of the quick subset: bash scripts/test.sh -m "not slow"

runner = CliRunner()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from fixate_rt.data.synth import SynthConfig, write_synth

    out = tmp_path_factory.mktemp("resume-data")
    write_synth(out, SynthConfig(n_users=12, n_slates=4, seed=5))
    return out


def _args(data, out, *extra):
    return ["simulate", "--users", str(data / "users.parquet"), "--images", str(data / "slates"), "--out", str(out),
            "--device", "cpu", "--samples", "2", "--seed", "7", *extra]


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory, tiny):
    out = tmp_path_factory.mktemp("reference")
    result = runner.invoke(app, _args(data, out, "--batch-size", "4"))
    assert result.exit_code == 0, result.output
    assert (out / "run.json").is_file()
    return read_simulation(out)[0]


def _run_until_shards(data, out, shards: int) -> subprocess.Popen:
    """A simulate process (chunks of 2 pairs) that has written at least ``shards`` part files and is still running."""
    proc = subprocess.Popen([sys.executable, "-m", "fixate_rt", *_args(data, out, "--batch-size", "1", "--shard-pairs", "2")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while len(list((out / "simulations").glob("part-*.parquet"))) < shards:
        assert proc.poll() is None, f"run ended before it could be stopped: {proc.stderr.read().decode()[-500:]}"
        assert time.monotonic() < deadline, "no shard appeared in 120 s"
        time.sleep(0.01)
    return proc


def test_killed_run_resumes_to_the_same_rows(data, reference, tmp_path):
    out = tmp_path / "run"
    proc = _run_until_shards(data, out, 3)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "run.json").exists()
    done = len(list((out / "simulations").glob("part-*.parquet")))
    assert 3 <= done < 24  # 48 pairs in shards of 2: killed part way

    again = runner.invoke(app, _args(data, out, "--batch-size", "4"))
    assert again.exit_code == 2 and "--resume" in again.output  # never silently overwrites the finished chunks

    other = runner.invoke(app, [a if a != "7" else "8" for a in _args(data, out, "--resume")])
    assert other.exit_code == 2 and "'seed' differs" in other.output

    resumed = runner.invoke(app, _args(data, out, "--batch-size", "3", "--resume"))
    assert resumed.exit_code == 0, resumed.output
    run = json.loads((out / "run.json").read_text())
    assert 0 < run["resumed_pairs"] < 48 and run["pairs"] == 48 and run["rows"] == 96
    table = read_simulation(out)[0]
    assert len(list((out / "simulations").glob("part-*.parquet"))) == 24  # one part per chunk, none doubled
    keys = ["user_id", "slate_id", "sample", "click_slot", "click_label", "cold_start"]
    assert table.select(keys).equals(reference.select(keys))  # same rows, same order, same clicks: none lost or doubled
    for col in ("p_click", "slot_relevance"):
        a = np.array(table.column(col).to_pylist())
        b = np.array(reference.column(col).to_pylist())
        np.testing.assert_allclose(a, b, atol=1e-5)  # other batch sizes: padding changes only rounding


def test_sigterm_says_what_was_kept_and_how_to_resume(data, reference, tmp_path):
    """A batch scheduler's SIGTERM (or Ctrl-C) ends the run with exit 130 and one line: the pairs kept and the
    command to continue; the resumed run then completes with the reference rows."""
    out = tmp_path / "run"
    proc = _run_until_shards(data, out, 2)
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=60) == 130
    lines = [line for line in proc.stderr.read().decode().splitlines() if line.strip()]
    assert "Traceback" not in "\n".join(lines)
    assert "pairs are kept in" in lines[-1] and "--resume" in lines[-1], lines[-3:]
    resumed = runner.invoke(app, _args(data, out, "--resume"))
    assert resumed.exit_code == 0, resumed.output
    keys = ["user_id", "slate_id", "sample", "click_slot"]
    assert read_simulation(out)[0].select(keys).equals(reference.select(keys))


def test_a_second_run_on_the_same_out_is_refused_naming_the_holder(data, tmp_path):
    from fixate_rt.locking import output_lock

    out = tmp_path / "run"
    out.mkdir()
    with output_lock(out, "fixate-rt simulate (the first run)"):
        result = runner.invoke(app, _args(data, out))
        assert result.exit_code == 2
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and "in use by fixate-rt simulate (the first run)" in lines[0], lines
        assert not (out / "simulations").exists() and not (out / "run.json").exists()
    assert runner.invoke(app, _args(data, out)).exit_code == 0  # released at the end of the block


def test_corrupt_part_is_named(data, tmp_path, tiny):
    out = tmp_path / "run"
    _interrupted_run(data, out, tiny)
    (out / "simulations" / "part-000000-0.parquet").write_bytes(b"not parquet")
    result = runner.invoke(app, _args(data, out, "--resume"))
    assert result.exit_code == 2 and "part-000000-0.parquet: unreadable part file" in result.output


def test_resume_refuses_changed_profiles_or_images(data, tmp_path, tiny):
    """The fingerprint covers what changes a row, not only the ids: new profiles or new slate pixels are named."""
    import shutil

    import pyarrow as pa

    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    out = tmp_path / "run"
    _interrupted_run(copy, out, tiny)
    table = pq.read_table(copy / "users.parquet")
    profiles = [p + " (changed)" for p in table.column("profile").to_pylist()]
    pq.write_table(table.set_column(1, "profile", pa.array(profiles, pa.string())), copy / "users.parquet")
    result = runner.invoke(app, _args(copy, out, "--resume"))
    assert result.exit_code == 2 and "'users_sha256' differs" in result.stderr
    pq.write_table(table, copy / "users.parquet")  # profiles back; now one slate's pixels change
    first = sorted((copy / "slates").glob("*.png"))[0]
    from PIL import Image

    image = Image.open(first).convert("RGB")
    image.putpixel((0, 0), (1, 2, 3))
    image.save(first)
    result = runner.invoke(app, _args(copy, out, "--resume"))
    assert result.exit_code == 2 and "'slates_sha256' differs" in result.stderr


def _interrupted_run(data, out, tiny):
    """An interrupted run's folder for ``data`` (its fingerprint, no part yet), as `simulate` writes it."""
    from fixate_rt.backbones.builtins import builtin_folder
    from fixate_rt.config import SimulateConfig
    from fixate_rt.data.slates import read_slates
    from fixate_rt.data.tables import read_users
    from fixate_rt.digests import run_digests
    from fixate_rt.run.record import fingerprint
    from fixate_rt.run.store import ChunkStore

    users, slates = read_users(data / "users.parquet"), read_slates(data / "slates")
    pairs = [(u, s) for s in slates for u in users.ids]
    config = SimulateConfig(users=data / "users.parquet", images=data / "slates", out=out, samples=2, seed=7)
    digests = run_digests(builtin_folder(config.model), users, slates, pairs, None)
    ChunkStore(out, fingerprint(config, "torch", digests, len(pairs)), resume=False)
    from fixate_rt.outputs import write_marker

    write_marker(out, "simulate")  # the run had marked its folder when it started
