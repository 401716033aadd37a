"""InternVL (transformers-native "-HF" format) adapter with exact tile geometry.

Dynamic tiling (GotOcr2 image processor, ``crop_to_patches``): the slate is resized to a grid of ``cols`` ×
``rows`` square tiles whose aspect ratio is closest to the image's, plus a thumbnail of the whole image when
there is more than one tile. Each tile's ViT patches are pixel-shuffled (×½) into a g × g raster of tokens
(g = tile/patch/2), and tokens come tile by tile (row-major over tiles). The reference reads the tile ratio
the wrong way round and lays all tiles out as one raster (docs/method.md §4.6); here tile t = (row t // cols,
column t % cols) covers its own rectangle of the original image and token (r, c) of that tile its own cell.

Thumbnail tokens see the whole image at coarse resolution. They are **excluded from slot pooling by default**
(``pool_thumbnail=False``): they overlap the full-resolution tokens, so including them double-counts mass,
and the reference drops them too. Excluded tokens get the empty box [-1, -1, -1, -1], which pools to nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import AutoTokenizer, InternVLForConditionalGeneration
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import (
    GotOcr2ImageProcessorPil,
    get_optimal_tiled_canvas,
)

from ..config import Template
from ..errors import ValidationError
from ..model_io import SlateFeatures
from ..probes.capture import CAPTURE_IMPLEMENTATION
from .spliced import SplicedVLM

IMG_START, IMG_CONTEXT, IMG_END = "<img>", "<IMG_CONTEXT>", "</img>"
EXCLUDED_BOX = (-1.0, -1.0, -1.0, -1.0)


class InternVLProcessor:
    """Tiling image processor + tokenizer + our ``<img><IMG_CONTEXT>…</img>`` expansion."""

    def __init__(self, tokenizer, image_processor: GotOcr2ImageProcessorPil, tokens_per_tile: int,
                 pool_thumbnail: bool = False) -> None:
        self.tokenizer = tokenizer
        self.template = Template.fixate_rt  # set per run through the backend's `use_template`
        self.image_processor = image_processor
        self.tokens_per_tile = tokens_per_tile
        self.side = int(round(tokens_per_tile ** 0.5))
        self.pool_thumbnail = pool_thumbnail
        ids = tokenizer.convert_tokens_to_ids([IMG_START, IMG_CONTEXT, IMG_END])
        if tokenizer.unk_token_id is not None and tokenizer.unk_token_id in ids:
            raise ValidationError(f"tokenizer lacks the InternVL image tokens {IMG_START} {IMG_CONTEXT} {IMG_END}")
        self.img_start_id, self.image_pad_id, self.img_end_id = ids
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    @classmethod
    def from_pretrained(cls, path: Path, config) -> InternVLProcessor:
        tokenizer = AutoTokenizer.from_pretrained(str(path), trust_remote_code=False)
        tile = config.vision_config.image_size
        tile = tile[0] if isinstance(tile, (list, tuple)) else tile
        patch = config.vision_config.patch_size
        patch = patch[0] if isinstance(patch, (list, tuple)) else patch
        kwargs = {}
        pre = Path(path) / "preprocessor_config.json"
        if pre.is_file():
            kwargs = {k: v for k, v in json.loads(pre.read_text()).items()
                      if k in ("image_mean", "image_std", "max_patches", "min_patches")}
        processor = GotOcr2ImageProcessorPil(size={"height": tile, "width": tile}, crop_to_patches=True, **kwargs)
        per_tile = int((tile // patch) ** 2 * config.downsample_ratio ** 2)
        return cls(tokenizer, processor, per_tile)

    def grid(self, image_size: tuple[int, int]) -> tuple[int, int, bool]:
        """(cols, rows, has_thumbnail) the processor will use for an image of (W, H)."""
        size = self.image_processor.size
        cols, rows = get_optimal_tiled_canvas((image_size[1], image_size[0]), (size.height, size.width),
                                              self.image_processor.min_patches, self.image_processor.max_patches)
        return cols, rows, cols * rows > 1

    def preprocess_image(self, image: Image.Image) -> torch.Tensor:
        """pixel_values [n_tiles (+1 thumbnail), 3, tile, tile]."""
        return self.image_processor(images=[image.convert("RGB")], return_tensors="pt")["pixel_values"]

    def token_boxes(self, image_size: tuple[int, int], include_thumbnail: bool | None = None) -> np.ndarray:
        """[P, 4] pixel rectangles in the original image for every image token, in sequence order."""
        include = self.pool_thumbnail if include_thumbnail is None else include_thumbnail
        cols, rows, thumb = self.grid(image_size)
        W, H, g = image_size[0], image_size[1], self.side
        cw, ch = W / (cols * g), H / (rows * g)  # one token cell of a tile
        boxes = []
        for t in range(cols * rows):
            tr, tc = divmod(t, cols)
            for r in range(g):
                for c in range(g):
                    x0, y0 = (tc * g + c) * cw, (tr * g + r) * ch
                    boxes.append((x0, y0, x0 + cw, y0 + ch))
        if thumb:
            for r in range(g):
                for c in range(g):
                    boxes.append((c * W / g, r * H / g, (c + 1) * W / g, (r + 1) * H / g) if include else EXCLUDED_BOX)
        return np.asarray(boxes, dtype=np.float32)

    def encode(self, profile: str, labels: tuple[str, ...], n_image_tokens: int,
               context: str = "") -> tuple[list[int], list[int]]:
        from .processor import encode_template

        return encode_template(self.tokenizer, profile, labels, (self.img_start_id, self.image_pad_id, self.img_end_id),
                               n_image_tokens, context, self.template, "internvl")

    def label_token_ids(self, labels: tuple[str, ...]) -> list[int]:
        from .processor import single_token_ids

        return single_token_ids(self.tokenizer, labels)


class InternVLBackbone(SplicedVLM):
    family = "internvl"
    probe_depth = 5  # docs/method.md §4.1: the last 5 decoder layers for InternVL (RecGaze)

    @classmethod
    def from_pretrained(cls, path: Path, *, device: torch.device, dtype: torch.dtype, name: str) -> InternVLBackbone:
        model = InternVLForConditionalGeneration.from_pretrained(str(path), dtype=dtype, attn_implementation="sdpa",
                                                                 trust_remote_code=False, use_safetensors=True)
        model.set_attn_implementation({"text_config": CAPTURE_IMPLEMENTATION, "vision_config": "sdpa"})
        return cls(model.to(device), InternVLProcessor.from_pretrained(path, model.config), name)

    def set_max_tiles(self, tiles: int) -> int:
        """At most ``tiles`` 448-px tiles per slate (the reference: 12 for RecGaze, 4 for AdSERP)."""
        self.processor.image_processor.max_patches = int(tiles)
        return int(tiles)

    @torch.no_grad()
    def encode_slate(self, image: Image.Image) -> SlateFeatures:
        """Tiles -> vision tower -> pixel shuffle -> projector: image_embeds [n_tiles·g², D]."""
        pixel_values = self.processor.preprocess_image(image)
        out = self.model.model.get_image_features(pixel_values.to(self.device, self.dtype), return_dict=True)
        embeds = out.pooler_output.reshape(-1, out.pooler_output.shape[-1])
        cols, rows, _ = self.processor.grid(image.size)
        grid = torch.tensor([[pixel_values.shape[0], rows, cols]])  # (tiles incl. thumbnail, rows, cols)
        return SlateFeatures(embeds, [], grid, self.processor.token_boxes(image.size))

    def positions(self, input_ids, types, mask, slates):
        """1-D positions over the real tokens (left padding skipped): the soft prompt takes 0..N-1."""
        return (mask.cumsum(-1) - 1).clamp(min=0) * mask

    def vision_output(self, slates):
        return BaseModelOutputWithPooling(pooler_output=torch.cat([f.image_embeds for f in slates]))
