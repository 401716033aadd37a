"""The op plan: which implementation runs each probing op, on which device, decided once per run.

From (probe, kernel, device, needs-grad, backend) the plan fixes
* the combine op (``rollout_row`` from head-averaged maps, ``rollout_row_qk`` from captured Q/K,
  ``attnlrp_row``, ``glimpse_row``, or the rollout row computed inside an exported decoder graph),
* what the probed layers capture (probes/capture.py modes: ``mean``, ``qk``, ``row``, ``heads``),
* the combine implementation (torch / cpp / triton, resolved through `fixate_rt.ops`),
* the pooling implementation and the device pooling runs on.

`probe()` and the batch pipeline only read the plan; run.json records `OpPlan.record()`, which names exactly
what ran. Nothing else in fixate-rt decides a kernel.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from . import ops
from .config import BackendKind, Kernel, Probe, parse_choice

COMBINE_OP = {Probe.rollout: "rollout_row", Probe.attnlrp: "attnlrp_row", Probe.glimpse: "glimpse_row"}
CAPTURE = {"rollout_row": "mean", "rollout_row_qk": "qk", "attnlrp_row": "row", "glimpse_row": "heads"}
# The reference scales ∂s/∂A by 0.1 when AttnLRP trains (docs/method.md §4.2). E = (A⊙s∇A)/r̃ only sees the
# scale through the stabiliser ε (r̃ = r + ε·sign r), i.e. on rows whose relevance mass is near ε.
ATTNLRP_TRAIN_GRAD_SCALE = 0.1


@dataclass(frozen=True)
class OpPlan:
    """What runs. ``combine_impl`` is an `ops` implementation name, or the backend's graph for exports."""

    probe: Probe
    combine_op: str
    combine_impl: str
    capture: str  # the capture mode of the probed layers ("graph": inside the exported decoder)
    device: torch.device  # where the decoder, capture and combine run
    pool_impl: str
    pool_device: torch.device
    differentiable: bool = False
    grad_scale: float = 1.0  # ∂s/∂A is multiplied by this before the combine op (AttnLRP in training: 0.1)

    def record(self) -> dict[str, dict[str, str]]:
        """run.json's ``implementations``: per op, the implementation and the device it ran on."""
        combine = {"impl": self.combine_impl, "device": str(self.device), "capture": self.capture}
        if self.grad_scale != 1.0:
            combine["grad_scale"] = self.grad_scale
        return {self.combine_op: combine, "slot_pool": {"impl": self.pool_impl, "device": str(self.pool_device)}}


def _fused_rollout_wanted(kernel: Kernel, device: torch.device) -> bool:
    """Q/K capture (every layer SDPA) + a fused row: the Triton kernel when asked for or on CUDA, the C++ one on
    CPU whenever the C++ module is built (``auto`` or ``cpp``). Only ``--kernel torch`` keeps the eager capture."""
    if kernel is Kernel.triton:
        return True
    usable = ops.available("rollout_row_qk", device)
    if device.type == "cuda":
        return kernel is Kernel.auto and not usable["triton"]
    return kernel in (Kernel.auto, Kernel.cpp) and not usable["cpp"]


def plan_ops(probe: Probe | str, kernel: Kernel | str, device: torch.device | str, *, needs_grad: bool = False,
             backend: BackendKind | str = BackendKind.torch) -> OpPlan:
    """Decide every op of a run. Raises `UnavailableError` for an explicit kernel that cannot run here."""
    probe = parse_choice(Probe, probe, "probe")
    kernel = parse_choice(Kernel, kernel, "kernel")
    backend = parse_choice(BackendKind, backend, "backend")
    device = torch.device(device)
    cpu = torch.device("cpu")
    if backend.exported:  # the decoder graph returns the probed layers' Q and K; the row and pooling run on the host
        if probe is not Probe.rollout or needs_grad:
            from .errors import UnavailableError

            raise UnavailableError(f"--probe {probe.value} needs gradients: torch backend only (exports carry rollout)")
        pool_kernel = kernel.value if kernel is not Kernel.triton else "auto"
        return OpPlan(probe, "rollout_row_qk", ops.resolve("rollout_row_qk", pool_kernel, device=cpu),
                      f"{backend.value}-graph-qk", cpu, ops.resolve("slot_pool", pool_kernel, device=cpu), cpu)
    if needs_grad:  # training: everything stays in the autograd graph, so only the torch implementations qualify
        op = COMBINE_OP[probe]
        scale = ATTNLRP_TRAIN_GRAD_SCALE if probe is Probe.attnlrp else 1.0
        return OpPlan(probe, op, "torch", CAPTURE[op], device, "torch", device, differentiable=True, grad_scale=scale)
    op = COMBINE_OP[probe]
    if probe is Probe.rollout and _fused_rollout_wanted(kernel, device):
        op = "rollout_row_qk"
    combine_impl = ops.resolve(op, kernel.value, device=device)
    capture = CAPTURE[op]
    if op == "rollout_row_qk" and combine_impl == "cpp":
        capture = "qk_cpp"  # padded batches' probed layers on the C++ causal kernel too (probes/capture.py)
    if device.type == "cuda":
        # p_click and relevance stay on the device until a slate is done: pool there, with torch.
        pool_impl, pool_device = "torch", device
    else:
        pool_kernel = kernel.value if kernel is not Kernel.triton else "auto"
        pool_impl, pool_device = ops.resolve("slot_pool", pool_kernel, device=cpu), cpu
    return OpPlan(probe, op, combine_impl, capture, device, pool_impl, pool_device)
