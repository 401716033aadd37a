"""One batch through a steered backend: the single pipeline behind `simulate`, `profile` and training.

A batch is B (user, slate) rows; rows may come from different slates, of different geometry and slot count.
Stages (timed when a `StageTimer` is given): ``prompt_assembly`` (mix the soft prompts, build the padded
inputs), ``decoder_and_probe`` (the backend's forward with the plan's capture and combine op), ``pooling``
(image-token relevance → slot relevance, each row against its own slate's token boxes).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from . import ops
from .backends.protocol import Backend
from .data.slates import Layout
from .model_io import DecoderInputs, SlateFeatures
from .plan import OpPlan
from .timing import StageTimer

PromptSource = Callable[[], "torch.Tensor | None"]


@dataclass
class Batch:
    """B rows: the user's profile text, the slate's cached vision features and its layout."""

    profiles: list[str]
    slates: list[SlateFeatures]
    layouts: list[Layout]

    def __post_init__(self) -> None:
        if not len(self.profiles) == len(self.slates) == len(self.layouts):
            raise ValueError(f"a batch needs one slate and layout per profile: {len(self.profiles)} profiles, "
                             f"{len(self.slates)} slates, {len(self.layouts)} layouts")

    @classmethod
    def one_slate(cls, profiles: list[str], slate: SlateFeatures, layout: Layout) -> Batch:
        return cls(list(profiles), [slate] * len(profiles), [layout] * len(profiles))


@dataclass
class BatchResult:
    """Per row, over S = the largest slot count in the batch (padding slots: p_click 0, relevance 0).

    label_logits [B, S] (−inf on padding); p_click [B, S] float64; slot_relevance [B, S] fp32 (rows sum to 1
    over the row's slots); logits [B, V] at the last prompt position; n_slots [B]; label_ids [B, S].
    Tensors stay on the device they were computed on (the caller moves them once per slate).
    """

    label_logits: torch.Tensor
    p_click: torch.Tensor
    slot_relevance: torch.Tensor
    logits: torch.Tensor | None
    n_slots: torch.Tensor
    label_ids: torch.Tensor


def _label_ids(backend: Backend, layouts: list[Layout]) -> tuple[list[int] | torch.Tensor, torch.Tensor]:
    """Shared label ids when every row has the same labels, else [B, S] padded with a valid id; and [B, S]."""
    S = max(layout.n_slots for layout in layouts)
    rows: dict[tuple[str, ...], list[int]] = {}
    for layout in layouts:  # tokenise each distinct label set once (a batch is usually one slate: one set)
        if layout.labels not in rows:
            rows[layout.labels] = backend.label_token_ids(layout.labels)
    table = torch.tensor([rows[lay.labels] + [rows[lay.labels][0]] * (S - lay.n_slots) for lay in layouts])
    if len(rows) == 1:
        return next(iter(rows.values())), table
    return table, table


def _slot_boxes(layouts: list[Layout], S: int) -> torch.Tensor:
    """[B, S, 4]; slates with fewer slots are padded with empty boxes (pooled to 0)."""
    out = torch.zeros(len(layouts), S, 4)
    for i, layout in enumerate(layouts):
        out[i, : layout.n_slots] = torch.from_numpy(layout.boxes)
    return out


def pool_rows(token_relevance: torch.Tensor, slates: list[SlateFeatures], layouts: list[Layout], pool_mode: str,
              plan: OpPlan) -> torch.Tensor:
    """token_relevance [B, P] -> slot relevance [B, S]: each row pooled on its own slate's token grid and mode.

    Rows that share token boxes and mode are pooled in one call; the result keeps the rows' order (and the
    autograd graph, for training).
    """
    B = token_relevance.shape[0]
    S = max(layout.n_slots for layout in layouts)
    rel = token_relevance.float().to(plan.pool_device)
    slot_boxes = _slot_boxes(layouts, S).to(plan.pool_device)
    groups: dict[tuple, list[int]] = {}
    for i, (feats, layout) in enumerate(zip(slates, layouts)):
        key = (feats.token_boxes.shape, feats.token_boxes.tobytes(), layout.pool_mode(pool_mode))
        groups.setdefault(key, []).append(i)
    if len(groups) == 1:
        (_, _, mode), = groups
        return ops.slot_pool(rel, slates[0].token_boxes, slot_boxes, mode=mode, impl=plan.pool_impl)
    parts, order = [], []
    for (_, _, mode), rows in groups.items():
        index = torch.tensor(rows, device=rel.device)
        parts.append(ops.slot_pool(rel.index_select(0, index), slates[rows[0]].token_boxes,
                                   slot_boxes.index_select(0, index), mode=mode, impl=plan.pool_impl))
        order.extend(rows)
    inverse = torch.empty(B, dtype=torch.long)
    inverse[torch.tensor(order)] = torch.arange(B)
    return torch.cat(parts).index_select(0, inverse.to(rel.device))


class BatchPipeline:
    """A backend, its op plan and the probe settings, applied batch after batch."""

    def __init__(self, backend: Backend, plan: OpPlan, *, layers: tuple[int, ...], residual: float = 0.5,
                 pool_mode: str = "auto", timer: StageTimer | None = None,
                 on_inputs: Callable[[DecoderInputs, list[SlateFeatures], torch.Tensor | None, object], None]
                 | None = None) -> None:
        if plan.differentiable and not backend.supports_grad:
            from .errors import UnavailableError

            raise UnavailableError(f"backend '{backend.kind.value}' has no gradients; training needs --backend torch")
        self.backend, self.plan = backend, plan
        self.layers, self.residual, self.pool_mode = tuple(layers), residual, pool_mode
        self.timer = timer if timer is not None else StageTimer(backend.device)
        self.on_inputs = on_inputs  # profile's hook: sees each assembled batch outside the timed stages

    def run(self, batch: Batch, prompts: PromptSource | torch.Tensor | None = None, *,
            targets: torch.Tensor | None = None) -> BatchResult:
        """``prompts``: [B, N, D], None (the bare backbone), or a callable giving either (timed as assembly)."""
        backend = self.backend
        with self.timer.stage("prompt_assembly"):
            soft = prompts() if callable(prompts) else prompts
            n_soft = soft.shape[1] if soft is not None else 0
            inputs = backend.build_inputs(batch.profiles, [lay.labels for lay in batch.layouts], batch.slates, n_soft,
                                          [lay.context for lay in batch.layouts])
            label_ids, label_table = _label_ids(backend, batch.layouts)
        if self.on_inputs is not None:
            self.on_inputs(inputs, batch.slates, soft, label_ids)
        with self.timer.stage("decoder_and_probe"):
            out = backend.probe(inputs, batch.slates, soft, label_ids, self.plan, layers=self.layers,
                                residual=self.residual, targets=targets)
        with self.timer.stage("pooling"):
            slot_relevance = pool_rows(out.token_relevance, batch.slates, batch.layouts, self.pool_mode, self.plan)
        n_slots = torch.tensor([lay.n_slots for lay in batch.layouts])
        valid = torch.arange(label_table.shape[1])[None, :] < n_slots[:, None]
        label_logits = out.label_logits
        if not bool(valid.all()):
            label_logits = label_logits.masked_fill(~valid.to(label_logits.device), -torch.inf)
        p_click = torch.softmax(label_logits.double(), dim=-1).to(self.plan.pool_device)
        return BatchResult(label_logits, p_click, slot_relevance, out.logits, n_slots, label_table)

