"""The reference approach, as FixATE's code probes: every decoder layer eager with ``output_attentions=True``,
autograd over the returned probability maps for GLIMPSE/AttnLRP, and the full-matrix operators.

Used as the ground truth in tests and as the baseline in benchmarks; never on a production path (it
materialises L×H×T×T probabilities).
"""

from __future__ import annotations

import torch

from .. import reference as ref
from ..model_io import DecoderInputs, SlateFeatures
from ..probes.capture import CAPTURE_IMPLEMENTATION
from .operators import padding_pairs


def eager_reference(backbone, inputs: DecoderInputs, feats: SlateFeatures, prompts: torch.Tensor, layers: tuple[int, ...],
                    method: str, label_ids: list[int], *, full_rollout: bool = False,
                    rollout_dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """(label logits [B, S], token relevance [B, P]) by the all-layers eager path.

    ``full_rollout`` forms R = Â_L⋯Â_1 as a matrix product (what the reference code does) instead of the row.
    Gradient targets are the model's own argmax label (free generation).
    """
    B = inputs.input_ids.shape[0]
    backbone.model.set_attn_implementation({"text_config": "eager", "vision_config": "sdpa"})
    try:
        embeds = backbone.model.get_input_embeddings()(inputs.input_ids).clone()
        embeds[inputs.soft_mask] = prompts.reshape(-1, prompts.shape[-1])
        grad = method != "rollout"
        with torch.set_grad_enabled(grad):
            if grad:
                embeds.requires_grad_(True)
            out = backbone.model.model(inputs_embeds=embeds, attention_mask=inputs.attention_mask,
                                       position_ids=inputs.position_ids,
                                       mm_encoder_outputs={"image": backbone.vision_output([feats] * B)},
                                       output_attentions=True, use_cache=False)
            logits = backbone.model.lm_head(out.last_hidden_state[:, -1])[:, label_ids]
        attn = torch.stack([out.attentions[layer] for layer in layers], 1)  # [B, L, H, T, T]
        q = torch.full((B,), attn.shape[-1] - 1)
        if method == "rollout":
            head_avg = attn.mean(2).detach().to(rollout_dtype)
            row = (ref.rollout_full(head_avg)[torch.arange(B), q] if full_rollout
                   else ref.rollout_row_reference(head_avg, q))
        else:
            s = logits.gather(1, logits.argmax(-1, keepdim=True)).sum()
            grads = torch.stack(torch.autograd.grad(s, [out.attentions[layer] for layer in layers]), 1)
            if method == "glimpse":  # the same padding rule as the production path (operators.padding_pairs)
                grads = grads * padding_pairs(inputs.attention_mask)[:, None]
            full = ref.attnlrp_full if method == "attnlrp" else ref.glimpse_full
            row = full(attn.detach().double(), grads.double())[torch.arange(B), q]
        return logits.detach(), row[inputs.image_mask].reshape(B, -1).abs().float()
    finally:
        backbone.model.set_attn_implementation({"text_config": CAPTURE_IMPLEMENTATION, "vision_config": "sdpa"})
