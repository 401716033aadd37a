"""Project-owned Qwen-VL processor: image processor (PIL variant) + tokenizer + our placeholder expansion.

transformers 5.18–5.25 Qwen-VL processors require a video processor and therefore torchvision, which is
unusable with torch 2.13 CPU (its PyPI build fails on import); this does the same job for single images without it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import AutoTokenizer
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from .. import template
from ..config import Template
from ..errors import ValidationError

VISION_START, IMAGE_PAD, VISION_END = "<|vision_start|>", "<|image_pad|>", "<|vision_end|>"


class QwenVLProcessor:
    """Turns (slate image, profile, labels) into model inputs for the Qwen-VL family."""

    family = "qwen"

    def __init__(self, tokenizer, image_processor: Qwen2VLImageProcessorPil) -> None:
        self.tokenizer = tokenizer
        self.template = Template.fixate_rt  # set per run through the backend's `use_template`
        self.image_processor = image_processor
        self.merge_size = int(image_processor.merge_size)
        ids = tokenizer.convert_tokens_to_ids([VISION_START, IMAGE_PAD, VISION_END])
        if tokenizer.unk_token_id is not None and tokenizer.unk_token_id in ids:
            raise ValidationError(f"tokenizer lacks the Qwen vision tokens {VISION_START} {IMAGE_PAD} {VISION_END}")
        self.vision_start_id, self.image_pad_id, self.vision_end_id = ids
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    @classmethod
    def from_pretrained(cls, path: Path) -> QwenVLProcessor:
        tokenizer = AutoTokenizer.from_pretrained(str(path), trust_remote_code=False)
        image_processor = Qwen2VLImageProcessorPil.from_pretrained(str(path))  # reads patch_size (14 or 16)
        return cls(tokenizer, image_processor)

    # --------------------------------------------------------------------------------- image side
    def preprocess_image(self, image: Image.Image) -> tuple[torch.Tensor, torch.Tensor]:
        """pixel_values [patches, C*t*p*p] and grid_thw [1, 3] (in patches, before the 2x2 merge)."""
        out = self.image_processor(images=[image.convert("RGB")], return_tensors="pt")
        return out["pixel_values"], out["image_grid_thw"]

    def token_boxes(self, grid_thw: torch.Tensor, image_size: tuple[int, int]) -> np.ndarray:
        """[P, 4] pixel rectangles in the original image, merged tokens row-major over the merged grid.

        The processor resizes the whole image (no crop) to a multiple of patch*merge, so merged cell (i, j)
        of an (h, w) merged grid covers x in [j, j+1)·W/w and y in [i, i+1)·H/h of the original image.
        """
        _, gh, gw = (int(v) for v in grid_thw[0])
        h, w = gh // self.merge_size, gw // self.merge_size
        width, height = image_size
        jj, ii = np.meshgrid(np.arange(w), np.arange(h))  # row-major: i outer, j inner
        x0, y0 = jj.ravel() * width / w, ii.ravel() * height / h
        return np.stack([x0, y0, x0 + width / w, y0 + height / h], axis=1).astype(np.float32)

    # ---------------------------------------------------------------------------------- text side
    def encode(self, profile: str, labels: tuple[str, ...], n_image_tokens: int,
               context: str = "") -> tuple[list[int], list[int]]:
        """Token ids of the run's template with the image block expanded, and mm_token_type_ids (1 = image)."""
        return encode_template(self.tokenizer, profile, labels, (self.vision_start_id, self.image_pad_id,
                                                                  self.vision_end_id), n_image_tokens, context,
                               self.template, self.family)

    def label_token_ids(self, labels: tuple[str, ...]) -> list[int]:
        return single_token_ids(self.tokenizer, labels)


def encode_template(tokenizer, profile: str, labels: tuple[str, ...], image_ids: tuple[int, int, int],
                    n_image_tokens: int, context: str = "", template_name: Template = Template.fixate_rt,
                    family: str = "qwen") -> tuple[list[int], list[int]]:
    """The template tokenised around its image block [start, pad × n, end]; types are 1 on the pads."""
    start, pad, end = image_ids
    before, after = template.render(profile, labels, context, template_name, family).split(template.IMAGE_MARKER)
    head = tokenizer(before, add_special_tokens=False)["input_ids"]
    tail = tokenizer(after, add_special_tokens=False)["input_ids"]
    ids = head + [start] + [pad] * n_image_tokens + [end] + tail
    types = [0] * (len(head) + 1) + [1] * n_image_tokens + [0] * (1 + len(tail))
    return ids, types


def single_token_ids(tokenizer, labels: tuple[str, ...]) -> list[int]:
    """One token id per answer label; a label that is not a single known token is a clear error."""
    out = []
    for label in labels:
        ids = tokenizer(label, add_special_tokens=False)["input_ids"]
        if len(ids) != 1 or ids[0] == tokenizer.unk_token_id:
            raise ValidationError(f"answer label '{label}' is not a single known token for this tokenizer (got ids {ids})")
        out.append(ids[0])
    return out


def qwen_grid(image_processor, image_size: tuple[int, int]) -> list[list[int]]:
    """The patch grid [[t, h, w]] the Qwen image processor gives an image of ``image_size`` (W, H)."""
    blank = Image.new("RGB", tuple(image_size))
    return image_processor(images=[blank], return_tensors="pt")["image_grid_thw"].tolist()
