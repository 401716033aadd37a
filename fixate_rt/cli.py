"""The ``fixate-rt`` command line (Typer). Each command validates, then calls the same API as Python users.

Every `FixateError` becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .config import Device, Kernel, PoolMode, Probe, SimulateConfig
from .errors import FixateError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="FixATE user simulation: synth, simulate, info.")
console = Console(stderr=True)


def fail_cleanly(fn: Callable) -> Callable:
    """One line and exit code 2 for every expected error; no traceback."""

    @wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except FixateError as exc:
            print(f"fixate-rt: error: {exc}", file=sys.stderr)
            raise typer.Exit(2) from None

    return wrapper


class _PairsPerSecond(TextColumn):
    def __init__(self) -> None:
        super().__init__("")

    def render(self, task):
        speed = task.completed / task.elapsed if task.elapsed else 0.0
        return f"{speed:6.1f} pairs/s"


@app.command()
@fail_cleanly
def synth(
    out: Annotated[Path, typer.Argument(help="Output folder (users.parquet, slates/, sessions.parquet, truth.json)")],
    users: Annotated[int, typer.Option(min=2, help="Number of users")] = 30,
    slates: Annotated[int, typer.Option(min=3, help="Number of slates")] = 40,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same data)")] = 0,
) -> None:
    """Generate a synthetic RecGaze-like dataset with a known generative model."""
    from .data.synth import SynthConfig, write_synth

    with Progress(TextColumn("rendering slates"), BarColumn(), MofNCompleteColumn(), console=console,
                  transient=True) as progress:
        task = progress.add_task("render", total=slates)
        stats = write_synth(out, SynthConfig(n_users=users, n_slates=slates, seed=seed),
                            progress=lambda done, total: progress.update(task, completed=done))
    table = Table(title=f"synthetic data in {out}")
    table.add_column("statistic")
    table.add_column("value", justify="right")
    for key, value in stats.items():
        table.add_row(key, f"{value:.3f}" if isinstance(value, float) else str(value))
    Console().print(table)


@app.command()
@fail_cleanly
def simulate(
    users: Annotated[Path, typer.Option(help="users.parquet (user_id, optional profile)")],
    images: Annotated[Path, typer.Option(help="slates folder: <slate_id>.png|.jpg + layout.json or <slate_id>.json")],
    out: Annotated[Path, typer.Option(help="Output folder for simulations.parquet and run.json")],
    model: Annotated[str, typer.Option(help="Local checkpoint folder, or the embedded 'tiny-qwen3vl'")] = "tiny-qwen3vl",
    prompts: Annotated[Optional[Path], typer.Option(help="Prompt bank prompts.safetensors")] = None,
    pairs: Annotated[Optional[Path], typer.Option(help="Parquet of (user_id, slate_id) to simulate; default all")] = None,
    samples: Annotated[int, typer.Option(min=1, help="Clicks drawn per (user, slate)")] = 1,
    seed: Annotated[int, typer.Option(help="Click sampling seed")] = 0,
    batch_size: Annotated[int, typer.Option(min=1, help="Users per decoder batch")] = 8,
    device: Annotated[Device, typer.Option(help="auto, cpu or cuda")] = Device.auto,
    probe: Annotated[Probe, typer.Option(help="Probing operator")] = Probe.rollout,
    kernel: Annotated[Kernel, typer.Option(help="Op implementation (auto picks the fastest available)")] = Kernel.auto,
    pool: Annotated[PoolMode, typer.Option(help="Token→slot pooling mode")] = PoolMode.exclusive,
) -> None:
    """Simulate clicks of every user on every slate; report click probability and slot relevance."""
    from .simulate import simulate as run_simulation

    config = SimulateConfig(users=users, images=images, out=out, model=model, prompts=prompts, pairs=pairs,
                            samples=samples, seed=seed, batch_size=batch_size, device=device, probe=probe,
                            kernel=kernel, pool_mode=pool)
    t0 = time.perf_counter()
    with Progress(TextColumn("simulating"), BarColumn(), MofNCompleteColumn(), _PairsPerSecond(),
                  TimeElapsedColumn(), console=console, transient=True) as progress:
        task = progress.add_task("pairs", total=None)
        info = run_simulation(config, on_start=lambda n: progress.update(task, total=n),
                              on_pairs=lambda n: progress.advance(task, n))
    _print_summary(Path(out), info, time.perf_counter() - t0)


def _print_summary(out: Path, info: dict, seconds: float) -> None:
    import numpy as np
    import pyarrow.parquet as pq

    table = pq.read_table(out / "simulations.parquet").to_pydict()
    labels = sorted(set(table["click_label"]) | {lab for lab in table["click_label"]})
    width = max(len(p) for p in table["p_click"])
    p = np.array([row for row in table["p_click"] if len(row) == width])
    rel = np.array([row for row in table["slot_relevance"] if len(row) == width])
    summary = Table(title=f"{info['rows']} simulated clicks · {info['pairs']} pairs · "
                          f"{info['pairs_per_s']} pairs/s · device {info['device']}")
    for col in ("slot", "click share", "mean p_click", "mean slot relevance"):
        summary.add_column(col, justify="right")
    clicks = np.array(table["click_slot"])
    for slot in range(width):
        label = next((lab for lab, s in zip(table["click_label"], table["click_slot"]) if s == slot), str(slot))
        summary.add_row(label, f"{np.mean(clicks == slot):.3f}", f"{p[:, slot].mean():.3f}", f"{rel[:, slot].mean():.3f}")
    out_console = Console()
    out_console.print(summary)
    out_console.print(f"results: {out / 'simulations.parquet'}  run info: {out / 'run.json'}  "
                      f"({seconds:.1f} s; implementations {info['implementations']})")
    del labels


@app.command()
@fail_cleanly
def info(model: Annotated[str, typer.Option(help="Model to describe")] = "tiny-qwen3vl") -> None:
    """Versions, available implementations and the model's shape."""
    from . import ops
    from .backbones import load
    from .simulate import versions

    backbone = load(model, device="cpu")
    table = Table(title="fixate-rt")
    table.add_column("item")
    table.add_column("value")
    for key, value in versions().items():
        table.add_row(key, value)
    table.add_row("model", f"{backbone.name} ({backbone.family}, hidden {backbone.hidden_size}, {backbone.num_layers} layers)")
    table.add_row("probe layers", str(list(backbone.default_probe_layers)))
    for op in ("rollout_row", "slot_pool"):
        table.add_row(f"{op} impls", ", ".join(f"{k}{'' if not v else ' (unavailable)'}" for k, v in ops.available(op).items()))
    Console().print(table)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
