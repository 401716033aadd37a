"""`score` and `show`: a simulation against observed gaze and clicks, as metrics and as pictures."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..config import MetricKernel, Signal, Split, TieRule
from ..outputs import check_output, owned_output
from .common import OVERWRITE_HELP, app, fail_cleanly, out_console
from .display import print_baseline_tests, print_comparison, print_score


@app.command(rich_help_panel="Analysis")
@fail_cleanly
def score(
    sim: Annotated[Path, typer.Option(help="a `fixate-rt simulate --out` folder (or its simulations/ folder, or a "
                                           "Parquet file)")],
    sessions: Annotated[Path, typer.Option(help="sessions.parquet with the observed dwell and clicks")],
    out: Annotated[Path, typer.Option(help="Output folder for metrics.json and per_sample.csv")],
    signal: Annotated[Signal, typer.Option(help="Gaze target from fixation or cursor dwell")] = Signal.fixation,
    tau: Annotated[float, typer.Option(help="Gaze-target temperature τ (1 = dwell shares)")] = 1.0,
    split: Annotated[Split, typer.Option(help="Score only this split")] = Split.all,
    compare: Annotated[Optional[Path], typer.Option(help="Another score folder: per-user paired Wilcoxon")] = None,
    baselines: Annotated[Optional[str], typer.Option(
        help="Comma-separated: uniform, population (mean train gaze and click share per slot), user (that user's "
             "train means); scored on the same rows, with per-user paired tests of the model against each "
             "(Holm-corrected; primary endpoints KL and CSH@1). Fitted ones need --split test or val")] = None,
    kernel: Annotated[MetricKernel, typer.Option(help="Metric implementation (auto picks the fastest available)")]
    = MetricKernel.auto,
    tie_rule: Annotated[TieRule, typer.Option(help="Ranking ties: expected value under random tie-breaking (average), "
                                                   "lower slot first, or the reference code's higher slot first")]
    = TieRule.average,
    topk_js_k: Annotated[int, typer.Option(min=1, max=64, help="k of top-k JS (the reference: 5 RecGaze, 3 AdSERP)")] = 5,
    overwrite: Annotated[bool, typer.Option("--overwrite", help=OVERWRITE_HELP)] = False,
    threads: Annotated[Optional[int], typer.Option(min=1, max=1024, help="Compute threads [default: the CPUs this "
                                                                     "process may use (affinity, cgroup quota)]")] = None,
) -> None:
    """Attention alignment (KL, JS, cosine, CSH@k, TGO@k, top-k JS, CC, SIM, NSS) and click metrics."""
    check_output(out, "score", inputs=(sim, sessions, compare), overwrite=overwrite)
    from ..threads import apply_threads

    apply_threads(threads)
    from ..io import write_json
    from ..score import compare as compare_runs
    from ..score import read_per_sample
    from ..score import score as run_score

    if compare is not None:
        read_per_sample(compare)  # checked before anything is written
    payload = run_score(sim, sessions, out, signal=signal.value, tau=tau, split=split.value, kernel=kernel.value,
                        tie_rule=tie_rule, topk_js_k=topk_js_k, overwrite=overwrite, inputs=(compare,),
                        baselines=baselines or ())
    print_score(payload, signal.value, split.value, out)
    if "baselines" in payload:
        print_baseline_tests(payload["baselines"])
    if compare is not None:
        tests = compare_runs(out, compare)
        payload["compare"] = {"other": str(compare), "wilcoxon": tests}
        write_json(out / "metrics.json", payload)
        print_comparison(tests, out, compare)
    extra = f"  baselines per sample: {out / 'per_sample_baselines.csv'}" if "baselines" in payload else ""
    out_console.print(f"metrics: {out / 'metrics.json'}  per sample: {out / 'per_sample.csv'}{extra}")


@app.command(rich_help_panel="Analysis")
@fail_cleanly
def show(
    sim: Annotated[Path, typer.Option(help="a `fixate-rt simulate --out` folder (or a simulation Parquet file)")],
    sessions: Annotated[Path, typer.Option(help="sessions.parquet")],
    images: Annotated[Path, typer.Option(help="slates folder")],
    out: Annotated[Path, typer.Option(help="Output folder for the PNGs")],
    user: Annotated[Optional[str], typer.Option(help="Only this user")] = None,
    slate: Annotated[Optional[str], typer.Option(help="Only this slate")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many PNGs")] = 12,
    signal: Annotated[Signal, typer.Option(help="fixation or cursor dwell on the right")] = Signal.fixation,
    tau: Annotated[float, typer.Option(help="Gaze-target temperature")] = 1.0,
    label: Annotated[Optional[str], typer.Option(help="name of the model's panel, e.g. backbone or FixATE "
                                                      "[default: the run folder's name]")] = None,
    scale: Annotated[str, typer.Option(help="shared: one √ colour scale for both panels; per-panel: each its "
                                            "own")] = "shared",
    overwrite: Annotated[bool, typer.Option("--overwrite", help=OVERWRITE_HELP)] = False,
) -> None:
    """PNG per (user, slate): model slot relevance beside the fixation distribution; the observed click, the
    simulated clicks and the model's top slot marked."""
    check_output(out, "show", inputs=(sim, sessions, images), overwrite=overwrite)
    from ..data.join import load_inputs
    from ..errors import ValidationError, where
    from ..run.layout import read_simulation
    from ..score import simulated_pairs

    if tau <= 0:
        raise ValidationError(f"--tau must be > 0, got {tau}")
    if scale not in ("shared", "per-panel"):
        raise ValidationError(f"--scale must be shared or per-panel, got '{scale}'")
    table, files = read_simulation(sim)  # read once: the checked distributions and the drawn clicks
    sims = simulated_pairs(table, files.rows)
    clicks = simulated_clicks(table)
    run_label = label if label is not None else (Path(sim).name if Path(sim).is_dir() else Path(sim).parent.name)
    data = load_inputs(images=images, sessions=sessions, signal=signal.value)
    for name, wanted, known in (("--user", user, data.sessions.user_ids), ("--slate", slate, data.sessions.slate_ids)):
        if wanted is not None and wanted not in known:
            raise ValidationError(f"{name} '{wanted}': no session in {sessions} has it")
    chosen = []
    for i, (u, s) in enumerate(zip(data.sessions.user_ids, data.sessions.slate_ids)):
        if (user is not None and u != user) or (slate is not None and s != slate) or (u, s) not in sims:
            continue
        if sims[(u, s)].relevance.size != data.slates[s].layout.n_slots:  # the same check as `score`, before drawing
            raise ValidationError(f"{where(sim)}: ({u}, {s}) has {sims[(u, s)].relevance.size} slots but slate "
                                  f"'{s}' in {images} has {data.slates[s].layout.n_slots}")
        if data.dwell[i].sum() > 0:
            chosen.append(i)
    chosen = chosen[:limit]
    if not chosen:
        raise ValidationError(f"{sessions}: no session with a simulation matches user={user} slate={slate}")
    with owned_output(out, "show", inputs=(sim, sessions, images), overwrite=overwrite) as folder:
        _draw(folder, chosen, data, sims, signal, tau, clicks, run_label, scale)


