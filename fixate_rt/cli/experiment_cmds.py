"""Experiment commands: `permute` (counterfactual slates), `compare` (policy comparison), `position-bias`
(examination by position and click models) and `export-clicks` (logs for click-model toolkits)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..config import ClickLogFormat, LabelMode
from ..outputs import check_output
from .common import OVERWRITE_HELP, app, fail_cleanly, out_console


@app.command(rich_help_panel="Experiments")
@fail_cleanly
def permute(
    images: Annotated[Path, typer.Option(help="slates folder to vary")],
    out: Annotated[Path, typer.Option(help="new folder for the variants (same slate ids: use it as --images)")],
    policy: Annotated[str, typer.Option(help="reverse, shuffle, swap:A,F (two labels), or an order .parquet of "
                                             "(slate_id, order: list of labels)")],
    seed: Annotated[int, typer.Option(min=0, help="seed of --policy shuffle")] = 0,
    labels: Annotated[LabelMode, typer.Option(help="item: labels follow their items (redrawn on the built-in grid); "
                                                   "position: labels stay with the positions")] = LabelMode.item,
    headers: Annotated[str, typer.Option(help="row headers: position (stay where they are: a moved row keeps its "
                                              "header) or content (follow the rows' items; the built-in grid)")]
    = "position",
    overwrite: Annotated[bool, typer.Option("--overwrite", help=OVERWRITE_HELP)] = False,
) -> None:
    """The same items in other positions: pixels, layout labels and item metadata move with their items."""
    check_output(out, "permute", inputs=(images,), overwrite=overwrite)
    from ..experiments.permute import parse_policy, permute_folder

    result = permute_folder(images, out, parse_policy(policy, seed), labels.value, headers=headers,
                            overwrite=overwrite)
    out_console.print(f"{result['slates']} variant slates ({result['moved_items']} items moved) -> {out}")


@app.command(rich_help_panel="Experiments")
@fail_cleanly
def compare(
    sim_a: Annotated[Path, typer.Argument(help="run A: a simulate --out folder (or a simulation Parquet file)")],
    sim_b: Annotated[Path, typer.Argument(help="run B, over the same users on variants of the same slates")],
    out: Annotated[Path, typer.Option(help="folder for compare.json, per_item.csv, per_position.csv, compare.png")],
    level: Annotated[float, typer.Option(help="confidence level of the bootstrap intervals")] = 0.95,
    resamples: Annotated[int, typer.Option(help="bootstrap resamples over users")] = 2000,
    seed: Annotated[int, typer.Option(min=0, help="bootstrap seed")] = 0,
    allow_unpaired: Annotated[bool, typer.Option("--allow-unpaired", help="compare only the users both runs "
                                                                          "have")] = False,
    images_a: Annotated[Optional[Path], typer.Option(help="A's slates [default: from A's run.json]")] = None,
    images_b: Annotated[Optional[Path], typer.Option(help="B's slates [default: from B's run.json]")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help=OVERWRITE_HELP)] = False,
) -> None:
    """Click share per item, per position and overall, B − A, with paired bootstrap intervals over users."""
    check_output(out, "compare", inputs=(sim_a, sim_b, images_a, images_b), overwrite=overwrite)
    from ..experiments.compare import compare_runs
    from ..experiments.reports import write_compare

    result = compare_runs(sim_a, sim_b, resamples=resamples, level=level, seed=seed, allow_unpaired=allow_unpaired,
                          images_a=images_a, images_b=images_b)
    write_compare(out, result, inputs=(sim_a, sim_b, images_a, images_b), overwrite=overwrite)
    tv = result["overall"]
    out_console.print(f"{result['users']} paired users; total variation of item clicks {tv['total_variation']:.3f} "
                      f"[{tv['low']:.3f}, {tv['high']:.3f}] -> {out / 'compare.png'}")


@app.command("position-bias", rich_help_panel="Experiments")
@fail_cleanly
def position_bias(
    sims: Annotated[list[Path], typer.Argument(help="one or more runs (simulate --out folders or simulation Parquet "
                                                    "files), ideally on variants that move items around")],
    out: Annotated[Path, typer.Option(help="folder for position_bias.json/.csv, position_bias.png (the curves) and "
                                           "position_bias_overlay.png")],
    images: Annotated[Optional[Path], typer.Option(help="the slates of every run [default: each run's own, from "
                                                        "its run.json]")] = None,
    resamples: Annotated[int, typer.Option(min=0, max=2000, help="bootstrap refits for the intervals (0: none)")] = 100,
    seed: Annotated[int, typer.Option(min=0, help="bootstrap seed")] = 0,
    overwrite: Annotated[bool, typer.Option("--overwrite", help=OVERWRITE_HELP)] = False,
) -> None:
    """Examination by position: the model's attention, and logit, PBM and cascade click models fitted to clicks."""
    check_output(out, "position-bias", inputs=(*sims, images), overwrite=overwrite)
    from ..experiments.position_bias import position_bias as fit
    from ..experiments.reports import write_position_bias
    from ..experiments.runs import read_run, slates_of

    runs = [read_run(s) for s in sims]
    slates = [slates_of(run, images) for run in runs]  # each folder read (and its images decoded) once
    result = fit(runs, slates, resamples=resamples, seed=seed)
    write_position_bias(out, result, slates[0][sorted(set(runs[0].slates))[0]], inputs=(*sims, images),
                        overwrite=overwrite)
    theta = ", ".join(f"{v:.2f}" for v in result["logit"]["theta"])
    out_console.print(f"{result['sessions']} sessions; logit θ by position: {theta} -> {out / 'position_bias.png'}")


@app.command("export-clicks", rich_help_panel="Experiments")
@fail_cleanly
def export_clicks(
    sim: Annotated[Path, typer.Argument(help="a run: a simulate --out folder (or a simulation Parquet file)")],
    format: Annotated[ClickLogFormat, typer.Option("--format", help="yandex (PyClick's log format) or clax "
                                                                    "(clax-models' Parquet arrays)")],
    out: Annotated[Path, typer.Option(help="folder for the log: clicks.tsv with ids.csv and examination.tsv "
                                           "(yandex), or clicks.parquet (clax)")],
    images: Annotated[Optional[Path], typer.Option(help="the run's slates [default: from its run.json]")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help=OVERWRITE_HELP)] = False,
) -> None:
    """Simulated sessions as click logs, with the model's per-position attention as examination."""
    from ..experiments.click_logs import export_clicks as write
    from ..experiments.runs import read_run

    check_output(out, "export-clicks", inputs=(sim, images), overwrite=overwrite)
    result = write(read_run(sim), out, format.value, images, overwrite=overwrite)
    out_console.print(f"{result['sessions']} sessions over {result['queries']} slates ({result['urls']} items) "
                      f"-> {result['out']}")
