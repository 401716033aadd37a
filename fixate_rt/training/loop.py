"""One seed of FixATE training: AdamW over (basis, alpha), λ warm-up, clipping, validation, early stopping."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .. import losses
from .. import metrics as M
from ..errors import FixateError
from . import checkpoint
from .config import TrainConfig
from .data import Sample, batches
from .evaluate import evaluate, selection_score
from .step import Pipelines, batch_loss, run_batch


class TrainingDiverged(FixateError):
    """The training loss became NaN or infinite."""


@dataclass
class PromptParams:
    """basis [K, N, D] and alpha [U, K] in fp32 on the training device (the master weights)."""

    basis: torch.nn.Parameter
    alpha: torch.nn.Parameter
    row: dict[str, int]

    def mix(self, user_ids: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(prompts [B, N, D], alpha rows [B, K]) for these users."""
        rows = self.alpha[torch.tensor([self.row[u] for u in user_ids], device=self.alpha.device)]
        return torch.einsum("bk,knd->bnd", torch.softmax(rows, -1), self.basis), rows


@dataclass
class SeedResult:
    seed: int
    params: PromptParams
    best_epoch: int
    best_val: float | None
    history: list[dict] = field(default_factory=list)
    stopped_early: bool = False


def init_params(cfg: TrainConfig, user_ids: tuple[str, ...], hidden: int, seed: int, device) -> PromptParams:
    gen = torch.Generator().manual_seed(seed)
    basis = torch.randn(cfg.basis, cfg.soft_tokens, hidden, generator=gen) * cfg.init_std
    alpha = torch.zeros(len(user_ids), cfg.basis)
    if cfg.init_from is not None:  # cold start: the trained basis, known users keep their alpha
        from ..prompts import SoftPromptBank

        bank = SoftPromptBank.load(cfg.init_from)
        bank.check_hidden_size(hidden, cfg.init_from)
        basis = bank.basis.float().clone()
        for i, uid in enumerate(user_ids):
            if not bank.is_cold(uid):
                alpha[i] = bank.alpha[bank.user_ids.index(uid)]
    basis = torch.nn.Parameter(basis.to(device), requires_grad=not (cfg.freeze_basis or cfg.random_prompt))
    alpha = torch.nn.Parameter(alpha.to(device), requires_grad=not (cfg.no_user_alpha or cfg.random_prompt))
    return PromptParams(basis, alpha, {u: i for i, u in enumerate(user_ids)})


def _optimizer(cfg: TrainConfig, p: PromptParams) -> torch.optim.Optimizer | None:
    groups = []
    if p.basis.requires_grad:
        groups.append({"params": [p.basis], "lr": cfg.lr_basis, "weight_decay": cfg.weight_decay})
    if p.alpha.requires_grad:
        groups.append({"params": [p.alpha], "lr": cfg.lr_alpha, "weight_decay": cfg.weight_decay})
    return torch.optim.AdamW(groups) if groups else None


