"""The ``fixate-rt`` command line (Typer). Each command validates, then calls the same API as Python users.

Every `FixateError` becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from enum import Enum
from functools import wraps
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .config import Device, Kernel, PoolMode, Probe, Signal, SimulateConfig, Split
from .errors import FixateError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="FixATE user simulation: synth, simulate, score, show, validate, info.")
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
    pool: Annotated[PoolMode, typer.Option(help="Token→slot pooling mode (auto: overlap for layouts with overlapping boxes, else exclusive)")] = PoolMode.auto,
    backend: Annotated[str, typer.Option(help="torch (HF model), or onnx / export / torchscript (an export folder "
                                              "as --model)")] = "torch",
    shard_pairs: Annotated[int, typer.Option(min=1, help="Pairs per output shard written during the run")] = 4096,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run in --out from its shards")] = False,
) -> None:
    """Simulate clicks of every user on every slate; report click probability and slot relevance."""
    from .simulate import simulate as run_simulation

    config = SimulateConfig(users=users, images=images, out=out, model=model, prompts=prompts, pairs=pairs,
                            samples=samples, seed=seed, batch_size=batch_size, device=device, probe=probe,
                            kernel=kernel, pool_mode=pool, backend=backend, shard_pairs=shard_pairs, resume=resume)
    t0 = time.perf_counter()
    with Progress(TextColumn("simulating"), BarColumn(), MofNCompleteColumn(), _PairsPerSecond(),
                  TimeElapsedColumn(), console=console, transient=True) as progress:
        task = progress.add_task("pairs", total=None)
        info = run_simulation(config, on_start=lambda n: progress.update(task, total=n),
                              on_pairs=lambda n: progress.advance(task, n))
    _print_summary(Path(out), info, time.perf_counter() - t0)


def _print_summary(out: Path, info: dict, seconds: float) -> None:
    summary = info["summary"]
    table = Table(title=f"{info['rows']} simulated clicks · {info['pairs']} pairs · {info['pairs_per_s']} pairs/s "
                        f"· device {info['device']}")
    for col in ("slot", "click share", "mean p_click", "mean slot relevance"):
        table.add_column(col, justify="right")
    for i, label in enumerate(summary["labels"]):
        table.add_row(label, f"{summary['click_share'][i]:.3f}", f"{summary['mean_p_click'][i]:.3f}",
                      f"{summary['mean_slot_relevance'][i]:.3f}")
    out_console = Console()
    out_console.print(table)
    out_console.print(f"results: {out / 'simulations.parquet'}\nrun info: {out / 'run.json'}\n"
                      f"{seconds:.1f} s in all; implementations: {info['implementations']}; "
                      f"cold-start pairs (no trained prompt): {info['cold_start_pairs']}")


@app.command()
@fail_cleanly
def score(
    sim: Annotated[Path, typer.Option(help="simulations.parquet from `fixate-rt simulate`")],
    sessions: Annotated[Path, typer.Option(help="sessions.parquet with the observed dwell and clicks")],
    out: Annotated[Path, typer.Option(help="Output folder for metrics.json and per_sample.csv")],
    signal: Annotated[Signal, typer.Option(help="Gaze target from fixation or cursor dwell")] = Signal.fixation,
    tau: Annotated[float, typer.Option(help="Gaze-target temperature τ (1 = dwell shares)")] = 1.0,
    split: Annotated[Split, typer.Option(help="Score only this split")] = Split.all,
    compare: Annotated[Optional[Path], typer.Option(help="Another score folder: per-user paired Wilcoxon")] = None,
    kernel: Annotated[Kernel, typer.Option(help="Metric implementation (auto picks the fastest available)")] = Kernel.auto,
) -> None:
    """Attention alignment (KL, JS, cosine, CSH@k, TGO@k, top-k JS, CC, SIM, NSS) and click metrics."""
    from . import metrics as M
    from .io import write_json
    from .score import compare as compare_runs
    from .score import score as run_score

    payload = run_score(sim, sessions, out, signal=signal.value, tau=tau, split=split.value, kernel=kernel.value)
    table = Table(title=f"{payload['n_samples']} samples · {payload['n_users']} users · signal {signal.value} · "
                        f"split {split.value}")
    for col in ("metric", "micro", "macro"):
        table.add_column(col, justify="right")
    for name in M.METRIC_NAMES:
        table.add_row(name + (" ↓" if name in M.LOWER_IS_BETTER else ""), f"{payload['micro'][name]:.4f}",
                      f"{payload['macro'][name]:.4f}")
    console_out = Console()
    console_out.print(table)
    if payload["skipped_no_mass"]["count"]:
        console_out.print(f"skipped {payload['skipped_no_mass']['count']} sessions with no {signal.value} mass")
    if payload["sessions_without_simulation"]:
        console_out.print(f"{payload['sessions_without_simulation']} sessions had no simulation and were not scored")
    if compare is not None:
        tests = compare_runs(out, compare)
        payload["compare"] = {"other": str(compare), "wilcoxon": tests}
        write_json(out / "metrics.json", payload)
        cmp = Table(title=f"paired Wilcoxon over users: this ({out}) vs {compare}")
        for col in ("metric", "n", "this", "other", "mean Δ", "p"):
            cmp.add_column(col, justify="right")
        for name, t in tests.items():
            cmp.add_row(name, str(t["n"]), f"{t['mean_a']:.4f}", f"{t['mean_b']:.4f}", f"{t['mean_diff']:+.4f}",
                        f"{t['p']:.3g}")
        console_out.print(cmp)
    console_out.print(f"metrics: {out / 'metrics.json'}  per sample: {out / 'per_sample.csv'}")


class AttnLoss(str, Enum):
    weighted_full_kl = "weighted_full_kl"
    plain_kl = "plain_kl"
    coarsened_kl = "coarsened_kl"
    weighted_kl_normalised = "weighted_kl_normalised"


@app.command()
@fail_cleanly
def train(
    sessions: Annotated[Path, typer.Option(help="sessions.parquet (train/val/test splits)")],
    images: Annotated[Path, typer.Option(help="slates folder")],
    users: Annotated[Path, typer.Option(help="users.parquet")],
    out: Annotated[Path, typer.Option(help="Output folder (prompts.safetensors, metrics.json, ...)")],
    model: Annotated[str, typer.Option(help="Local checkpoint folder or an embedded model name")] = "tiny-qwen3vl",
    probe: Annotated[Probe, typer.Option(help="Probing operator for the alignment loss")] = Probe.rollout,
    signal: Annotated[Signal, typer.Option(help="Gaze target from fixation or cursor dwell")] = Signal.fixation,
    tau: Annotated[float, typer.Option(help="Gaze-target temperature")] = 1.0,
    basis: Annotated[int, typer.Option(min=1, help="K shared basis prompts")] = 8,
    soft_tokens: Annotated[int, typer.Option(min=1, help="N soft tokens per prompt")] = 16,
    epochs: Annotated[int, typer.Option(min=1)] = 30,
    batch_size: Annotated[int, typer.Option(min=1)] = 4,
    grad_accum: Annotated[int, typer.Option(min=1)] = 2,
    lr_basis: Annotated[float, typer.Option()] = 1e-3,
    lr_alpha: Annotated[float, typer.Option()] = 1e-3,
    lambda_attn: Annotated[float, typer.Option(help="λ* of the attention loss")] = 0.5,
    warmup_steps: Annotated[int, typer.Option(help="λ is 0 for W steps, reaches λ* at 2W")] = 30,
    choice_weight: Annotated[float, typer.Option(help="weight of the next-token (choice) loss")] = 0.5,
    beta: Annotated[float, typer.Option(help="weight of mean ‖alpha‖²")] = 1e-3,
    gamma: Annotated[float, typer.Option(help="importance-weight power γ")] = 2.0,
    attn_loss: Annotated[AttnLoss, typer.Option(help="attention loss")] = AttnLoss.weighted_full_kl,
    eval_every: Annotated[int, typer.Option(min=1, help="validate every this many epochs")] = 2,
    patience: Annotated[int, typer.Option(min=1, help="early stopping after this many evaluations")] = 5,
    seeds: Annotated[str, typer.Option(help="comma-separated seeds")] = "42",
    device: Annotated[Device, typer.Option()] = Device.auto,
    kernel: Annotated[Kernel, typer.Option(help="evaluation op implementation (training always uses torch)")] = Kernel.auto,
    freeze_basis: Annotated[bool, typer.Option(help="cold start: train alpha only (needs --init-from)")] = False,
    init_from: Annotated[Optional[Path], typer.Option(help="prompts.safetensors to start from")] = None,
    random_prompt: Annotated[bool, typer.Option(help="ablation: untrained random soft prompt")] = False,
    no_user_alpha: Annotated[bool, typer.Option(help="ablation: uniform mixture (one shared prompt)")] = False,
    no_ntp: Annotated[bool, typer.Option(help="ablation: no next-token loss (λ* from step 0)")] = False,
    resume: Annotated[bool, typer.Option(help="continue an interrupted run from its checkpoints")] = False,
) -> None:
    """Fit per-user soft prompts with FixATE's joint alignment + next-token loss; evaluate 4-way on test."""
    from . import metrics as M
    from .errors import ValidationError
    from .training import TrainConfig
    from .training import train as run_train

    try:
        seed_list = tuple(int(s) for s in seeds.split(",") if s.strip())
    except ValueError:
        raise ValidationError(f"--seeds must be comma-separated integers, got '{seeds}'") from None
    cfg = TrainConfig(sessions=sessions, images=images, users=users, out=out, model=model, probe=probe.value,
                      signal=signal.value, tau=tau, basis=basis, soft_tokens=soft_tokens, epochs=epochs,
                      batch_size=batch_size, grad_accum=grad_accum, lr_basis=lr_basis, lr_alpha=lr_alpha,
                      lambda_attn=lambda_attn, warmup_steps=warmup_steps, choice_weight=choice_weight, beta=beta,
                      gamma=gamma, attn_loss=attn_loss.value, eval_every=eval_every, patience=patience,
                      seeds=seed_list, device=device.value, kernel=kernel.value, freeze_basis=freeze_basis,
                      init_from=init_from,
                      random_prompt=random_prompt, no_user_alpha=no_user_alpha, no_ntp=no_ntp, resume=resume)
    with Progress(TextColumn("training"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
                  TimeElapsedColumn(), console=console, transient=True) as progress:
        task = progress.add_task("", total=None)
        payload = run_train(cfg, on_start=lambda n: progress.update(task, total=n),
                            on_step=lambda r: progress.update(task, advance=1, description=(
                                f"seed {r['seed']} epoch {r['epoch'] + 1} loss {r['loss']:.4f} λ {r['lambda']:.2f}")))
    table = Table(title=f"test ({payload['test_split']}, {payload['samples']['test']} samples) · "
                        f"mean ± std over seeds {payload['seeds']}")
    table.add_column("metric")
    for column in ("backbone_tf", "fixate_tf", "backbone_fg", "fixate_fg"):
        table.add_column(column, justify="right")
    table.add_column("p (fixate vs backbone, TF)", justify="right")
    summary, tests = payload["summary_micro_mean_std"], payload["wilcoxon_pooled_over_seeds"]
    for name in ("kl", "js", "cosine", "csh@1", "csh@3", "tgo@3", "logloss", "auc", "correct"):
        cells = [f"{summary[c][name]['mean']:.4f} ± {summary[c][name]['std']:.4f}"
                 for c in ("backbone_tf", "fixate_tf", "backbone_fg", "fixate_fg")]
        table.add_row(name + (" ↓" if name in M.LOWER_IS_BETTER else ""), *cells, f"{tests[name]['p']:.3g}")
    Console().print(table)
    Console().print(f"prompt bank: {out / 'prompts.safetensors'} (seed {payload['prompt_bank_seed']}); "
                    f"metrics: {out / 'metrics.json'}; curve: {out / 'learning_curve.png'}")


@app.command()
@fail_cleanly
def show(
    sim: Annotated[Path, typer.Option(help="simulations.parquet")],
    sessions: Annotated[Path, typer.Option(help="sessions.parquet")],
    images: Annotated[Path, typer.Option(help="slates folder")],
    out: Annotated[Path, typer.Option(help="Output folder for the PNGs")],
    user: Annotated[Optional[str], typer.Option(help="Only this user")] = None,
    slate: Annotated[Optional[str], typer.Option(help="Only this slate")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many PNGs")] = 12,
    signal: Annotated[Signal, typer.Option(help="fixation or cursor dwell on the right")] = Signal.fixation,
    tau: Annotated[float, typer.Option(help="Gaze-target temperature")] = 1.0,
) -> None:
    """PNG per (user, slate): model slot relevance beside the fixation distribution, click and top slot marked."""
    from .data.slates import read_slates
    from .data.tables import read_sessions
    from .errors import ValidationError
    from .io import ensure_writable_dir
    from .score import read_simulations
    from .viz import render_pair

    sims = read_simulations(sim)
    data = read_sessions(sessions)
    slates = read_slates(images)
    dwell_lists = data.fixation_ms if signal is Signal.fixation else data.cursor_ms
    if dwell_lists is None:
        raise ValidationError(f"{sessions}, field 'cursor_ms': --signal cursor needs this column")
    chosen = [i for i, (u, s) in enumerate(zip(data.user_ids, data.slate_ids))
              if (user is None or u == user) and (slate is None or s == slate) and (u, s) in sims and s in slates
              and dwell_lists[i].sum() > 0][:limit]
    if not chosen:
        raise ValidationError(f"{sessions}: no session with a simulation matches user={user} slate={slate}")
    out = ensure_writable_dir(out)
    for i in chosen:
        u, s = data.user_ids[i], data.slate_ids[i]
        path = out / f"{u}__{s}.png"
        scores = render_pair(path, slates[s], u, sims[(u, s)].relevance, sims[(u, s)].p_click, dwell_lists[i],
                             int(data.clicked_slot[i]), tau)
        print(f"{path}  KL {scores['kl']:.3f}  CSH@1 {scores['csh@1']:.0f}  TGO@3 {scores['tgo@3']:.2f}")


@app.command()
@fail_cleanly
def profile(
    model: Annotated[str, typer.Option(help="Model name or folder (an export folder with --backend onnx)")] = "tiny-qwen3vl",
    batch_size: Annotated[int, typer.Option(min=1, help="Users per decoder batch")] = 8,
    pairs: Annotated[int, typer.Option(min=1, help="Pairs to time (after warm-up)")] = 64,
    backend: Annotated[str, typer.Option(help="torch or onnx")] = "torch",
    probe: Annotated[Probe, typer.Option(help="Probing operator")] = Probe.rollout,
    device: Annotated[Device, typer.Option()] = Device.auto,
    kernel: Annotated[Kernel, typer.Option()] = Kernel.auto,
    warmup: Annotated[int, typer.Option(min=0, help="Untimed batches first")] = 1,
    out: Annotated[Optional[Path], typer.Option(help="Write the JSON report here")] = None,
    trace: Annotated[Optional[Path], typer.Option(help="Write a PyTorch profiler (Chrome) trace here")] = None,
    peak_tflops: Annotated[Optional[float], typer.Option(help="Device peak for utilisation (else a known table)")] = None,
) -> None:
    """Latency per stage (p50/p90), pairs/s, peak memory and decoder FLOP utilisation."""
    from .io import write_json
    from .profile import STAGES, run_profile

    report = run_profile(model, batch_size=batch_size, pairs=pairs, backend=backend, probe_name=probe.value,
                         device=device.value, warmup=warmup, trace=trace, peak_tflops=peak_tflops, kernel=kernel.value)
    table = Table(title=f"{report['model']} · {report['backend']} · {report['probe']} · {report['device']} · batch "
                        f"{report['batch_size']} · T={report['sequence_length']}")
    for col in ("stage", "p50 ms", "p90 ms"):
        table.add_column(col, justify="right")
    for stage in STAGES:
        table.add_row(stage, f"{report['stages_ms'][stage]['p50']:.2f}", f"{report['stages_ms'][stage]['p90']:.2f}")
    Console().print(table)
    mfu = f"{100 * report['mfu']:.1f} %" if report["mfu"] is not None else "n/a (unknown device peak)"
    tf = f"{report['decoder_tflops_achieved']:.3f}" if report["decoder_tflops_achieved"] is not None else "n/a"
    Console().print(f"{report['pairs_per_s']:.1f} pairs/s ({report['ms_per_pair']:.2f} ms per pair); peak memory "
                    f"{report['peak_memory_gib']:.3f} GiB ({report['peak_memory_kind']}); decoder {tf} TFLOP/s; MFU {mfu}")
    if out is not None:
        write_json(out, report)
        Console().print(f"report: {out}" + (f"; trace: {trace}" if trace else ""))


@app.command()
@fail_cleanly
def export(
    out: Annotated[Path, typer.Option(help="Output folder for the graphs, manifest.json and preprocessing files")],
    model: Annotated[str, typer.Option(help="Local checkpoint folder or an embedded model name")] = "tiny-qwen3vl",
    prompts: Annotated[Optional[Path], typer.Option(help="Prompt bank to ship with the export")] = None,
    format: Annotated[str, typer.Option("--format", help="onnx (ONNX Runtime), export (torch.export .pt2) or "
                                                          "torchscript (legacy .pt)")] = "onnx",
    image_size: Annotated[str, typer.Option(help="WxH of the slates the (fixed-grid) Qwen vision graph serves")] = "1100x619",
) -> None:
    """Export the frozen VLM (vision, embedding, decoder with in-graph rollout) and validate it against PyTorch."""
    import warnings

    from .errors import ValidationError

    try:
        w, h = (int(v) for v in image_size.lower().split("x"))
    except ValueError:
        raise ValidationError(f"--image-size must look like 1100x619, got '{image_size}'") from None
    from fixate_rt.exporters.export import export_model
    from fixate_rt.exporters.runtimes import check_format

    check_format(format)
    if format == "torchscript":
        print("note: TorchScript is deprecated upstream (legacy format); prefer --format export", file=sys.stderr)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        manifest = export_model(model, out, fmt=format, prompts=prompts, image_size=(w, h))
    for warning in caught:
        if "exceeds" in str(warning.message):
            print(f"warning: {warning.message}", file=sys.stderr)
    worst = max(manifest["validation"].values())
    print(f"exported {manifest['family']} as {format} to {out} (graphs: {', '.join(manifest['graphs'])}); "
          f"validated against PyTorch on fresh inputs: max |diff| {worst:.2e}")


@app.command("import-recgaze")
@fail_cleanly
def import_recgaze(
    records: Annotated[Path, typer.Argument(help="FixATE's fixate_dataset.jsonl")],
    images_root: Annotated[Path, typer.Option(help="folder that image_index_path is relative to")],
    out: Annotated[Path, typer.Option(help="output folder (users.parquet, slates/, sessions.parquet)")],
    user_features: Annotated[Optional[Path], typer.Option(help="RecGaze user_features.csv for profiles")] = None,
) -> None:
    """Convert FixATE-processed RecGaze records (+ lettered viewport images) into fixate-rt's formats."""
    from .data.recgaze import import_recgaze as run_import

    counts = run_import(records, images_root, out, user_features)
    print(f"imported {counts['records']} records: {counts['users']} users ({counts['profiles_found']} with a profile), "
          f"{counts['slates']} slates -> {out}")


@app.command("import-adserp")
@fail_cleanly
def import_adserp(
    data_dir: Annotated[Path, typer.Argument(help="AdSERP folder (fixation-data/, mouse-movement-data/, serps/, ...)")],
    out: Annotated[Path, typer.Option(help="output folder (users.parquet, slates/, sessions.parquet, import_report.json)")],
    seed: Annotated[int, typer.Option(help="seed of the per-user train/val/test split")] = 0,
    cache: Annotated[Optional[Path], typer.Option(help="organic-box cache folder [default: $FIXATE_RT_CACHE/adserp-organic]")] = None,
    stop_gap_ms: Annotated[float, typer.Option(help="a gap of at least this many ms between scroll events is a stop")] = 400.0,
    viewport_height: Annotated[int, typer.Option(min=100, help="viewport height in screenshot px (method.md: 922)")] = 922,
) -> None:
    """Turn AdSERP trials into slates (viewport at the last scroll stop before the click, labelled slots) and sessions."""
    from .data.adserp import import_adserp as run_import

    with Progress(transient=True, console=Console(stderr=True)) as bar:
        task = bar.add_task("importing trials", total=None)
        report = run_import(data_dir, out, seed=seed, cache_dir=cache, gap_ms=stop_gap_ms, viewport=(1280, viewport_height),
                            on_trial=lambda name: bar.update(task, advance=1, description=f"trial {name}"))
    table = Table(title=f"AdSERP import: {report['imported']} of {report['trials']} trials -> {out}")
    for col in ("trial", "status", "slots", "clicked", "by", "split / reason"):
        table.add_column(col)
    for e in report["per_trial"]:
        if e["status"] == "imported":
            table.add_row(e["trial"], e["status"], str(e["n_slots"]), f"{e['clicked_label']} ({e['clicked_kind']})",
                          e["click_resolved_by"], e["split"])
        else:
            table.add_row(e["trial"], e["status"], "", "", "", e["reason"])
    Console().print(table)
    c = report["organic_box_cache"]
    print(f"organic boxes: {c['hits']} from the cache, {c['misses']} laid out by Chromium ({c['dir']})")


@app.command()
@fail_cleanly
def validate(
    users: Annotated[Optional[Path], typer.Option(help="users.parquet to check")] = None,
    images: Annotated[Optional[Path], typer.Option(help="slates folder to check")] = None,
    sessions: Annotated[Optional[Path], typer.Option(help="sessions.parquet to check (against --images if given)")] = None,
    prompts: Annotated[Optional[Path], typer.Option(help="prompts.safetensors to check")] = None,
) -> None:
    """Check input files against the documented formats without running a model."""
    from .data.slates import read_slates
    from .data.tables import read_sessions, read_users
    from .errors import ValidationError
    from .prompts import SoftPromptBank

    if not any((users, images, sessions, prompts)):
        raise ValidationError("nothing to validate: pass --users, --images, --sessions and/or --prompts")
    report = []
    if users is not None:
        report.append(f"{users}: {len(read_users(users))} users")
    slates = read_slates(images) if images is not None else None
    if slates is not None:
        report.append(f"{images}: {len(slates)} slates")
    if sessions is not None:
        data = read_sessions(sessions)
        if slates is not None:
            for row, (sid, fix) in enumerate(zip(data.slate_ids, data.fixation_ms)):
                if sid not in slates:
                    raise ValidationError(f"{sessions}, row {row}, field 'slate_id': unknown slate '{sid}'")
                if fix.size != slates[sid].layout.n_slots:
                    raise ValidationError(f"{sessions}, row {row}, field 'fixation_ms': {fix.size} values but slate "
                                          f"'{sid}' has {slates[sid].layout.n_slots} slots")
        report.append(f"{sessions}: {len(data)} sessions")
    if prompts is not None:
        bank = SoftPromptBank.load(prompts)
        report.append(f"{prompts}: {len(bank.user_ids)} users, K={bank.n_basis}, N={bank.n_tokens}, D={bank.hidden_size}")
    for line in report:
        print(f"ok  {line}")


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
