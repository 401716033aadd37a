"""Declarative description of the three exported graphs, kept apart from conversion and validation.

vision:   preprocessed pixels -> image features [P, D] (+ Qwen3-VL DeepStack features [k, P, D])
embed:    input_ids [B, T] -> inputs_embeds [B, T, D]
decoder:  inputs_embeds (soft prompt and image features already spliced), attention_mask, position_ids
          (+ Qwen3-VL visual_pos_masks and DeepStack) -> logits of the last prompt position [B, V] and the
          **rollout row** of that position [B, T], computed in the graph from the probed layers' attention.

Why the rollout row in the graph (not per-layer attention rows for the C++ rollout): the row is O(T) per
sample, so the exported decoder's outputs stay small at any length, ONNX Runtime does the whole probe in one
session run (no T×T tensor crosses the graph boundary), and a runtime without PyTorch needs nothing else.
The probed layers compute eager attention inside the graph; every other layer keeps the fused path.
"""

from __future__ import annotations

import contextlib
import types
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from fixate_rt.probes.capture import record_attention
from fixate_rt.probes.reference import rollout_row_reference


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dims: tuple[str | int, ...]  # named dims are dynamic
    dtype: str = "float32"


@dataclass(frozen=True)
class GraphSpec:
    name: str
    file: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    dynamic: bool = True  # False: exported for fixed shapes (e.g. the Qwen vision grid)
    notes: str = ""

    def to_json(self) -> dict:
        return {"file": self.file, "dynamic": self.dynamic, "notes": self.notes,
                "inputs": [{"name": t.name, "dims": list(t.dims), "dtype": t.dtype} for t in self.inputs],
                "outputs": [{"name": t.name, "dims": list(t.dims), "dtype": t.dtype} for t in self.outputs]}


class VisionGraph(torch.nn.Module):
    """pixel values -> image features (and DeepStack features for Qwen3-VL)."""

    def __init__(self, backbone, grid_thw: torch.Tensor | None) -> None:
        super().__init__()
        self.model = backbone.model.model
        self.family = backbone.family
        self.grid = grid_thw

    def forward(self, pixel_values):
        if self.family == "internvl":
            out = self.model.get_image_features(pixel_values, return_dict=True).pooler_output
            return out.reshape(-1, out.shape[-1])
        out = self.model.get_image_features(pixel_values, self.grid, return_dict=True)
        return out.pooler_output[0], torch.stack([f[0] for f in out.deepstack_features])


@contextlib.contextmanager
def single_image_vision_attention(model: torch.nn.Module):
    """Qwen3-VL's vision attention splits the patch sequence per image with sizes read out of a tensor
    (``lengths.tolist()``), which torch.export cannot trace. A slate is one image, so that split is the identity:
    while this context is active each vision attention runs one SDPA over the whole sequence (the same maths;
    the export is validated against the unpatched model)."""
    from transformers.models.qwen3_vl.modeling_qwen3_vl import apply_rotary_pos_emb_vision

    def forward(self, hidden_states, cu_seqlens, position_embeddings=None, **kwargs):
        n = hidden_states.shape[0]
        q, k, v = self.qkv(hidden_states).reshape(n, 3, self.num_heads, -1).permute(1, 0, 2, 3).unbind(0)
        cos, sin = position_embeddings
        q, k = apply_rotary_pos_emb_vision(q, k, cos, sin)
        q, k, v = (t.transpose(0, 1).unsqueeze(0) for t in (q, k, v))  # [1, H, P, d]
        out = F.scaled_dot_product_attention(q, k, v, scale=self.scaling)
        return self.proj(out.transpose(1, 2).reshape(n, -1))

    patched = [m for m in model.modules() if type(m).__name__ == "Qwen3VLVisionAttention"]
    for module in patched:
        module.forward = types.MethodType(forward, module)
    try:
        yield
    finally:
        for module in patched:
            del module.forward


class EmbedGraph(torch.nn.Module):
    def __init__(self, backbone) -> None:
        super().__init__()
        self.embed = backbone.model.get_input_embeddings()

    def forward(self, input_ids):
        return self.embed(input_ids)


class DecoderGraph(torch.nn.Module):
    """Decoder over spliced inputs_embeds -> (last-position logits [B, V], rollout row [B, T])."""

    def __init__(self, backbone, residual: float = 0.5) -> None:
        super().__init__()
        self.lm = backbone.model.model.language_model
        self.head = backbone.model.lm_head
        self.layers = tuple(backbone.default_probe_layers)
        self.family = backbone.family
        self.residual = residual

    def _rollout(self, recorder, batch: int):
        attn = torch.stack([recorder.maps[layer] for layer in self.layers], 1)  # [B, L, T, T]
        last = torch.full((batch,), attn.shape[-1] - 1, dtype=torch.long)
        return rollout_row_reference(attn, last, self.residual)

    def forward(self, inputs_embeds, attention_mask, position_ids, visual_pos_masks=None, deepstack=None):
        kwargs = {}
        if deepstack is not None:
            kwargs = {"visual_pos_masks": visual_pos_masks, "deepstack_visual_embeds": list(deepstack.unbind(0))}
        with record_attention(self.layers, "mean") as recorder:
            hidden = self.lm(inputs_embeds=inputs_embeds, attention_mask=attention_mask, position_ids=position_ids,
                             use_cache=False, **kwargs).last_hidden_state
        return self.head(hidden[:, -1]), self._rollout(recorder, inputs_embeds.shape[0])


def specs(family: str, deepstack: int, suffix: str = "onnx") -> dict[str, GraphSpec]:
    if family == "internvl":
        vision = GraphSpec("vision", f"vision.{suffix}", (TensorSpec("pixel_values", ("tiles", 3, "S", "S")),),
                           (TensorSpec("image_features", ("P", "D")),), notes="tiles (+ thumbnail) of one slate")
        decoder_in = (TensorSpec("inputs_embeds", ("B", "T", "D")), TensorSpec("attention_mask", ("B", "T"), "int64"),
                      TensorSpec("position_ids", ("B", "T"), "int64"))
    else:
        vision = GraphSpec("vision", f"vision.{suffix}", (TensorSpec("pixel_values", ("patches", "C·t·p·p")),),
                           (TensorSpec("image_features", ("P", "D")), TensorSpec("deepstack", (deepstack, "P", "D"))),
                           dynamic=False, notes="exported for the grid of the export-time slate size (fixed-size renders)")
        decoder_in = (TensorSpec("inputs_embeds", ("B", "T", "D")), TensorSpec("attention_mask", ("B", "T"), "int64"),
                      TensorSpec("position_ids", (3, "B", "T"), "int64"), TensorSpec("visual_pos_masks", ("B", "T"), "bool"),
                      TensorSpec("deepstack", (deepstack, "BP", "D")))
    return {
        "vision": vision,
        "embed": GraphSpec("embed", f"embed.{suffix}", (TensorSpec("input_ids", ("B", "T"), "int64"),),
                           (TensorSpec("inputs_embeds", ("B", "T", "D")),)),
        "decoder": GraphSpec("decoder", f"decoder.{suffix}", decoder_in,
                             (TensorSpec("logits", ("B", "V")), TensorSpec("rollout_row", ("B", "T")))),
    }
