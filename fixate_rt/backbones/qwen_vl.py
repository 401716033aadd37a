"""Qwen3-VL adapter: real HF model, one template, soft prompts spliced into inputs_embeds at position 0.

Two defects of the reference are fixed here (method.md §5, §8.1 item 2):
* M-RoPE positions are computed by the model's own ``get_rope_index`` on the real token ids, with a
  placeholder id at every soft-prompt position, so image tokens keep their 2-D positions (shifted by N);
* the image always enters through the model's own image-feature path (``mm_encoder_outputs``), so
  DeepStack visual features are injected in every path.
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image
from transformers import Qwen3VLForConditionalGeneration
from transformers.models.qwen3_vl.modeling_qwen3_vl import BaseModelOutputWithDeepstackFeatures

from ..probes.capture import CAPTURE_IMPLEMENTATION, record_attention
from .base import DecoderInputs, DecoderOutput, SlateFeatures
from .processor import QwenVLProcessor

QWEN3_PROBE_LAYERS = 6  # method.md §4.1: the last 6 decoder layers for Qwen3-VL


class Qwen3VLBackbone:
    family = "qwen3_vl"

    def __init__(self, model: Qwen3VLForConditionalGeneration, processor: QwenVLProcessor, name: str) -> None:
        self.model = model.eval().requires_grad_(False)
        self.processor = processor
        self.name = name
        text = model.config.text_config
        self.hidden_size = int(text.hidden_size)
        self.num_layers = int(text.num_hidden_layers)
        self.default_probe_layers = tuple(range(max(0, self.num_layers - QWEN3_PROBE_LAYERS), self.num_layers))
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype
        if processor.image_pad_id != model.config.image_token_id:
            raise ValueError(
                f"{name}: tokenizer's {processor.image_pad_id} != config image_token_id {model.config.image_token_id}"
            )

    @classmethod
    def from_pretrained(cls, path: Path, *, device: torch.device, dtype: torch.dtype, name: str) -> Qwen3VLBackbone:
        model = Qwen3VLForConditionalGeneration.from_pretrained(
            str(path), dtype=dtype, attn_implementation="sdpa", trust_remote_code=False
        )
        # Decoder attention goes through our registry entry (SDPA unless a layer is being probed);
        # the vision tower keeps SDPA.
        model.set_attn_implementation({"text_config": CAPTURE_IMPLEMENTATION, "vision_config": "sdpa"})
        return cls(model.to(device), QwenVLProcessor.from_pretrained(path), name)

    # ------------------------------------------------------------------------------------ slate
    @torch.no_grad()
    def encode_slate(self, image: Image.Image) -> SlateFeatures:
        """Preprocess + vision tower once per slate. Returns image_embeds [P, D] and DeepStack [P, D] each."""
        pixel_values, grid_thw = self.processor.preprocess_image(image)
        out = self.model.model.get_image_features(
            pixel_values.to(self.device, self.dtype), grid_thw.to(self.device), return_dict=True
        )
        embeds = out.pooler_output[0]
        deepstack = [feats[0] for feats in out.deepstack_features]
        boxes = self.processor.token_boxes(grid_thw, image.size)
        return SlateFeatures(embeds, deepstack, grid_thw, boxes)

    def label_token_ids(self, labels: tuple[str, ...]) -> list[int]:
        return self.processor.label_token_ids(labels)

    # ---------------------------------------------------------------------------------- batch
    def build_inputs(self, profiles: list[str], labels: tuple[str, ...] | list[tuple[str, ...]],
                     slates: SlateFeatures | list[SlateFeatures], n_soft: int) -> DecoderInputs:
        """Left-padded batch of [soft prompt placeholders (N) | template with P image tokens].

        ``labels`` and ``slates`` are shared by every row, or given per row (training batches mix slates).
        """
        B = len(profiles)
        slates = [slates] * B if isinstance(slates, SlateFeatures) else list(slates)
        labels = [labels] * B if labels and isinstance(labels[0], str) else list(labels)
        rows = [self.processor.encode(p, lab, f.n_tokens) for p, lab, f in zip(profiles, labels, slates)]
        T = max(len(ids) for ids, _ in rows) + n_soft
        pad = self.processor.pad_id
        input_ids = torch.full((B, T), pad, dtype=torch.long)
        types = torch.zeros((B, T), dtype=torch.long)
        mask = torch.zeros((B, T), dtype=torch.long)
        soft = torch.zeros((B, T), dtype=torch.bool)
        for b, (ids, tt) in enumerate(rows):
            start = T - len(ids) - n_soft
            input_ids[b, start + n_soft:] = torch.tensor(ids)
            types[b, start + n_soft:] = torch.tensor(tt)
            mask[b, start:] = 1
            soft[b, start:start + n_soft] = True
        # Positions from the real ids: soft-prompt places are ordinary text positions 0..N-1, so the
        # image block gets its proper 2-D M-RoPE grid, shifted by N.
        position_ids, _ = self.model.model.get_rope_index(
            input_ids, mm_token_type_ids=types, image_grid_thw=torch.cat([f.grid_thw for f in slates]).cpu(),
            attention_mask=mask,
        )
        dev = self.device
        return DecoderInputs(input_ids.to(dev), mask.to(dev), position_ids.to(dev), soft.to(dev),
                             (types == 1).to(dev), types.to(dev))

    def decode(self, inputs: DecoderInputs, slates: SlateFeatures | list[SlateFeatures], prompts: torch.Tensor | None,
               label_ids: list[int] | torch.Tensor | None, probe_layers: tuple[int, ...] = (), capture: str = "mean",
               grad: bool = False) -> DecoderOutput:
        """Decoder forward. prompts [B, N, D] or None. Returns label logits [B, S] at the last position
        (``label_ids`` shared by the batch) and the full-vocabulary logits [B, V] of that position.

        ``capture`` says what the probed layers record (see probes/capture.py). With ``grad`` the forward
        builds an autograd graph from ``inputs_embeds`` on, so ∂(logit)/∂(captured tensors) can be taken.
        """
        B = inputs.input_ids.shape[0]
        slates = [slates] * B if isinstance(slates, SlateFeatures) else list(slates)
        with torch.set_grad_enabled(grad or torch.is_grad_enabled()):
            embeds = self.model.get_input_embeddings()(inputs.input_ids)
            if prompts is not None and prompts.shape[1] > 0:
                embeds = embeds.clone()
                embeds[inputs.soft_mask] = prompts.reshape(-1, prompts.shape[-1]).to(embeds.device, embeds.dtype)
            if grad and not embeds.requires_grad:
                embeds = embeds.detach().requires_grad_(True)
            vision = BaseModelOutputWithDeepstackFeatures(
                pooler_output=tuple(f.image_embeds for f in slates),
                deepstack_features=[tuple(f.deepstack[i] for f in slates) for i in range(len(slates[0].deepstack))],
            )
            with record_attention(tuple(probe_layers), capture) as recorder:
                hidden = self.model.model(
                    inputs_embeds=embeds, attention_mask=inputs.attention_mask, position_ids=inputs.position_ids,
                    mm_encoder_outputs={"image": vision}, use_cache=False,
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
