"""The torch backend: a Hugging Face VLM whose decoder gets the soft prompt spliced into inputs_embeds at position 0.

Subclasses (one per model family) say how text and image tokens are laid out (`encode_text`), how positions are computed
(`positions`) and how cached vision features enter the model's own image path (`vision_output`).
"""

from __future__ import annotations

import torch

from ..config import BackendKind
from ..input_assembly import InputAssembler
from ..model_io import DecoderInputs, DecoderOutput, SlateFeatures
from ..probes.capture import record_attention

DEFAULT_PROBE_LAYERS = 6  # docs/method.md §4.1: the last 6 decoder layers (Qwen3-VL); InternVL overrides (5)


def last_layers(num_layers: int, depth: int = DEFAULT_PROBE_LAYERS) -> tuple[int, ...]:
    """The decoder layers the probes read by default: the last ``depth`` of ``num_layers`` (all when fewer)."""
    return tuple(range(max(0, num_layers - depth), num_layers))


class SplicedVLM(InputAssembler):
    """A Hugging Face VLM with soft prompts spliced into its input embeddings: the ``torch`` `Backend`."""

    family = ""
    probe_depth = DEFAULT_PROBE_LAYERS
    kind = BackendKind.torch
    supports_grad = True

    def __init__(self, model, processor, name: str) -> None:
        self.model = model.eval().requires_grad_(False)
        self.processor = processor
        self.name = name
        text = model.config.text_config
        self.hidden_size = int(text.hidden_size)
        self.num_layers = int(text.num_hidden_layers)
        self.default_probe_layers = last_layers(self.num_layers, self.probe_depth)
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype
        if processor.image_pad_id != model.config.image_token_id:
            raise ValueError(f"{name}: tokenizer's image token {processor.image_pad_id} != config image_token_id "
                             f"{model.config.image_token_id}")

    def set_max_tiles(self, tiles: int) -> int | None:
        """Cap the image tiles per slate (InternVL's dynamic tiling); returns the cap applied, None where the
        family does not tile (Qwen-VL resizes the whole image)."""
        return None

    # ------------------------------------------------------------------------------ family hooks
    def encode_slate(self, image) -> SlateFeatures:
        raise NotImplementedError

    def vision_output(self, slates: list[SlateFeatures]):
        raise NotImplementedError

    def device_label(self) -> str:
        return str(self.device)

    def probe(self, inputs: DecoderInputs, slates: SlateFeatures | list[SlateFeatures], prompts: torch.Tensor | None,
              label_ids: list[int] | torch.Tensor, plan, *, layers: tuple[int, ...], residual: float = 0.5,
              targets: torch.Tensor | None = None):
        """`Backend.probe`: one decoder forward with the capture ``plan`` names (probes/operators.py)."""
        from ..probes.operators import probe

        return probe(self, inputs, slates, prompts, label_ids, plan, layers=layers, residual=residual, targets=targets)

    # ----------------------------------------------------------------------------------- shared
    def decode(self, inputs: DecoderInputs, slates: SlateFeatures | list[SlateFeatures], prompts: torch.Tensor | None,
               label_ids: list[int] | torch.Tensor | None, probe_layers: tuple[int, ...] = (), capture: str = "mean",
               grad: bool = False) -> DecoderOutput:
        """Decoder forward. prompts [B, N, D] or None. Returns label logits [B, S] at the last position
        (``label_ids`` shared, or [B, S] per row) and the full-vocabulary logits [B, V] of that position.

        ``capture`` says what the probed layers record (see probes/capture.py). With ``grad`` the forward
        builds an autograd graph from ``inputs_embeds`` on, so ∂(logit)/∂(captured tensors) can be taken.
        """
        B = inputs.input_ids.shape[0]
        slates = [slates] * B if isinstance(slates, SlateFeatures) else list(slates)
        with torch.set_grad_enabled(grad or torch.is_grad_enabled()):
            embeds = self.model.get_input_embeddings()(inputs.input_ids)
            if prompts is not None and prompts.shape[1] > 0:
                embeds = inputs.splice_prompts(embeds, prompts)
            if grad and not embeds.requires_grad:
                embeds = embeds.detach().requires_grad_(True)
            with record_attention(tuple(probe_layers), capture) as recorder:
                hidden = self.model.model(
                    inputs_embeds=embeds, attention_mask=inputs.attention_mask, position_ids=inputs.position_ids,
                    mm_encoder_outputs={"image": self.vision_output(slates)}, use_cache=False,
                ).last_hidden_state
            # Only the last prompt position predicts the answer label: project just that row.
            logits = self.model.lm_head(hidden[:, -1]).float()
        if label_ids is None:
            label_logits = logits[:, :0]
        elif isinstance(label_ids, torch.Tensor):  # [B, S] per-row label ids (batches that mix slates)
            label_logits = logits.gather(1, label_ids.to(logits.device))
        else:
            label_logits = logits[:, label_ids]
        return DecoderOutput(label_logits, recorder, logits)
