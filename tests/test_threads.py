"""Thread choice for a shared machine: counts from the CPUs the process may use, passive OpenMP waits from the
CLI unless the user chose, --threads honoured and recorded."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
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



class _FakeMachine:
    """A clock whose batches cost what the thread count and the current load say (seconds per pair)."""

    def __init__(self, cost: dict[tuple[str, int], float]):
        self.cost, self.load, self.threads, self.now, self.pending = cost, "idle", None, 0.0, 0

    def set_threads(self, n: int) -> None:
        self.threads = n

    def clock(self) -> float:
        self.now += self.pending  # the batch just timed cost what the machine charges now
        self.pending = self.cost[(self.load, self.threads)] * 8
        return self.now


def _run(controller, machine, batches: int) -> list[int]:
    used = []
    for _ in range(batches):
        with controller.batch(8) as threads:
            used.append(threads)
    return used


def test_adaptive_threads_follow_the_load():
    from fixate_rt.threads import AdaptiveThreads

    # the measured shape of benchmarks/bench_contended.py: idle, 2 threads win; one core busy, 1 thread wins
    machine = _FakeMachine({("idle", 2): 0.009, ("idle", 1): 0.014, ("busy", 2): 0.024, ("busy", 1): 0.015})
    controller = AdaptiveThreads(2, explore_every=8, clock=machine.clock, set_threads=machine.set_threads)
    idle = _run(controller, machine, 24)
    assert idle[:5] == [2, 2, 1, 2, 1]  # warm-up, then two measurements of each
    assert idle[3:].count(1) <= 3 and controller.best() == 2  # only the periodic re-measurements run on 1 thread
    machine.load = "busy"
    busy = _run(controller, machine, 24)
    assert busy[-8:].count(2) <= 1 and controller.best() == 1  # switched within one exploration period
    machine.load = "idle"
    again = _run(controller, machine, 24)
    assert again[-8:].count(1) <= 1 and controller.best() == 2
    summary = controller.summary()
    assert summary["batches"]["2"] + summary["batches"]["1"] == 72 and summary["switches"] >= 4
    assert summary["ms_per_pair"]["2"] == pytest.approx(9.0, rel=0.01)


def test_adaptive_threads_need_two_cpus():
    from fixate_rt.threads import AdaptiveThreads

    with pytest.raises(ValueError, match="at least 2 CPUs"):
        AdaptiveThreads(1)


def test_simulate_adapts_threads_without_changing_results(synth_dir, tmp_path):
    """Without --threads on a machine of 2+ CPUs, simulate chooses threads batch by batch (run.json says so),
    and the results equal a --threads 1 run bit for bit (the thread count changes no reduction order here)."""
    import pyarrow.parquet as pq
    import torch

    from fixate_rt.threads import usable_cpus

    if usable_cpus() < 2:
        pytest.skip("adaptive threads need 2 usable CPUs")
    before = torch.get_num_threads()
    try:
        common = ["simulate", "--users", str(synth_dir / "users.parquet"), "--images", str(synth_dir / "slates"),
                  "--device", "cpu", "--batch-size", "2", "--seed", "3"]
        auto = runner.invoke(app, common + ["--out", str(tmp_path / "auto")])
        one = runner.invoke(app, common + ["--out", str(tmp_path / "one"), "--threads", "1"])
        assert auto.exit_code == 0 and one.exit_code == 0, auto.output + one.output
        adaptive = json.loads((tmp_path / "auto" / "run.json").read_text())["threads"]["adaptive"]
        assert adaptive["mode"] == "adaptive" and sum(adaptive["batches"].values()) > 3
        assert "adaptive" not in json.loads((tmp_path / "one" / "run.json").read_text())["threads"]
        order = [("user_id", "ascending"), ("slate_id", "ascending"), ("sample", "ascending")]
        tables = [pq.read_table(tmp_path / name / "simulations").sort_by(order) for name in ("auto", "one")]
        for column in ("click_slot", "p_click", "slot_relevance"):
            assert tables[0].column(column).to_pylist() == tables[1].column(column).to_pylist(), column
    finally:
        torch.set_num_threads(before)
