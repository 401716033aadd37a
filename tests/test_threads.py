"""Thread choice for a shared machine: counts from the CPUs the process may use, passive OpenMP waits from the
CLI unless the user chose, --threads honoured and recorded."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from typer.testing import CliRunner

from fixate_rt.cli import app
from fixate_rt.threads import apply_threads, usable_cpus

runner = CliRunner()


def test_usable_cpus_follow_the_affinity_mask():
    code = ("import os\nos.sched_setaffinity(0, {0})\nfrom fixate_rt.threads import usable_cpus\n"
            "print(usable_cpus())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "1"
    assert 1 <= usable_cpus() <= (os.cpu_count() or 1)


def test_cli_bounds_the_spin_unless_the_user_chose():
    code = "import os, sys\nimport fixate_rt.cli\nprint(os.environ.get('GOMP_SPINCOUNT'), 'torch' in sys.modules)"
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert out.split() == ["10000", "False"]  # set before torch (and its OpenMP runtime) is loaded
    for chosen in ({"OMP_WAIT_POLICY": "PASSIVE"}, {"GOMP_SPINCOUNT": "5"}):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**env, **chosen},
                             check=True).stdout
        assert out.split()[0] == chosen.get("GOMP_SPINCOUNT", "None")


def test_apply_threads_sets_torch():
    import torch

    before = torch.get_num_threads()
    try:
        info = apply_threads(1)
        assert torch.get_num_threads() == 1 and info["threads"] == 1 and info["chosen_by"] == "--threads"
    finally:
        torch.set_num_threads(before)


def test_simulate_threads_recorded(synth_dir, tmp_path):
    import torch

    before = torch.get_num_threads()
    try:
        result = runner.invoke(app, ["simulate", "--users", str(synth_dir / "users.parquet"), "--images",
                                     str(synth_dir / "slates"), "--out", str(tmp_path / "o"), "--device", "cpu",
                                     "--threads", "1"])
        assert result.exit_code == 0, result.output
        run = json.loads((tmp_path / "o" / "run.json").read_text())
        assert run["threads"]["threads"] == 1 and run["threads"]["chosen_by"] == "--threads"
        bad = runner.invoke(app, ["simulate", "--users", str(synth_dir / "users.parquet"), "--images",
                                  str(synth_dir / "slates"), "--out", str(tmp_path / "p"), "--threads", "0"])
        assert bad.exit_code == 2 and "--threads" in bad.stderr
    finally:
        torch.set_num_threads(before)

