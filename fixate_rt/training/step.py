"""One batch through the steered model: slot attention a, click probabilities and the training loss."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .. import losses
from ..pipeline import Batch, BatchPipeline
from ..plan import plan_ops
from .config import TrainConfig
from .data import Sample, SlateCache


@dataclass
class BatchOutput:
    """a [B, S_max] slot attention (rows sum to 1 over each slate's slots), p_click [B, S_max] (0 on padding),
    logits [B, V] (last prompt position), answer_token [B], n_slots [B]."""

    a: torch.Tensor
    p_click: torch.Tensor
    logits: torch.Tensor
    answer_token: torch.Tensor
    n_slots: torch.Tensor


@dataclass
class Pipelines:
    """The training pipeline (differentiable, torch ops) and the evaluation one (the run's --kernel), sharing one
    backbone and its slate cache."""

    train: BatchPipeline
    evaluate: BatchPipeline
    cache: SlateCache

    @classmethod
    def build(cls, backbone, cache: SlateCache, cfg: TrainConfig) -> Pipelines:
        layers = backbone.default_probe_layers

        def pipeline(needs_grad: bool) -> BatchPipeline:
            plan = plan_ops(cfg.probe, "torch" if needs_grad else cfg.kernel, backbone.device, needs_grad=needs_grad)
            return BatchPipeline(backbone, plan, layers=layers, pool_mode=cfg.pool_mode)

        return cls(pipeline(True), pipeline(False), cache)

    @property
    def backbone(self):
        return self.train.backend


def run_batch(pipeline: BatchPipeline, cache: SlateCache, batch: list[Sample], prompts: torch.Tensor | None, *,
              teacher_forced: bool, profiles: dict[str, str]) -> BatchOutput:
    """Forward (and probe) one batch; ``prompts`` [B, N, D] or None (the bare backbone). Rows may mix slates."""
    slate_ids = [s.slate_id for s in batch]
    rows = Batch([profiles[s.user_id] for s in batch], [cache.features(s) for s in slate_ids],
                 [cache.slates[s].layout for s in slate_ids])
    clicked = torch.tensor([s.clicked for s in batch])
    out = pipeline.run(rows, prompts, targets=clicked if teacher_forced else None)
    answer = out.label_ids.gather(1, clicked[:, None])[:, 0]
    return BatchOutput(out.slot_relevance.cpu(), out.p_click.cpu(), out.logits, answer, out.n_slots)


def batch_loss(out: BatchOutput, batch: list[Sample], alpha_rows: torch.Tensor | None, cfg: TrainConfig,
               lam: float) -> tuple[torch.Tensor, dict[str, float]]:
    """w_c·L_NTP + λ(t)·L_attn + β·R_α (docs/method.md §5)."""
    S = out.a.shape[1]
    g = torch.zeros(len(batch), S)
    for i, s in enumerate(batch):
        g[i, : len(s.gaze)] = torch.from_numpy(s.gaze).float()
    l_attn = losses.attention_loss(cfg.attn_loss, g, out.a.float(), cfg.gamma)
    l_ntp = losses.choice_loss(out.logits, out.answer_token) if cfg.uses_choice else torch.zeros(())
    reg = losses.alpha_regulariser(alpha_rows) if alpha_rows is not None else torch.zeros(())
    w_c = cfg.choice_weight if cfg.uses_choice else 0.0
    total = w_c * l_ntp.to(l_attn.device) + lam * l_attn + cfg.beta * reg.to(l_attn.device)
    return total, {k: float(v.detach()) for k, v in (("loss", total), ("attn", l_attn), ("ntp", l_ntp), ("reg", reg))}


def sample_rows(out: BatchOutput, batch: list[Sample]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per sample (slot attention a, click probabilities π), truncated to the slate's slots."""
    a = out.a.detach().double().numpy()
    p = out.p_click.detach().numpy()
    return [(a[i, :n], p[i, :n]) for i, n in enumerate(out.n_slots.tolist())]