def simulated_clicks(table) -> dict[tuple[str, str], list[int]]:
    """Every sample's drawn click per (user, slate) of a simulation's rows."""
    out: dict[tuple[str, str], list[int]] = {}
    for u, s, k in zip(*(table.column(c).to_pylist() for c in ("user_id", "slate_id", "click_slot"))):
        out.setdefault((u, s), []).append(int(k))
    return out


def _draw(out: Path, chosen: list[int], data, sims, signal, tau: float, clicks: dict, run_label: str,
          scale: str) -> None:
    from ..data.text import file_safe
    from ..viz import render_pair

    for i in chosen:
        u, s = data.sessions.user_ids[i], data.sessions.slate_ids[i]
        path = out / f"{file_safe(u)}__{file_safe(s)}__{signal.value}.png"  # ids are data: encoded, never a path
        scores = render_pair(path, data.slates[s], u, sims[(u, s)].relevance, sims[(u, s)].p_click, data.dwell[i],
                             int(data.sessions.clicked_slot[i]), tau, signal.value, simulated_clicks=clicks.get((u, s)),
                             run_label=run_label, scale=scale)
        print(f"{path}  KL {scores['kl']:.3f}  CSH@1 {scores['csh@1']:.0f}  TGO@3 {scores['tgo@3']:.2f}")


@app.command("profile-match", rich_help_panel="Analysis")
@fail_cleanly
def profile_match(
    data: Annotated[Path, typer.Option(help="a `fixate-rt synth` folder (its truth.json knows the genres)")],
    sim: Annotated[Path, typer.Option(help="a `fixate-rt simulate --out` folder on that data")],
) -> None:
    """Do simulated clicks follow the profiles? Share of clicks on the user's top-genre posters vs chance."""
    from ..experiments.profile_match import profile_match as measure

    res = measure(data, sim)
    top, pref = res["top_genre"], res["preferred_genres"]
    out_console.print(f"clicks on the profile's top genre: {top['click_share']:.1%} of {res['rows']} simulated clicks "
                      f"(chance {top['chance']:.1%}: a click uniform over the slate; mean p_click on those posters "
                      f"{top['mean_p_click']:.1%}); on a preferred genre: {pref['click_share']:.1%} "
                      f"(chance {pref['chance']:.1%})")
