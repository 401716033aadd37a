"""What every backbone adapter provides to the rest of fixate-rt."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from .probes.capture import AttentionRecorder


@dataclass
class SlateFeatures:
    """A slate after preprocessing and the frozen vision tower (computed once, reused for every user).

    image_embeds [P, D]; deepstack: list of [P, D] (Qwen3-VL, empty otherwise); grid_thw [1, 3] in patches;
    token_boxes float [P, 4]: the pixel rectangle of every image token in the original slate image.
    """

    image_embeds: torch.Tensor
    deepstack: list[torch.Tensor]
    grid_thw: torch.Tensor
    token_boxes: np.ndarray

    @property
    def n_tokens(self) -> int:
        return self.image_embeds.shape[0]


@dataclass
class DecoderInputs:
    """A padded batch ready for the decoder. B rows, T positions (left padding).

    input_ids [B, T] (soft-prompt places hold a placeholder id); attention_mask [B, T];
    position_ids [3, B, T] (M-RoPE) or [B, T]; soft_mask [B, T] bool (where the soft prompt goes);
    image_mask [B, T] bool (image tokens, P per row); soft_index [B, N] and image_index [B, P]: the same
    places as positions, so the hot path splices and reads with scatter/gather (a boolean-mask index makes CUDA
    count the mask on the host: a synchronising round trip).
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    soft_mask: torch.Tensor
    image_mask: torch.Tensor
    mm_token_type_ids: torch.Tensor
    soft_index: torch.Tensor | None = None
    image_index: torch.Tensor | None = None

    def image_tokens(self, row: torch.Tensor) -> torch.Tensor:
        """The image-token entries of a per-position tensor row [B, T] -> [B, P]."""
        return row.gather(1, self.image_index.to(row.device))

    def splice_prompts(self, embeds: torch.Tensor, prompts: torch.Tensor) -> torch.Tensor:
        """inputs_embeds [B, T, D] with the soft prompts [B, N, D] at their places (out of place)."""
        index = self.soft_index.to(embeds.device)[..., None].expand(-1, -1, embeds.shape[-1])
        return embeds.scatter(1, index, prompts.to(embeds.device, embeds.dtype))


@dataclass
class DecoderOutput:
    """label_logits [B, S]: logits of each slot's answer-label token at the last prompt position.

    capture: what the probed layers recorded (probes/capture.py `AttentionRecorder`: maps, values, outputs).
    logits: the full-vocabulary logits [B, V] at the last prompt position (the next-token loss uses them).
    """

    label_logits: torch.Tensor
    capture: "AttentionRecorder"
    logits: torch.Tensor | None = None  # [B, V] full vocabulary at the last prompt position

    @property
    def attentions(self) -> dict[int, torch.Tensor]:
        return self.capture.maps
