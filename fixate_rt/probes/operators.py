"""The probing operators on a live backbone: label logits + image-token relevance in one call.

Efficient paths (architecture.md, "Fast paths"), each tested against probes/reference.py:
* rollout — mean_h(A) of the probed layers only (other layers SDPA), row carried down as a vector;
* attnlrp — only the answer row is needed: A[last, :] recomputed from q_last and K, and
  ∂s/∂A[last, :] = dO[last]·Vᵀ from one backward through SDPA (no T×T tensor, no per-layer autograd.grad);
* glimpse — per-head A and ∂s/∂A of the probed layers only, row carried down as a vector.
The gradient target s is the logit of ``targets`` (teacher forcing) or of the model's own choice (argmax over
the slate's labels: free generation with one constrained greedy token).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import ops
from ..backbones.base import DecoderInputs, SlateFeatures
from .reference import attnlrp_row, glimpse_row

PROBES = ("rollout", "glimpse", "attnlrp")
GRADIENT_PROBES = ("glimpse", "attnlrp")


@dataclass
class ProbeResult:
    """label_logits [B, S] (detached), token_relevance [B, P] (|R[last, image tokens]|, fp32, detached)."""

    label_logits: torch.Tensor
    token_relevance: torch.Tensor


def _target_scalar(label_logits: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
    chosen = label_logits.argmax(-1) if targets is None else targets.to(label_logits.device)
    return label_logits.gather(1, chosen[:, None]).sum()  # samples are independent: Σ_b s_b


def probe(backbone, inputs: DecoderInputs, slate: SlateFeatures, prompts: torch.Tensor | None,
          label_ids: list[int], *, method: str = "rollout", layers: tuple[int, ...], residual: float = 0.5,
          targets: torch.Tensor | None = None, rollout_impl: str = "auto") -> ProbeResult:
    """Run the decoder once with the capture ``method`` needs and return logits and token relevance."""
    if method not in PROBES:
        raise ValueError(f"probe must be one of {PROBES}, got {method!r}")
    B, T = inputs.input_ids.shape
    last = torch.full((B,), T - 1, dtype=torch.long)
    if method == "rollout":
        with torch.no_grad():
            out = backbone.decode(inputs, slate, prompts, label_ids, layers, capture="mean")
        attn = torch.stack([out.capture.maps[layer] for layer in layers], dim=1)  # [B, L, T, T]
        row = ops.rollout_row(attn, last, residual=residual, impl=rollout_impl)
    elif method == "attnlrp":
        out = backbone.decode(inputs, slate, prompts, label_ids, layers, capture="row", grad=True)
        s = _target_scalar(out.label_logits, targets)
        d_out = torch.autograd.grad(s, [out.capture.outputs[layer] for layer in layers])  # each [B, T, H, d]
        grad_rows = torch.stack([torch.einsum("bhd,bhtd->bht", g[:, -1].float(), out.capture.values[layer].float())
                                 for g, layer in zip(d_out, layers)], dim=1)  # [B, L, H, T]
        attn_rows = torch.stack([out.capture.maps[layer] for layer in layers], dim=1)
        row = attnlrp_row(attn_rows.detach().double(), grad_rows.detach().double(), last)
    else:  # glimpse
        out = backbone.decode(inputs, slate, prompts, label_ids, layers, capture="heads", grad=True)
        maps = [out.capture.maps[layer] for layer in layers]
        s = _target_scalar(out.label_logits, targets)
        grads = torch.autograd.grad(s, maps)
        # float64: GLIMPSE's row normalisation (ε = 1e-8) amplifies fp32 rounding in rows of tiny mass.
        row = glimpse_row(torch.stack([m.detach() for m in maps], 1).double(), torch.stack(grads, 1).double(), last)
    token_rel = row[inputs.image_mask].reshape(B, slate.n_tokens).abs().float()
    return ProbeResult(out.label_logits.detach(), token_rel.detach())
