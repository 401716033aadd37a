"""Batch assembly shared by every backend: the chat template, the soft-prompt places, positions and masks.

A backend that mixes in `InputAssembler` provides ``processor`` (template + tokenizer), ``device`` and
``positions(input_ids, types, mask, slates)``; the torch adapters and the exported backend both do.
"""

from __future__ import annotations

import torch

from .config import Template, parse_choice
from .model_io import DecoderInputs, SlateFeatures


def _to_device(device: torch.device):
    """Host → device copies that do not synchronise (pinned memory, non_blocking) on CUDA; identity on the CPU."""
    if device.type != "cuda":
        return lambda t: t.to(device)
    return lambda t: t.pin_memory().to(device, non_blocking=True)


class InputAssembler:
    processor: object
    device: torch.device

    def positions(self, input_ids: torch.Tensor, types: torch.Tensor, mask: torch.Tensor,
                  slates: list[SlateFeatures]) -> torch.Tensor:
        raise NotImplementedError

    def use_template(self, template: Template | str) -> None:
        """Render every following prompt with this template (`fixate_rt.template`); one per run."""
        self.processor.template = parse_choice(Template, template, "template")

    @property
    def template(self) -> Template:
        return self.processor.template

    def label_token_ids(self, labels: tuple[str, ...]) -> list[int]:
        """The single token id of each answer label (the processor's tokenizer decides)."""
        return self.processor.label_token_ids(labels)

    def build_inputs(self, profiles: list[str], labels: tuple[str, ...] | list[tuple[str, ...]],
                     slates: SlateFeatures | list[SlateFeatures], n_soft: int,
                     contexts: str | list[str] = "") -> DecoderInputs:
        """Left-padded batch of [soft prompt placeholders (N) | template with P image tokens].

        ``labels``, ``slates`` and ``contexts`` (the slate's own text line, e.g. a search query) are shared by
        every row, or given per row (training batches mix slates).
        """
        B = len(profiles)
        slates = [slates] * B if isinstance(slates, SlateFeatures) else list(slates)
        labels = [labels] * B if labels and isinstance(labels[0], str) else list(labels)
        contexts = [contexts] * B if isinstance(contexts, str) else list(contexts)
        rows = [self.processor.encode(p, lab, f.n_tokens, c) for p, lab, f, c in zip(profiles, labels, slates, contexts)]
        T = max(len(ids) for ids, _ in rows) + n_soft
        input_ids = torch.full((B, T), self.processor.pad_id, dtype=torch.long)
        types = torch.zeros((B, T), dtype=torch.long)
        mask = torch.zeros((B, T), dtype=torch.long)
        soft = torch.zeros((B, T), dtype=torch.bool)
        for b, (ids, tt) in enumerate(rows):
            start = T - len(ids) - n_soft
            input_ids[b, start + n_soft:] = torch.tensor(ids)
            types[b, start + n_soft:] = torch.tensor(tt)
            mask[b, start:] = 1
            soft[b, start:start + n_soft] = True
        # Soft-prompt places hold a placeholder text id, so positions come from the real ids with the prompt
        # counted as N ordinary text positions: image tokens keep their own layout, shifted by N.
        position_ids = self.positions(input_ids, types, mask, slates)
        move = _to_device(self.device)
        image = types == 1
        soft_index = soft.nonzero()[:, 1].reshape(B, n_soft)  # on the CPU, before any device work
        image_index = image.nonzero()[:, 1].reshape(B, -1) if len({f.n_tokens for f in slates}) == 1 else None
        return DecoderInputs(move(input_ids), move(mask), move(position_ids), move(soft), move(image), move(types),
                             move(soft_index), move(image_index) if image_index is not None else None)

