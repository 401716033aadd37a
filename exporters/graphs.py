"""Declarative description of the three exported graphs, kept apart from conversion and validation.

vision:   preprocessed pixels -> image features [P, D] (+ Qwen3-VL DeepStack features [k, P, D])
embed:    input_ids [B, T] -> inputs_embeds [B, T, D]
decoder:  inputs_embeds (soft prompt and image features already spliced), attention_mask, position_ids
          (+ Qwen3-VL visual_pos_masks and DeepStack) -> logits of the last prompt position [B, V] and the probed
          layers' post-RoPE queries [B, L, Hq, T, d] and keys [B, L, Hkv, T, d] (the **probe contract** ``qk``).

Why Q and K leave the graph (not the rollout row computed inside it): every layer, probed or not, then runs the
runtime's fused attention (ONNX ``Attention``, opset 23), nothing of size T × T is built for the probe, and the
rollout row is computed outside by the same registry op as the torch backend (``rollout_row_qk``: C++ on CPU,
Triton on CUDA), blockwise from Q and K. The outputs are O(T) per sample.
"""

from __future__ import annotations

import contextlib
import types
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from fixate_rt.backends.graph_runtime import PROBE_CONTRACT as RUNTIME_CONTRACT
from fixate_rt.backends.graph_runtime import PROBE_OUTPUTS
from fixate_rt.probes.capture import record_attention

# The decoder graph's probe outputs; a manifest records this contract and its version, and loading refuses another.
PROBE_CONTRACT = {**RUNTIME_CONTRACT, "outputs": list(PROBE_OUTPUTS)}


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
def patched_methods(model: torch.nn.Module, methods: dict[str, dict]):
    """While active, every submodule of ``model`` whose class is named in ``methods`` has those methods replaced
    (bound to the instance; ``{class name: {method name: function}}``); afterwards the class's own are back."""
    patched = [(module, name) for module in model.modules() for name in methods.get(type(module).__name__, {})]
    for module, name in patched:
        setattr(module, name, types.MethodType(methods[type(module).__name__][name], module))
    try:
        yield
    finally:
        for module, name in patched:
            delattr(module, name)


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

    with patched_methods(model, {"Qwen3VLVisionAttention": {"forward": forward}}):
        yield


@contextlib.contextmanager
def dense_qwen3vl_text_steps(model: torch.nn.Module):
    """Two steps of Qwen3-VL's text model written with dense ops while this context is active (the same values,
    bit for bit; the export is validated against the unpatched model):

    - M-RoPE's recomposition of the (t, h, w) frequencies [3, B, T, F] assigns interleaved slices in place, which
      the ONNX converter turns into 4 ScatterND, 4 ScatterElements and 12 Transposes per forward; here it is one
      multiply by a constant 0/1 section mask and a sum over the 3 axes;
    - DeepStack's injection ``h[mask] += features`` becomes NonZero over an expanded [B, T, D] mask and a
      ScatterND per element, per injected layer; here row i of ``h`` adds feature row (cumsum(mask)[i] − 1) times
      mask[i], a Gather and an Add.

    On the tiny Qwen3-VL decoder (batch 8, ONNX Runtime, 2 threads) those steps took about a sixth of the graph's
    time."""
    def recomposition_frequencies(self, freq):  # freq [3, B, T, F] -> [B, T, 2F]
        section = torch.zeros(3, freq.shape[-1], dtype=freq.dtype, device=freq.device)
        section[0] = 1.0
        for axis, offset in enumerate((1, 2), start=1):  # as transformers: H and W take every third frequency
            section[0, offset:self.mrope_section[axis] * 3:3] = 0.0
            section[axis, offset:self.mrope_section[axis] * 3:3] = 1.0
        thw = (freq * section[:, None, None, :]).sum(0)
        return torch.cat((thw, thw), dim=-1)

    def deepstack_process(self, hidden_states, visual_pos_masks, visual_embeds):
        mask = visual_pos_masks.to(hidden_states.device).reshape(-1)  # [B·T]
        row = (mask.long().cumsum(0) - 1).clamp(min=0)  # which feature row each image token takes
        dense = visual_embeds.to(hidden_states.dtype)[row] * mask[:, None].to(hidden_states.dtype)
        return hidden_states + dense.view_as(hidden_states)

    with patched_methods(model, {"Qwen3VLTextRotaryEmbedding": {"recomposition_frequencies": recomposition_frequencies},
                                 "Qwen3VLTextModel": {"_deepstack_process": deepstack_process}}):
        yield


class EmbedGraph(torch.nn.Module):
    def __init__(self, backbone) -> None:
        super().__init__()
        self.embed = backbone.model.get_input_embeddings()

    def forward(self, input_ids):
        return self.embed(input_ids)


class DecoderGraph(torch.nn.Module):
    """Decoder over spliced inputs_embeds -> (last-position logits [B, V], probed layers' post-RoPE queries
    [B, L, Hq, T, d] and keys [B, L, Hkv, T, d]); every layer runs SDPA (the probe contract ``qk``)."""

    def __init__(self, backbone) -> None:
        super().__init__()
        self.lm = backbone.model.model.language_model
        self.head = backbone.model.lm_head
        self.layers = tuple(backbone.default_probe_layers)
        self.family = backbone.family

    def forward(self, inputs_embeds, attention_mask, position_ids, visual_pos_masks=None, deepstack=None):
        kwargs = {}
        if deepstack is not None:
            kwargs = {"visual_pos_masks": visual_pos_masks, "deepstack_visual_embeds": list(deepstack.unbind(0))}
        with record_attention(self.layers, "qk_graph") as recorder:
            hidden = self.lm(inputs_embeds=inputs_embeds, attention_mask=attention_mask, position_ids=position_ids,
                             use_cache=False, **kwargs).last_hidden_state
        q = torch.stack([recorder.queries[layer] for layer in self.layers], 1)
        k = torch.stack([recorder.keys[layer] for layer in self.layers], 1)
        return self.head(hidden[:, -1]), q, k
