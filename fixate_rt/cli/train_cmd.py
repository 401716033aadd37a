"""`train`: fit per-user soft prompts with FixATE's joint loss and evaluate them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..config import (
    DEFAULT_MODEL,
    MODEL_HELP,
    AttnLoss,
    Kernel,
    Preset,
    Probe,
    Selection,
    Signal,
    SplitMode,
    Template,
    TieRule,
    parse_device,
)
from .common import app, fail_cleanly, option_panels, seeds_option
from .display import print_protocol, print_training
from .progress import progress


@app.command(rich_help_panel="Training")
@option_panels({
    "Data": ("sessions", "images", "users", "out", "signal", "tau", "split_mode"),
    "Model and probe": ("model", "probe", "template", "max_tiles", "device", "kernel"),
    "Prompts": ("basis", "soft_tokens", "freeze_basis", "init_from"),
    "Optimisation": ("epochs", "batch_size", "grad_accum", "lr_basis", "lr_alpha", "lambda_attn", "warmup_steps",
                     "choice_weight", "beta", "gamma", "attn_loss"),
    "Evaluation and selection": ("preset", "eval_every", "patience", "seeds", "selection", "tie_rule", "topk_js_k"),
    "Ablations": ("random_prompt", "no_user_alpha", "no_ntp"),
    "Run": ("resume", "overwrite", "threads"),
})
@fail_cleanly
def train(
    sessions: Annotated[Path, typer.Option(help="sessions.parquet (train/val/test splits)")],
    images: Annotated[Path, typer.Option(help="slates folder")],
    users: Annotated[Path, typer.Option(help="users.parquet")],
    out: Annotated[Path, typer.Option(help="Output folder (prompts.safetensors, metrics.json, ...)")],
    model: Annotated[str, typer.Option(help=MODEL_HELP)] = DEFAULT_MODEL,
    probe: Annotated[Probe, typer.Option(help="Probing operator for the alignment loss")] = Probe.rollout,
    signal: Annotated[Signal, typer.Option(help="Gaze target from fixation or cursor dwell; intersect: fixation, "
                                                "only sessions that also have cursor dwell")] = Signal.fixation,
    tau: Annotated[float, typer.Option(help="Gaze-target temperature")] = 1.0,
    basis: Annotated[int, typer.Option(min=1, help="K shared basis prompts")] = 8,
    soft_tokens: Annotated[int, typer.Option(min=1, help="N soft tokens per prompt")] = 16,
    epochs: Annotated[int, typer.Option(min=1, help="passes over the train sessions (per seed)")] = 30,
    batch_size: Annotated[int, typer.Option(min=1, help="sessions per optimiser micro-batch")] = 4,
    grad_accum: Annotated[int, typer.Option(min=1, help="micro-batches per optimiser step")] = 2,
    lr_basis: Annotated[float, typer.Option(help="learning rate of the shared basis prompts")] = 1e-3,
    lr_alpha: Annotated[float, typer.Option(help="learning rate of the per-user mixing weights alpha")] = 1e-3,
    lambda_attn: Annotated[float, typer.Option(help="λ* of the attention loss")] = 0.5,
    warmup_steps: Annotated[Optional[int], typer.Option(min=0, help="λ is 0 for W steps, reaches λ* at 2W "
                                                                     "[default: preset's, else 30]")] = None,
    choice_weight: Annotated[float, typer.Option(help="weight of the next-token (choice) loss")] = 0.5,
    beta: Annotated[float, typer.Option(help="weight of mean ‖alpha‖²")] = 1e-3,
    gamma: Annotated[float, typer.Option(help="importance-weight power γ")] = 2.0,
    attn_loss: Annotated[AttnLoss, typer.Option(help="attention loss")] = AttnLoss.weighted_full_kl,
    eval_every: Annotated[int, typer.Option(min=1, help="validate every this many epochs")] = 2,
    patience: Annotated[Optional[int], typer.Option(min=1, help="early stopping after this many evaluations "
                                                                 "[default: preset's, else 5]")] = None,
    seeds: Annotated[Optional[tuple], typer.Option(
        parser=seeds_option, metavar="S1,S2,...",
        help="comma-separated seeds [default: the preset's five, else 42,123,456,789,2024]")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N")] = "auto",
    kernel: Annotated[Kernel, typer.Option(help="evaluation op implementation (training always uses torch)")] = Kernel.auto,
    threads: Annotated[Optional[int], typer.Option(min=1, max=1024, help="Compute threads [default: the CPUs this "
                                                                     "process may use (affinity, cgroup quota)]")] = None,
    freeze_basis: Annotated[bool, typer.Option("--freeze-basis", help="cold start: train alpha only (needs "
                                                                      "--init-from)")] = False,
    init_from: Annotated[Optional[Path], typer.Option(help="prompts.safetensors to start from")] = None,
    random_prompt: Annotated[bool, typer.Option("--random-prompt", help="ablation: untrained random soft prompt")] = False,
    no_user_alpha: Annotated[bool, typer.Option("--no-user-alpha", help="ablation: uniform mixture (one shared prompt)")] = False,
    no_ntp: Annotated[bool, typer.Option("--no-ntp", help="ablation: no next-token loss (λ* from step 0)")] = False,
    resume: Annotated[bool, typer.Option("--resume", help="continue an interrupted run from its checkpoints")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="replace a previous run in --out (its checkpoints, "
                                                                "bank, metrics and CSVs are deleted first)")] = False,
    preset: Annotated[Preset, typer.Option(help="the paper's protocol per data set (top-k JS k, warm-up, selection, "
                                                "early stopping, InternVL tiles, split, seeds, template); options "
                                                "given explicitly win")] = Preset.none,
    template: Annotated[Optional[Template], typer.Option(help="prompt template [default: preset's, else "
                                                              "fixate-rt]")] = None,
    tie_rule: Annotated[TieRule, typer.Option(help="ranking ties in the metrics (docs/metrics.md)")] = TieRule.average,
    topk_js_k: Annotated[Optional[int], typer.Option(min=1, max=64, help="k of top-k JS (also in the composite) "
                                                                          "[default: preset's, else 5]")] = None,
    selection: Annotated[Optional[Selection], typer.Option(help="checkpoint selection on val: composite or js (lowest "
                                                          "micro JS) [default: preset's, else composite]")] = None,
    max_tiles: Annotated[Optional[int], typer.Option(min=1, help="InternVL tiles per slate [default: preset's, "
                                                                 "else the model's]")] = None,
    split_mode: Annotated[Optional[SplitMode], typer.Option(help="data: the sessions' split column; per-seed: re-drawn "
                                                           "per seed and user [default: preset's, else data]")] = None,
) -> None:
    """Fit per-user soft prompts with FixATE's joint alignment + next-token loss; evaluate 4-way on test."""
    from ..training import TrainConfig
    from ..training import train as run_train

    seed_list = seeds
    cfg = TrainConfig.from_preset(
                      preset, template=template.value if template is not None else None, tie_rule=tie_rule.value,
                      topk_js_k=topk_js_k, selection=selection.value if selection is not None else None,
                      max_tiles=max_tiles, split_mode=split_mode.value if split_mode is not None else None,
                      sessions=sessions, images=images, users=users, out=out, model=model, probe=probe.value,
                      signal=signal.value, tau=tau, basis=basis, soft_tokens=soft_tokens, epochs=epochs,
                      batch_size=batch_size, grad_accum=grad_accum, lr_basis=lr_basis, lr_alpha=lr_alpha,
                      lambda_attn=lambda_attn, warmup_steps=warmup_steps, choice_weight=choice_weight, beta=beta,
                      gamma=gamma, attn_loss=attn_loss.value, eval_every=eval_every, patience=patience,
                      seeds=seed_list, device=parse_device(device), kernel=kernel.value, threads=threads,
                      freeze_basis=freeze_basis,
                      init_from=init_from,
                      random_prompt=random_prompt, no_user_alpha=no_user_alpha, no_ntp=no_ntp, resume=resume,
                      overwrite=overwrite)
    print_protocol(cfg)
    with progress("training", "steps") as bar:
        payload = run_train(cfg, on_start=bar.total, on_step=lambda r: (bar.describe(
            f"seed {r['seed']} epoch {r['epoch'] + 1} loss {r['loss']:.4f} λ {r['lambda']:.2f}"), bar.advance(1)))
    print_training(payload, out)
