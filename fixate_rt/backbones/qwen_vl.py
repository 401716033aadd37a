"""Qwen-VL adapters (Qwen2-VL, Qwen2.5-VL: 14-px patches; Qwen3-VL: 16-px patches, DeepStack).

Two defects of the reference are fixed here (docs/method.md §5, §8 item 2):
* M-RoPE positions are computed by the model's own ``get_rope_index`` on the real token ids, with a
  placeholder id at every soft-prompt position, so image tokens keep their 2-D positions (shifted by N);
* the image always enters through the model's own image-feature path (``mm_encoder_outputs``), so
  Qwen3-VL's DeepStack visual features are injected in every path.
Merged image tokens are row-major over the merged grid (`QwenVLProcessor.token_boxes`).
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image
from transformers.modeling_outputs import BaseModelOutputWithPooling

from ..model_io import SlateFeatures
from ..probes.capture import CAPTURE_IMPLEMENTATION
from .processor import QwenVLProcessor
from .spliced import SplicedVLM


def model_class(model_type: str):
    import transformers

    return {"qwen2_vl": transformers.Qwen2VLForConditionalGeneration,
            "qwen2_5_vl": transformers.Qwen2_5_VLForConditionalGeneration,
            "qwen3_vl": transformers.Qwen3VLForConditionalGeneration}[model_type]


class QwenVLBackbone(SplicedVLM):
    def __init__(self, model, processor: QwenVLProcessor, name: str) -> None:
        self.family = model.config.model_type
        super().__init__(model, processor, name)

    @classmethod
    def from_pretrained(cls, path: Path, *, device: torch.device, dtype: torch.dtype, name: str,
                        model_type: str) -> QwenVLBackbone:
        model = model_class(model_type).from_pretrained(str(path), dtype=dtype, attn_implementation="sdpa",
                                                        trust_remote_code=False, use_safetensors=True)
        # Decoder attention goes through our registry entry (SDPA unless a layer is being probed);
        # the vision tower keeps SDPA.
        model.set_attn_implementation({"text_config": CAPTURE_IMPLEMENTATION, "vision_config": "sdpa"})
        return cls(model.to(device), QwenVLProcessor.from_pretrained(path), name)

    @torch.no_grad()
    def encode_slate(self, image: Image.Image) -> SlateFeatures:
        """Preprocess + vision tower once per slate. image_embeds [P, D]; DeepStack [P, D] each (Qwen3-VL)."""
        pixel_values, grid_thw = self.processor.preprocess_image(image)
        out = self.model.model.get_image_features(pixel_values.to(self.device, self.dtype), grid_thw.to(self.device),
                                                  return_dict=True)
        deepstack = [feats[0] for feats in getattr(out, "deepstack_features", None) or []]
        return SlateFeatures(out.pooler_output[0], deepstack, grid_thw, self.processor.token_boxes(grid_thw, image.size))

    def positions(self, input_ids, types, mask, slates):
        position_ids, _ = self.model.model.get_rope_index(
            input_ids, mm_token_type_ids=types, image_grid_thw=torch.cat([f.grid_thw for f in slates]).cpu(),
            attention_mask=mask,
        )
        return position_ids

    def vision_output(self, slates):
        pooled = tuple(f.image_embeds for f in slates)
        if self.family != "qwen3_vl":
            return BaseModelOutputWithPooling(pooler_output=pooled)
        from transformers.models.qwen3_vl.modeling_qwen3_vl import BaseModelOutputWithDeepstackFeatures

        return BaseModelOutputWithDeepstackFeatures(
            pooler_output=pooled,
            deepstack_features=[tuple(f.deepstack[i] for f in slates) for i in range(len(slates[0].deepstack))],
        )
