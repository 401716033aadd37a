"""Evaluation: per-sample metrics of the bare backbone or the steered model, teacher-forced or free generation.

The four columns of docs/method.md §6.1 use **one** prompt template (the reference mixes two):
backbone_tf / backbone_fg (no soft prompt) and fixate_tf / fixate_fg (the user's prompt). TF probes the
ground-truth label's logit, FG the model's own constrained greedy choice; rollout ignores the target, so
its TF and FG relevance coincide. Click probabilities (LogLoss, AUC, accuracy) do not depend on TF/FG.
"""

from __future__ import annotations

import torch

from .. import metrics as M
from .config import TrainConfig
from .data import Sample, batches
from .step import Pipelines, run_batch, sample_rows

COLUMNS = ("backbone_tf", "backbone_fg", "fixate_tf", "fixate_fg")


def composite(micro: dict[str, float]) -> float:
    """Model-selection score (RecGaze, TF, micro): 0.10·cos + 0.20·CSH@1 + 0.25·CSH@3 + 0.20·TGO@3 − 0.10·topkJS."""
    return (0.10 * micro["cosine"] + 0.20 * micro["csh@1"] + 0.25 * micro["csh@3"] + 0.20 * micro["tgo@3"]
            - 0.10 * micro["topk_js"])


def selection_score(micro: dict[str, float], selection: str) -> float:
    """Higher is better: the composite (RecGaze), or minus the micro JS (AdSERP selects the lowest JS)."""
    return composite(micro) if selection == "composite" else -micro["js"]


def evaluate(pipes: Pipelines, samples: list[Sample], mix_prompts, cfg: TrainConfig, *,
             teacher_forced: bool, profiles: dict[str, str]) -> list[dict]:
    """Metric rows (one per sample). ``mix_prompts(user_ids) -> [B, N, D]`` or None for the bare backbone."""
    rows = []
    for batch in batches(samples, cfg.eval_batch_size):
        with torch.no_grad():
            prompts = mix_prompts([s.user_id for s in batch]) if mix_prompts is not None else None
        out = run_batch(pipes.evaluate, pipes.cache, batch, prompts, teacher_forced=teacher_forced, profiles=profiles)
        for s, (a, p) in zip(batch, sample_rows(out, batch)):
            rows.append(M.sample_metrics(a, s.gaze, p, s.clicked, cfg.tie_rule, cfg.topk_js_k))
    return rows


def evaluate_columns(pipes: Pipelines, samples, mix_prompts, cfg, profiles) -> dict[str, list[dict]]:
    """All four columns of the test protocol."""
    out = {}
    for column in COLUMNS:
        steered = column.startswith("fixate")
        out[column] = evaluate(pipes, samples, mix_prompts if steered else None, cfg,
                               teacher_forced=column.endswith("tf"), profiles=profiles)
    return out
