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

import contextlib
from dataclasses import dataclass

import torch

from .. import ops
from ..backbones.base import DecoderInputs, SlateFeatures
from .reference import GLIMPSE_DEPTH_TEMP, GLIMPSE_EPS, GLIMPSE_HEAD_TEMP

PROBES = ("rollout", "glimpse", "attnlrp")
GRADIENT_PROBES = ("glimpse", "attnlrp")


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


def _target_scalar(label_logits: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
    chosen = label_logits.argmax(-1) if targets is None else targets.to(label_logits.device)
    return label_logits.gather(1, chosen[:, None]).sum()  # samples are independent: Σ_b s_b


def glimpse_row_streaming(maps: list[torch.Tensor], grads: list[torch.Tensor], query_pos: torch.Tensor) -> torch.Tensor:
    """`reference.glimpse_row` one layer at a time: per-layer temporaries only, E_l kept head-reduced.

    maps, grads: per probed layer (shallow → deep) [B, H, T, T] -> [B, T]. Peak extra memory is one layer's
    [B, H, T, T] plus L × [B, T, T], instead of stacking [B, L, H, T, T] twice.
    """
    E, gammas = [], []
    for attn, grad in zip(maps, grads):
        G = torch.relu(grad * attn)
        sigma = G.sum((-1, -2)) / (torch.relu(grad).sum((-1, -2)) + GLIMPSE_EPS)  # [B, H]
        w = torch.softmax(sigma / GLIMPSE_HEAD_TEMP, dim=-1)
        e = torch.einsum("bh,bhij->bij", w, G)
        E.append(e / (e.sum(-1, keepdim=True) + GLIMPSE_EPS))
        gammas.append(grad.sum(1).abs().sum((-1, -2)))  # [B]
        del G
    gamma = torch.stack(gammas, 1)  # [B, L]
    depth = torch.arange(1, len(maps) + 1, dtype=gamma.dtype, device=gamma.device)
    s = torch.softmax(GLIMPSE_DEPTH_TEMP * depth, dim=0)
    alpha = gamma * s / ((gamma * s).sum(-1, keepdim=True) + GLIMPSE_EPS)
    B, T = E[0].shape[0], E[0].shape[-1]
    r = torch.zeros(B, T, dtype=E[0].dtype, device=E[0].device)
    r[torch.arange(B, device=r.device), query_pos.to(r.device)] = 1.0
    for layer in reversed(range(len(E))):
        r = r + alpha[:, layer, None] * torch.einsum("bi,bij->bj", r, E[layer])
    return r


def probe(backbone, inputs: DecoderInputs, slate: SlateFeatures | list[SlateFeatures], prompts: torch.Tensor | None,
          label_ids: list[int], *, method: str = "rollout", layers: tuple[int, ...], residual: float = 0.5,
          targets: torch.Tensor | None = None, impl: str = "auto", differentiable: bool = False) -> ProbeResult:
    """Run the decoder once with the capture ``method`` needs and return logits and token relevance.

    ``impl`` selects the implementation of the final combination op (rollout_row / attnlrp_row /
    glimpse_row; see `fixate_rt.ops`). GLIMPSE with ``impl="torch"`` uses the layer-streaming torch path.
    ``targets`` [B] are label indices (teacher forcing); None means the model's own argmax (free generation).
    With ``differentiable`` everything stays in the autograd graph (training).
    """
    if method not in PROBES:
        raise ValueError(f"probe must be one of {PROBES}, got {method!r}")
    B, T = inputs.input_ids.shape
    if getattr(backbone, "exported", False):  # ONNX Runtime: the rollout row comes out of the decoder graph
        if method != "rollout":
            from ..errors import UnavailableError

            raise UnavailableError(f"--probe {method} needs gradients: torch backend only (exports carry rollout)")
        label_logits, row = backbone.run_exported(inputs, slate, prompts, label_ids)
        return ProbeResult(label_logits.float(), inputs.image_tokens(row).abs().float())
    n_tokens = {f.n_tokens for f in (slate if isinstance(slate, list) else [slate])}
    if len(n_tokens) != 1:
        raise ValueError(f"one batch must share the image-token count, got {sorted(n_tokens)}")
    last = torch.full((B,), T - 1, dtype=torch.long)
    keep = (lambda x: x) if differentiable else (lambda x: x.detach())
    if differentiable:
        impl = "torch"
    if method == "rollout" and not differentiable and impl == "triton":
        # Fused path: every layer runs SDPA; the probed layers hand over q and k, and the Triton kernel
        # computes the rollout row without any T×T attention (kernels/rollout.py).
        with torch.no_grad():
            out = backbone.decode(inputs, slate, prompts, label_ids, layers, capture="qk")
            q = torch.stack([out.capture.maps[layer] for layer in layers], dim=1)  # [B, L, Hq, T, d]
            k = torch.stack([out.capture.values[layer] for layer in layers], dim=1)  # [B, L, Hkv, T, d]
            lse = (torch.stack([out.capture.lse[layer] for layer in layers], dim=1)  # [B, L, Hq, T]
                   if all(layer in out.capture.lse for layer in layers) else None)
            row = ops.rollout_row_qk(q, k, last, inputs.attention_mask, residual=residual, lse=lse, impl="triton")
    elif method == "rollout":
        with torch.set_grad_enabled(differentiable):
            out = backbone.decode(inputs, slate, prompts, label_ids, layers, capture="mean", grad=differentiable)
            attn = torch.stack([out.capture.maps[layer] for layer in layers], dim=1)  # [B, L, T, T]
            row = ops.rollout_row(attn, last, residual=residual, impl=impl)
    elif method == "attnlrp":
        with _double_backward_safe(differentiable):
            out = backbone.decode(inputs, slate, prompts, label_ids, layers, capture="row", grad=True)
        s = _target_scalar(out.label_logits, targets)
        d_out = torch.autograd.grad(s, [out.capture.outputs[layer] for layer in layers], create_graph=differentiable)
        grad_rows = torch.stack([torch.einsum("bhd,bhtd->bht", g[:, -1].float(), out.capture.values[layer].float())
                                 for g, layer in zip(d_out, layers)], dim=1)  # [B, L, H, T]
        attn_rows = torch.stack([out.capture.maps[layer] for layer in layers], dim=1)
        row = ops.attnlrp_row(keep(attn_rows).double(), keep(grad_rows).double(), last, impl=impl)
    else:  # glimpse
        with _double_backward_safe(differentiable):
            out = backbone.decode(inputs, slate, prompts, label_ids, layers, capture="heads", grad=True)
        maps = [out.capture.maps[layer] for layer in layers]
        s = _target_scalar(out.label_logits, targets)
        grads = torch.autograd.grad(s, maps, create_graph=differentiable)
        name = ops.resolve("glimpse_row", impl, device=maps[0].device)
        if name == "torch":
            row = glimpse_row_streaming([keep(m) for m in maps], [keep(g) for g in grads], last)
        else:
            row = ops.glimpse_row(torch.stack([m.detach() for m in maps], 1), torch.stack(grads, 1), last, impl=name)
    token_rel = inputs.image_tokens(row).abs().float()  # [B, P]
    return ProbeResult(keep(out.label_logits), keep(token_rel), keep(out.logits) if out.logits is not None else None)