def train_seed(pipes: Pipelines, train: list[Sample], val: list[Sample], cfg: TrainConfig, seed: int,
               user_ids: tuple[str, ...], profiles: dict[str, str], ckpt_dir: Path,
               on_step: Callable[[dict], None] | None = None,
               on_epoch_end: Callable[[int], None] | None = None) -> SeedResult:
    torch.manual_seed(seed)
    p = init_params(cfg, user_ids, pipes.backbone.hidden_size, seed, pipes.backbone.device)
    opt = _optimizer(cfg, p)
    step, start_epoch, best_val, best_epoch, stale, history = 0, 0, None, -1, 0, []
    best = (p.basis.detach().clone(), p.alpha.detach().clone())
    saved = checkpoint.load(ckpt_dir) if cfg.resume else None
    if saved is not None:
        tensors, state = saved
        with torch.no_grad():
            p.basis.copy_(tensors["basis"])
            p.alpha.copy_(tensors["alpha"])
        best = (tensors["best_basis"].to(p.basis.device), tensors["best_alpha"].to(p.alpha.device))
        if opt is not None:
            checkpoint.restore_optimizer(opt, tensors, state)
        step, start_epoch, best_val = state["step"], state["epochs_done"], state["best_val"]
        best_epoch, stale, history = state["best_epoch"], state["stale"], state["history"]
        if state["status"] == "done":
            start_epoch = cfg.epochs
    stopped = saved is not None and saved[1].get("stopped_early", False)
    if opt is None:  # random soft prompt: nothing is trained (ablation "Rand. SP")
        start_epoch = cfg.epochs
    for epoch in range(start_epoch, cfg.epochs):
        order = np.random.default_rng([seed, epoch]).permutation(len(train))  # resumable data order
        parts_sum: dict[str, float] = {}
        micro = batches(train, cfg.batch_size, order)
        for i, batch in enumerate(micro):
            prompts, alpha_rows = p.mix([s.user_id for s in batch])
            out = run_batch(pipes.train, pipes.cache, batch, prompts, teacher_forced=True, profiles=profiles)
            lam = losses.lambda_schedule(step, cfg.lambda_attn, cfg.warmup_steps, cfg.uses_choice)
            loss, parts = batch_loss(out, batch, alpha_rows, cfg, lam)
            if not torch.isfinite(loss):  # stop before a NaN reaches the prompts (and then the saved bank)
                raise TrainingDiverged(f"training stopped at seed {seed}, epoch {epoch + 1}, batch {i + 1}: the loss is "
                                       f"non-finite ({', '.join(f'{k}={v:.4g}' for k, v in parts.items())}); lower "
                                       "--lr-basis/--lr-alpha or check the inputs")
            (loss / cfg.grad_accum).backward()
            for k, v in parts.items():
                parts_sum[k] = parts_sum.get(k, 0.0) + v / len(micro)
            if (i + 1) % cfg.grad_accum == 0 or i + 1 == len(micro):
                if p.basis.requires_grad:
                    torch.nn.utils.clip_grad_norm_([p.basis], cfg.clip_basis)
                if p.alpha.requires_grad:
                    torch.nn.utils.clip_grad_norm_([p.alpha], cfg.clip_alpha)
                opt.step()
                opt.zero_grad(set_to_none=True)
                step += 1
                if on_step is not None:
                    on_step({"seed": seed, "epoch": epoch, "step": step, "lambda": lam, **parts})
        record = {"epoch": epoch + 1, "step": step, **{f"train_{k}": round(v, 6) for k, v in parts_sum.items()}}
        if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs:
            if val:
                rows = evaluate(pipes, val, lambda u: p.mix(u)[0], cfg, teacher_forced=True, profiles=profiles)
                micro_val = M.aggregate(rows, [s.user_id for s in val])["micro"]
                score = selection_score(micro_val, cfg.selection)
                record.update(val_score=round(score, 6), val_kl=round(micro_val["kl"], 6),
                              val_js=round(micro_val["js"], 6), val_csh1=round(micro_val["csh@1"], 6))
                if best_val is None or score > best_val:
                    best_val, best_epoch, stale = score, epoch + 1, 0
                    best = (p.basis.detach().clone(), p.alpha.detach().clone())
                else:
                    stale += 1
            else:  # no validation split: the last state is the selected one
                best_epoch, best = epoch + 1, (p.basis.detach().clone(), p.alpha.detach().clone())
            history.append(record)
            stopped = bool(val) and cfg.patience is not None and stale >= cfg.patience
            done = stopped or epoch + 1 == cfg.epochs
            checkpoint.save(ckpt_dir, {"basis": p.basis, "alpha": p.alpha, "best_basis": best[0], "best_alpha": best[1]},
                            {"seed": seed, "step": step, "epochs_done": epoch + 1, "best_val": best_val,
                             "best_epoch": best_epoch, "stale": stale, "history": history,
                             "status": "done" if done else "running", "stopped_early": stopped}, opt)
            if stopped:
                break
        else:
            history.append(record)
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1)
    with torch.no_grad():
        p.basis.copy_(best[0])
        p.alpha.copy_(best[1])
    return SeedResult(seed, p, best_epoch, best_val, history, stopped)
