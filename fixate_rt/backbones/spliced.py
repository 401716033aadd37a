"""Shared decoder plumbing of every adapter: soft prompt spliced into inputs_embeds at position 0.

Subclasses say how text and image tokens are laid out (`encode_text`), how positions are computed
(`positions`) and how cached vision features enter the model's own image path (`vision_output`).
"""

from __future__ import annotations

import torch

from ..probes.capture import record_attention
from .base import DecoderInputs, DecoderOutput, SlateFeatures

DEFAULT_PROBE_LAYERS = 6  # method.md §4.1: the last 6 decoder layers (Qwen3-VL); InternVL overrides (5)


def _to_device(device: torch.device):
    """Host → device copies that do not synchronise (pinned memory, non_blocking) on CUDA; identity on the CPU."""
    if device.type != "cuda":
        return lambda t: t.to(device)
    return lambda t: t.pin_memory().to(device, non_blocking=True)


class SplicedVLM:
    family = ""
    probe_depth = DEFAULT_PROBE_LAYERS

    def __init__(self, model, processor, name: str) -> None:
        self.model = model.eval().requires_grad_(False)
        self.processor = processor
        self.name = name
        text = model.config.text_config
        self.hidden_size = int(text.hidden_size)
        self.num_layers = int(text.num_hidden_layers)
        self.default_probe_layers = tuple(range(max(0, self.num_layers - self.probe_depth), self.num_layers))
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype
        if processor.image_pad_id != model.config.image_token_id:
            raise ValueError(f"{name}: tokenizer's image token {processor.image_pad_id} != config image_token_id "
                             f"{model.config.image_token_id}")

    # ------------------------------------------------------------------------------ family hooks
    def encode_slate(self, image) -> SlateFeatures:
        raise NotImplementedError

    def positions(self, input_ids: torch.Tensor, types: torch.Tensor, mask: torch.Tensor,
                  slates: list[SlateFeatures]) -> torch.Tensor:
        raise NotImplementedError

    def vision_output(self, slates: list[SlateFeatures]):
        raise NotImplementedError

    def label_token_ids(self, labels: tuple[str, ...]) -> list[int]:
        return self.processor.label_token_ids(labels)

    # ----------------------------------------------------------------------------------- shared
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

    def decode(self, inputs: DecoderInputs, slates: SlateFeatures | list[SlateFeatures], prompts: torch.Tensor | None,
               label_ids: list[int] | torch.Tensor | None, probe_layers: tuple[int, ...] = (), capture: str = "mean",
               grad: bool = False) -> DecoderOutput:
        """Decoder forward. prompts [B, N, D] or None. Returns label logits [B, S] at the last position
        (``label_ids`` shared, or [B, S] per row) and the full-vocabulary logits [B, V] of that position.

        ``capture`` says what the probed layers record (see probes/capture.py). With ``grad`` the forward
        builds an autograd graph from ``inputs_embeds`` on, so ∂(logit)/∂(captured tensors) can be taken.
        """
        B = inputs.input_ids.shape[0]
        slates = [slates] * B if isinstance(slates, SlateFeatures) else list(slates)
        with torch.set_grad_enabled(grad or torch.is_grad_enabled()):
            embeds = self.model.get_input_embeddings()(inputs.input_ids)
            if prompts is not None and prompts.shape[1] > 0:
                embeds = inputs.splice_prompts(embeds, prompts)
            if grad and not embeds.requires_grad:
                embeds = embeds.detach().requires_grad_(True)
            with record_attention(tuple(probe_layers), capture) as recorder:
                hidden = self.model.model(
                    inputs_embeds=embeds, attention_mask=inputs.attention_mask, position_ids=inputs.position_ids,
                    mm_encoder_outputs={"image": self.vision_output(slates)}, use_cache=False,
                ).last_hidden_state
            # Only the last prompt position predicts the answer label: project just that row.
            logits = self.model.lm_head(hidden[:, -1]).float()
        if label_ids is None:
            label_logits = logits[:, :0]
        elif isinstance(label_ids, torch.Tensor):  # [B, S] per-row label ids (batches that mix slates)
            label_logits = logits.gather(1, label_ids.to(logits.device))
        else:
            label_logits = logits[:, label_ids]
        return DecoderOutput(label_logits, recorder, logits)
