"""`fixate-rt train`: every seed, test evaluation, and the output folder (docs/method.md §5, §6)."""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .. import metrics as M
from ..backbones import load
from ..backends.describe import describe_model
from ..errors import ValidationError
from ..io import atomic_path, write_json
from ..locking import interruptible
from ..outputs import check_output, owned_output
from ..prompts import SoftPromptBank, config_hash
from ..threads import apply_threads
from .config import TrainConfig
from .data import SlateCache, load_corpus
from .evaluate import COLUMNS, evaluate_columns
from .loop import SeedResult, train_seed
from .step import Pipelines

REPORTED = ("kl", "js", "cosine", "csh@1", "csh@3", "tgo@3", "logloss", "auc", "correct")


def _write_rows(path: Path, rows: list[dict], samples) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["user_id", "slate_id", *M.METRIC_NAMES])
        for s, r in zip(samples, rows):
            writer.writerow([s.user_id, s.slate_id, *(f"{r[n]:.8g}" for n in M.METRIC_NAMES)])


def _wilcoxon(a_rows, b_rows, users) -> dict:
    return {n: M.paired_wilcoxon(M.per_user_means(a_rows, users, n), M.per_user_means(b_rows, users, n))
            for n in REPORTED}


def _pooled_wilcoxon(per_seed: list[tuple[dict[str, list[dict]], list[str]]]) -> dict:
    """Pool seeds as docs/method.md §8 item 8 suggests: average each user's per-seed means, then one test.

    ``per_seed``: (columns, the test rows' user ids) per seed; users missing from a seed's test split (the
    per-seed split) are left out, so every pooled user has a mean from every seed."""
    out = {}
    for n in REPORTED:
        def pooled(column, n=n):
            means = [M.per_user_means(cols[column], users, n) for cols, users in per_seed]
            common = set.intersection(*(set(m) for m in means))
            return {u: float(np.mean([m[u] for m in means])) for u in sorted(common)}

        out[n] = M.paired_wilcoxon(pooled("fixate_tf"), pooled("backbone_tf"))
    return out


def _held_out(corpus) -> tuple[list, list, str]:
    """(val, test, what the test rows are): with no test split the val split is tested; with neither, train
    (then the figures are not held out, and metrics.json says so)."""
    val, test = corpus.split("val"), corpus.split("test")
    if test:
        return val, test, "test"
    if val:
        return val, val, "val (no test split)"
    return val, corpus.split("train"), "train (no held-out sessions: not a generalisation figure)"


def learning_curve(path: Path, results: list[SeedResult], selection: str = "composite") -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, 2, figsize=(12.5, 3.8), dpi=100)
    for r in results:
        epochs = [h["epoch"] for h in r.history]
        if r.history and "train_loss" in r.history[0]:
            axes[0].plot(epochs, [h["train_loss"] for h in r.history], label=f"seed {r.seed} total")
            axes[0].plot(epochs, [h["train_attn"] for h in r.history], "--", label=f"seed {r.seed} attention")
        evals = [h for h in r.history if "val_score" in h]
        axes[1].plot([h["epoch"] for h in evals], [h["val_score"] for h in evals], "o-", label=f"seed {r.seed}")
        if r.best_epoch > 0:
            axes[1].axvline(r.best_epoch, color="grey", lw=0.6)
    axes[0].set(title="training loss", xlabel="epoch")
    axes[1].set(title=("validation composite" if selection == "composite" else "validation −JS")
                + " (TF, micro; higher is better)", xlabel="epoch")
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        if ax.get_legend_handles_labels()[0]:  # beside the axes, never over the curves
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


# Options a resumed run may change: where files are (their content is compared by digest), how it runs.
RESUME_MAY_CHANGE = frozenset({"resume", "overwrite", "device", "kernel", "threads", "sessions", "images", "users", "out",
                               "init_from"})


def _input_digests(cfg: TrainConfig, corpus) -> dict[str, str | None]:
    from ..backbones.builtins import builtin_folder
    from ..digests import model_digest, slates_digest, users_digest
    from ..io import sha256_file

    return {"users": users_digest(corpus.users), "slates": slates_digest(corpus.slates),
            "sessions": sha256_file(Path(cfg.sessions)), "model": model_digest(builtin_folder(cfg.model) or Path(cfg.model)),
            "init_from": sha256_file(Path(cfg.init_from)) if cfg.init_from is not None else None}


