"""The probing operators on a live backbone: label logits + image-token relevance in one call.

Efficient paths (docs/architecture.md, "Fast paths"), each tested against reference.py:
* rollout — mean_h(A) of the probed layers only (other layers SDPA), row carried down as a vector;
* attnlrp — only the answer row is needed: A[last, :] recomputed from q_last and K, and
  ∂s/∂A[last, :] = dO[last]·Vᵀ from one backward through SDPA (no T×T tensor, no per-layer autograd.grad);
* glimpse — per-head A and ∂s/∂A of the probed layers only, row carried down as a vector.
The gradient target s is the logit of ``targets`` (teacher forcing) or of the model's own choice (argmax over
the slate's labels: free generation with one constrained greedy token).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from .. import ops
from ..model_io import DecoderInputs, SlateFeatures
from ..plan import OpPlan


@dataclass
class ProbeResult:
    """label_logits [B, S], token_relevance [B, P] (|R[last, image tokens]|, fp32), logits [B, V].

    Detached unless the probe ran with ``differentiable=True`` (training), in which case the relevance and the
    logits carry the graph back to the soft prompts (through ∇A, with create_graph, for GLIMPSE/AttnLRP).
    """

    label_logits: torch.Tensor
    token_relevance: torch.Tensor
    logits: torch.Tensor | None = None


def _double_backward_safe(differentiable: bool):
    """Training GLIMPSE/AttnLRP differentiates through ∂s/∂A (create_graph), i.e. through SDPA's backward.
    The fused CPU/flash SDPA kernels have no double backward; the math backend is plain differentiable ops."""
    if not differentiable:
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel(SDPBackend.MATH)


def padding_pairs(attention_mask: torch.Tensor) -> torch.Tensor:
    """[B, 1, T, T] 1 where both query and key are real tokens, 0 where either is padding.

    GLIMPSE's head score and layer weight sum ∂s/∂A over *every* entry, including those the mask forbids. At a
    padded key that gradient is dO·V of whatever the attention implementation computed for the padding, so it
    would make a row's relevance depend on its batch; fixate-rt zeroes it (A is 0 there, so nothing else changes).
    """
    m = attention_mask.to(torch.float32)
    return (m[:, None, :, None] * m[:, None, None, :])


def _target_scalar(label_logits: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
    chosen = label_logits.argmax(-1) if targets is None else targets.to(label_logits.device)
    return label_logits.gather(1, chosen[:, None]).sum()  # samples are independent: Σ_b s_b


def probe(backbone, inputs: DecoderInputs, slate: SlateFeatures | list[SlateFeatures], prompts: torch.Tensor | None,
          label_ids: list[int] | torch.Tensor, plan: OpPlan, *, layers: tuple[int, ...], residual: float = 0.5,
          targets: torch.Tensor | None = None) -> ProbeResult:
    """Run a torch backbone's decoder once with the capture ``plan`` names and return logits and token relevance.

    ``plan`` (`fixate_rt.plan.plan_ops`) fixes the combine op, its implementation and the capture mode.
    ``targets`` [B] are label indices (teacher forcing); None means the model's own argmax (free generation).
    With ``plan.differentiable`` everything stays in the autograd graph (training).
    """
    B, T = inputs.input_ids.shape
    n_tokens = {f.n_tokens for f in (slate if isinstance(slate, list) else [slate])}
    if len(n_tokens) != 1:
        raise ValueError(f"one batch must share the image-token count, got {sorted(n_tokens)}")
    differentiable = plan.differentiable
    last = torch.full((B,), T - 1, dtype=torch.long)
    keep = (lambda x: x) if differentiable else (lambda x: x.detach())
    op, impl = plan.combine_op, plan.combine_impl
    if op == "rollout_row_qk":
        # Fused path: every layer runs SDPA; the probed layers hand over q and k (and the forward's log-sum-exp),
        # and the kernel computes the rollout row without any T×T attention (kernels/rollout.py).
        with torch.no_grad():
            out = backbone.decode(inputs, slate, prompts, label_ids, layers, capture=plan.capture)  # qk or qk_cpp
            q = torch.stack([out.capture.queries[layer] for layer in layers], dim=1)  # [B, L, Hq, T, d]
            k = torch.stack([out.capture.keys[layer] for layer in layers], dim=1)  # [B, L, Hkv, T, d]
            lse = (torch.stack([out.capture.lse[layer] for layer in layers], dim=1)  # [B, L, Hq, T]
                   if all(layer in out.capture.lse for layer in layers) else None)
            row = ops.rollout_row_qk(q, k, last, inputs.attention_mask, residual=residual, lse=lse, impl=impl)
    elif op == "rollout_row":
        with torch.set_grad_enabled(differentiable):
            out = backbone.decode(inputs, slate, prompts, label_ids, layers, capture="mean", grad=differentiable)
            attn = torch.stack([out.capture.maps[layer] for layer in layers], dim=1)  # [B, L, T, T]
            row = ops.rollout_row(attn, last, residual=residual, impl=impl)
    elif op == "attnlrp_row":
        with _double_backward_safe(differentiable):
            out = backbone.decode(inputs, slate, prompts, label_ids, layers, capture="row", grad=True)
        s = _target_scalar(out.label_logits, targets)
        d_out = torch.autograd.grad(s, [out.capture.outputs[layer] for layer in layers], create_graph=differentiable)
        grad_rows = torch.stack([torch.einsum("bhd,bhtd->bht", g[:, -1].float(), out.capture.values[layer].float())
                                 for g, layer in zip(d_out, layers)], dim=1)  # [B, L, H, T]
        attn_rows = torch.stack([out.capture.maps[layer] for layer in layers], dim=1)
        grad_rows = grad_rows * plan.grad_scale  # 0.1 in training, as the reference (plan.ATTNLRP_TRAIN_GRAD_SCALE)
        row = ops.attnlrp_row(keep(attn_rows).double(), keep(grad_rows).double(), last, impl=impl)
    elif op == "glimpse_row":
        with _double_backward_safe(differentiable):
            out = backbone.decode(inputs, slate, prompts, label_ids, layers, capture="heads", grad=True)
        maps = [out.capture.maps[layer] for layer in layers]
        s = _target_scalar(out.label_logits, targets)
        grads = torch.autograd.grad(s, maps, create_graph=differentiable)
        valid = padding_pairs(inputs.attention_mask)
        row = ops.glimpse_row([keep(m) for m in maps], [keep(g) * valid for g in grads], last, impl=impl)
    else:
        raise ValueError(f"a torch backbone cannot run the combine op {op!r}")
    token_rel = inputs.image_tokens(row).abs().float()  # [B, P]
    return ProbeResult(keep(out.label_logits), keep(token_rel), keep(out.logits) if out.logits is not None else None)
