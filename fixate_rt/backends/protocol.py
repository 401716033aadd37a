"""The `Backend` protocol: what runs a batch of (user, slate) prompts through a frozen VLM.

Two implementations: the torch adapters (`fixate_rt.backbones.SplicedVLM` subclasses: the Hugging Face model
itself, gradients available) and `ExportedBackend` (an export folder in ONNX, torch.export or TorchScript
format; rollout computed inside the decoder graph, no gradients). The batch pipeline
(`fixate_rt.pipeline`) talks to nothing else.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

import torch

from ..config import BackendKind
from ..model_io import DecoderInputs, SlateFeatures

if TYPE_CHECKING:
    from ..plan import OpPlan
    from ..probes.operators import ProbeResult


@runtime_checkable
class Backend(Protocol):
    kind: BackendKind
    supports_grad: bool  # True: `probe` can run with a differentiable plan (training, GLIMPSE, AttnLRP)
    family: str
    name: str
    hidden_size: int  # D
    num_layers: int  # L of the decoder
    default_probe_layers: tuple[int, ...]
    device: torch.device  # where assembled inputs live

    def encode_slate(self, image) -> SlateFeatures:
        """Preprocess + frozen vision tower, once per slate."""
        ...

    def label_token_ids(self, labels: tuple[str, ...]) -> list[int]:
        """The single token id of each answer label."""
        ...

    def use_template(self, template) -> None:
        """Render every following prompt with this `fixate_rt.config.Template` (one per run)."""
        ...

    def build_inputs(self, profiles: list[str], labels, slates, n_soft: int, contexts="") -> DecoderInputs:
        """A left-padded batch [soft prompt (N) | template with P image tokens] with positions and masks."""
        ...

    def probe(self, inputs: DecoderInputs, slates: SlateFeatures | list[SlateFeatures], prompts: torch.Tensor | None,
              label_ids: list[int] | torch.Tensor, plan: OpPlan, *, layers: tuple[int, ...], residual: float = 0.5,
              targets: torch.Tensor | None = None) -> ProbeResult:
        """Decode the batch: label logits [B, S] at the last prompt position and image-token relevance [B, P]."""
        ...

    def device_label(self) -> str:
        """Where the decoder runs, for run.json (a torch device, or the ONNX Runtime providers)."""
        ...