def check_output_folder(cfg: TrainConfig, digests: dict) -> None:
    """``--resume`` continues only the same run (every option that shapes it and every input's content equal);
    without it, a folder holding a previous run is refused rather than mixed with this one's files (unless
    ``--overwrite``: `fixate_rt.outputs` rules)."""
    out = Path(cfg.out)
    saved_path = out / "train_config.json"
    check_output(out, "train", inputs=train_inputs(cfg), overwrite=cfg.overwrite, resume=cfg.resume)
    if not cfg.resume:
        return
    if not saved_path.is_file():
        raise ValidationError(f"{out}: no training run to resume here (no train_config.json)")
    try:
        saved = json.loads(saved_path.read_bytes().decode("utf-8"))
        if not isinstance(saved, dict):
            raise ValueError("not an object")
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValidationError(f"{saved_path}: unreadable ({exc}); cannot resume") from None
    current = {**cfg.to_json(), "inputs_sha256": digests}
    for key, value in current.items():
        if key in RESUME_MAY_CHANGE:
            continue
        if key == "inputs_sha256":
            changed = [k for k, v in value.items() if (saved.get(key) or {}).get(k) != v]
            if changed:
                raise ValidationError(f"cannot resume {out}: the content of --{changed[0].replace('_', '-')} "
                                      "differs from the interrupted run")
        elif saved.get(key) != value:
            raise ValidationError(f"cannot resume {out}: '{key}' is {value!r} now but {saved.get(key)!r} in the "
                                  "interrupted run")


def train_inputs(cfg: TrainConfig) -> tuple[Path | None, ...]:
    """The paths a training run reads (its --out may neither be nor contain one of them)."""
    model = Path(str(cfg.model))
    return (cfg.sessions, cfg.images, cfg.users, cfg.init_from, model if model.exists() else None)


def optimiser_steps(cfg: TrainConfig, n_train: int) -> int:
    """Optimiser steps of one seed: ``epochs`` × ⌈⌈n_train / batch_size⌉ / grad_accum⌉ (the loop's count)."""
    return cfg.epochs * math.ceil(math.ceil(n_train / cfg.batch_size) / cfg.grad_accum)


