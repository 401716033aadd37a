"""One batch through the steered model: slot attention a, click probabilities and the training loss."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .. import losses, ops
from ..probes.operators import probe
from ..probes.reference import slot_pool_reference
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


def run_batch(backbone, cache: SlateCache, batch: list[Sample], prompts: torch.Tensor | None, cfg: TrainConfig, *,
              differentiable: bool, teacher_forced: bool, profiles: dict[str, str]) -> BatchOutput:
    """Forward (and probe) one batch; ``prompts`` [B, N, D] or None (the bare backbone)."""
    slate_ids = [s.slate_id for s in batch]
    feats = [cache.features(s) for s in slate_ids]
    labels = [cache.slates[s].layout.labels for s in slate_ids]
    n_slots = torch.tensor([len(lab) for lab in labels])
    S = int(n_slots.max())
    ids = [cache.label_ids(s) for s in slate_ids]
    label_ids = torch.tensor([row + [row[0]] * (S - len(row)) for row in ids])  # padded with a valid id
    valid = torch.arange(S)[None, :] < n_slots[:, None]
    clicked = torch.tensor([s.clicked for s in batch])
    inputs = backbone.build_inputs([profiles[s.user_id] for s in batch], labels, feats,
                                   prompts.shape[1] if prompts is not None else 0,
                                   [cache.slates[s].layout.context for s in slate_ids])
    out = probe(backbone, inputs, feats, prompts, label_ids, method=cfg.probe, layers=backbone.default_probe_layers,
                targets=clicked if teacher_forced else None, differentiable=differentiable)
    # Same grid, so token boxes differ between rows only by the image size: express every row's slot boxes in
    # the first row's pixel frame and pool against its token boxes.
    token_boxes = torch.as_tensor(feats[0].token_boxes)
    w0, h0 = cache.slates[slate_ids[0]].layout.image_size
    scale = torch.tensor([[w0 / cache.slates[s].layout.image_size[0], h0 / cache.slates[s].layout.image_size[1]] * 2
                          for s in slate_ids])
    slot_boxes = cache.slot_boxes(slate_ids) * scale[:, None, :]
    layouts = [cache.slates[s].layout for s in slate_ids]
    # Centre-based pooling: exclusive and overlap agree wherever boxes do not overlap, so one mode per batch is exact.
    modes = {lay.pool_mode(cfg.pool_mode) for lay in layouts}
    pool_mode = "overlap" if "overlap" in modes else modes.pop()
    if differentiable:  # training: the torch reference pooling keeps the graph
        a = slot_pool_reference(out.token_relevance.cpu(), token_boxes, slot_boxes, pool_mode)
    else:  # evaluation: the ops registry (--kernel), e.g. the C++ pooling on CPU
        a = ops.slot_pool(out.token_relevance.cpu(), token_boxes, slot_boxes, mode=pool_mode, impl=cfg.kernel)
    label_logits = out.label_logits.cpu().masked_fill(~valid, -torch.inf)
    p_click = torch.softmax(label_logits.double(), -1)
    answer = label_ids.gather(1, clicked[:, None])[:, 0]
    return BatchOutput(a, p_click, out.logits, answer, n_slots)


def batch_loss(out: BatchOutput, batch: list[Sample], alpha_rows: torch.Tensor | None, cfg: TrainConfig,
               lam: float) -> tuple[torch.Tensor, dict[str, float]]:
    """w_c·L_NTP + λ(t)·L_attn + β·R_α (method.md §5)."""
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