def fit_warmup(cfg: TrainConfig, n_train: dict[int, int]) -> tuple[TrainConfig, str | None]:
    """λ is 0 for W steps and reaches λ* at 2W. A run shorter than 2W would train the attention loss little or
    not at all (``--epochs 2`` on the demo data is 18 steps a seed, under the default 30-step warm-up): the default
    warm-up is then cut to a quarter of the shortest seed's steps; one given as an option or by a preset (the
    paper's protocol) is kept. Returns the config to run and what to say on stderr about it (None: nothing); the
    protocol records what was applied and why."""
    steps = min(optimiser_steps(cfg, n) for n in n_train.values())
    if not cfg.uses_choice or cfg.warmup_steps <= 0 or 2 * cfg.warmup_steps <= steps:
        return cfg, None
    source = cfg.preset_sources.get("warmup_steps", "option")
    if source != "default":
        acts = "never acts" if cfg.warmup_steps >= steps else "acts only at the end"
        return cfg, (f"warm-up {cfg.warmup_steps} steps ({source}): λ reaches λ* only at step "
                     f"{2 * cfg.warmup_steps}, but a seed runs {steps} optimiser steps, so the attention loss {acts}; "
                     "kept as given")
    fitted = max(1, steps // 4)
    return (dataclasses.replace(cfg, warmup_steps=fitted, preset_sources={
        **cfg.preset_sources, "warmup_steps": f"fitted to {steps} steps (default was {cfg.warmup_steps})"}),
            f"warm-up cut from {cfg.warmup_steps} (default) to {fitted} steps: a seed runs {steps} optimiser steps, "
            "and λ reaches λ* at twice the warm-up (set --warmup-steps to choose)")


def train(cfg: TrainConfig, *, on_step: Callable[[dict], None] | None = None,
          on_epoch_end: Callable[[int], None] | None = None, on_start: Callable[[int], None] | None = None) -> dict:
    """Train every seed, evaluate on the test split, write the output folder. Returns metrics.json."""
    t0 = time.perf_counter()
    corpus = load_corpus(cfg)
    described = describe_model(cfg.model, "torch")
    described.check_labels(corpus.slates, cfg.images)
    if cfg.init_from is not None:  # the bank to start from must fit this run, checked before the model loads
        bank = SoftPromptBank.load(cfg.init_from)
        if (bank.n_basis, bank.n_tokens) != (cfg.basis, cfg.soft_tokens):
            raise ValidationError(f"{cfg.init_from}: the bank has K={bank.n_basis} bases of N={bank.n_tokens} tokens "
                                  f"but this run asks for --basis {cfg.basis} --soft-tokens {cfg.soft_tokens}")
        described.check_bank(bank, cfg.init_from)
        bank.check_template(cfg.template, cfg.init_from)
    splits = {seed: corpus.resplit(seed) if cfg.split_mode == "per-seed" else corpus for seed in cfg.seeds}
    cfg, warmup_note = fit_warmup(cfg, {seed: len(c.split("train")) for seed, c in splits.items()})
    for seed, seed_corpus in splits.items():
        if not seed_corpus.split("train"):
            raise ValidationError(f"{cfg.sessions}: seed {seed} has no train-split session with {cfg.signal} mass")
    digests = _input_digests(cfg, corpus)
    check_output_folder(cfg, digests)
    thread_info = apply_threads(cfg.threads)
    backbone = load(cfg.model, device=cfg.device)
    backbone.use_template(cfg.template)
    tiles = backbone.set_max_tiles(cfg.max_tiles) if cfg.max_tiles is not None else None
    pipes = Pipelines.build(backbone, SlateCache(backbone, corpus.slates), cfg)  # an impossible op plan: no folder
    kept = f"the checkpoints of finished epochs are kept in {Path(cfg.out) / 'checkpoints'}; rerun the same command " \
           "with --resume"
    # created after the model loaded (a checkpoint that fails leaves no folder); the lock is held before an
    # --overwrite deletes the previous run's files, so a run in progress there is never touched
    with owned_output(cfg.out, "train", inputs=train_inputs(cfg), overwrite=cfg.overwrite, resume=cfg.resume) as out, \
            interruptible(lambda: kept):
        described.announce_weights()  # notes only once nothing can refuse the run: an error stays one line
        if warmup_note:
            logging.getLogger("fixate_rt").warning(warmup_note)
        profiles = dict(zip(corpus.users.ids, corpus.users.profiles))
        if on_start is not None:
            on_start(sum(optimiser_steps(cfg, len(c.split("train"))) for c in splits.values()))
        write_json(out / "train_config.json", {**cfg.to_json(), "config_hash": config_hash(cfg.to_json()),
                                               "inputs_sha256": digests})
        results, per_seed_cols, seeds_json = [], [], {}
        for seed in cfg.seeds:
            seed_corpus = splits[seed]
            train_s = seed_corpus.split("train")
            val_s, test_s, tested = _held_out(seed_corpus)
            if not train_s:
                raise ValidationError(f"{cfg.sessions}: seed {seed} has no train-split session with {cfg.signal} mass")
            res = train_seed(pipes, train_s, val_s, cfg, seed, corpus.users.ids, profiles,
                             out / "checkpoints" / f"seed{seed}", on_step=on_step, on_epoch_end=on_epoch_end)
            cols = evaluate_columns(pipes, test_s, lambda u, p=res.params: p.mix(u)[0], cfg, profiles)
            for column, rows in cols.items():
                _write_rows(out / f"per_sample_seed{seed}_{column}.csv", rows, test_s)
            test_users = [s.user_id for s in test_s]
            seeds_json[str(seed)] = {
                "best_epoch": res.best_epoch, "best_val_score": res.best_val, "selection": cfg.selection,
                "stopped_early": res.stopped_early, "tested_on": tested,
                "samples": {"train": len(train_s), "val": len(val_s), "test": len(test_s)},
                "test": {c: M.aggregate(rows, test_users) for c, rows in cols.items()},
                "wilcoxon_fixate_tf_vs_backbone_tf": _wilcoxon(cols["fixate_tf"], cols["backbone_tf"], test_users),
                "history": res.history,
            }
            results.append(res)
            per_seed_cols.append((cols, test_users))
        best = max(results, key=lambda r: (r.best_val if r.best_val is not None else -np.inf))
        bank = SoftPromptBank(best.params.basis.detach().cpu().float(), best.params.alpha.detach().cpu().float(),
                              corpus.users.ids, backbone.name, config_hash(cfg.to_json()), cfg.template)
        bank.save(out / "prompts.safetensors")
        summary = {}
        for column in COLUMNS:
            micro = [seeds_json[str(s)]["test"][column]["micro"] for s in cfg.seeds]
            summary[column] = {n: {"mean": float(np.mean([m[n] for m in micro])), "std": float(np.std([m[n] for m in micro]))}
                               for n in M.METRIC_NAMES}
        first = seeds_json[str(cfg.seeds[0])]
        payload = {
            "command": "train", "threads": thread_info, "model": backbone.name, "model_weights": described.weights,
            "probe": cfg.probe, "seeds": list(cfg.seeds),
            "protocol": {**cfg.protocol(), "max_tiles_applied": tiles},
            "samples": {**first["samples"], "dropped_no_signal": corpus.dropped_no_mass},
            "test_split": first["tested_on"],
            "prompt_bank_seed": best.seed,
            "implementations": {"training": pipes.train.plan.record(), "evaluation": pipes.evaluate.plan.record()},
            "summary_micro_mean_std": summary,
            "wilcoxon_pooled_over_seeds": _pooled_wilcoxon(per_seed_cols),
            "per_seed": seeds_json,
            "seconds": round(time.perf_counter() - t0, 2),
        }
        write_json(out / "metrics.json", payload)
        learning_curve(out / "learning_curve.png", results, cfg.selection)
        return payload
