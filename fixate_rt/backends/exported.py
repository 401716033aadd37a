"""The exported backend: an export folder run without the transformers model classes.

Its format (``onnx``: ONNX Runtime, CPU provider or CUDA when available; ``export``: torch.export programs;
``torchscript``: legacy traces) is the backend's name. Only the rollout probe is available: the decoder graph
returns the probed layers' Q and K (probe contract ``qk``) and the row is computed by the registry op
``rollout_row_qk`` that the torch backend uses (C++ on CPU). GLIMPSE and AttnLRP need gradients (torch backend).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from .. import ops
from ..config import BackendKind
from ..errors import InputError, UnavailableError
from ..input_assembly import InputAssembler
from ..model_io import DecoderInputs, SlateFeatures
from ..probes.operators import ProbeResult
from . import ort_attention
from .graph_runtime import (
    PROBE_OUTPUTS,
    GraphSession,
    choose_providers,
    onnx_status,
    read_manifest,
    runtime_options,
)
from .positions import mrope_positions
from .trust import ExportTrust, authorise

if TYPE_CHECKING:
    from .describe import ModelInfo


class ExportedBackend(InputAssembler):
    """The `Backend` of an export folder: the same batch assembly as the torch adapters; the graphs decode."""

    supports_grad = False

    def __init__(self, folder: Path, manifest: dict, kind: BackendKind, sessions: dict[str, GraphSession],
                 processor, providers: list[str], authorised_by: str = "") -> None:
        self.folder, self.manifest, self.kind = folder, manifest, kind
        self.authorised_by = authorised_by  # how the folder passed the trust check (run.json)
        self.scale = float(manifest["probe"]["scale"])  # the probed layers' softmax scale
        self.quantization = manifest.get("quantization")
        self.runtime_options = runtime_options(kind.value)
        if kind is BackendKind.onnx:  # which kernel runs the decoder's causal attention (ort_attention)
            fused = sessions["decoder"].fused_attention
            self.runtime_options["decoder_attention"] = ort_attention.kernel_name() if fused else ort_attention.ORT_KERNEL
            if fused:
                self.runtime_options["decoder_custom_ops"] = sessions["decoder"].custom_ops
                on_openmp = ort_attention.ops_on_openmp()
                self.runtime_options["decoder_custom_op_threads"] = "openmp" if on_openmp else "onnxruntime intra-op"
                if on_openmp:
                    self.runtime_options["decoder_allow_spinning"] = False
            # the rollout row reads the log-sum-exp the fused kernel computed (else it makes its own pass)
            self.runtime_options["rollout_lse_from_graph"] = ort_attention.PROBE_LSE in sessions["decoder"].output_names
        self.family, self.name = manifest["family"], str(folder)
        self.hidden_size, self.num_layers = manifest["hidden_size"], manifest["num_layers"]
        self.default_probe_layers = tuple(manifest["probe_layers"])
        self.device, self.dtype = torch.device("cpu"), torch.float32  # where inputs are assembled (host)
        self.sessions, self.processor, self.providers = sessions, processor, providers

    @classmethod
    def load(cls, folder: Path, kind: BackendKind | str, device: str = "auto", *,
             trust: ExportTrust | bool = False, info: ModelInfo | None = None) -> ExportedBackend:
        """Open ``folder``: authorised by the trust model (`fixate_rt.backends.trust`: ONNX freely, the formats
        that can carry code only when trusted or signed), every file inside it and as the manifest records.
        ``info``: the folder's description, when the caller has one (its authorisation is reused)."""
        from transformers import AutoConfig, AutoTokenizer

        kind = BackendKind(kind)
        if kind is BackendKind.onnx and onnx_status():
            raise UnavailableError(onnx_status())
        folder = Path(folder)
        trust = ExportTrust.of(trust)
        if info is not None:
            authorised_by = info.authorise(trust)
        else:
            authorised_by = authorise(folder, read_manifest(folder, verify_files=False).get("runtime", "onnx"), trust)
        manifest = read_manifest(folder)  # verified: every file's digest, as the folder is now
        runtime = manifest.get("runtime", "onnx")
        if runtime != kind.value:
            raise InputError(f"{folder}: this export is in format '{runtime}'; run it with --backend {runtime} "
                             f"(or re-export with --format {kind.value})")
        providers = choose_providers(runtime, device)
        # The embedding graph is one Gather: a pool of its own would only spin beside the decoder's (tiny
        # Qwen3-VL decoder, batch 8: 45 ms per batch with a spinning embedding pool, 38 without).
        sessions = {name: GraphSession(runtime, folder / g["file"], [t["name"] for t in g["inputs"]],
                                       [t["name"] for t in g["outputs"]], providers, listed=manifest["files"],
                                       authorised=True, one_thread=name == "embed")
                    for name, g in manifest["graphs"].items()}
        tokenizer = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=False)
        if manifest["family"] == "internvl":
            from ..backbones.internvl import InternVLProcessor

            processor = InternVLProcessor.from_pretrained(folder, AutoConfig.from_pretrained(str(folder)))
        else:
            from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

            from ..backbones.processor import QwenVLProcessor

            processor = QwenVLProcessor(tokenizer, Qwen2VLImageProcessorPil.from_pretrained(str(folder)))
        return cls(folder, manifest, kind, sessions, processor, providers or ["cpu"], authorised_by)

    def device_label(self) -> str:
        return ",".join(self.providers)

    def encode_slate(self, image) -> SlateFeatures:
        """Preprocess + the vision graph that serves this slate's size. image_embeds [P, D] (+ DeepStack)."""
        vision_info = self.manifest["vision"]
        if self.family == "internvl":
            pixel_values = self.processor.preprocess_image(image)
            fixed = vision_info.get("tiles")
            if vision_info.get("serves") != "any" and pixel_values.shape[0] != fixed:
                raise InputError(f"{self.folder}: the vision graph was traced for {fixed} tiles (slates of "
                                 f"{self._served()}); this {image.size[0]}x{image.size[1]} slate gives "
                                 f"{pixel_values.shape[0]} — re-export with --image-size {image.size[0]}x{image.size[1]}")
            (feats,) = self.sessions["vision"].run({"pixel_values": pixel_values.numpy()})
            cols, rows, _ = self.processor.grid(image.size)
            grid = torch.tensor([[pixel_values.shape[0], rows, cols]])
            return SlateFeatures(torch.from_numpy(feats), [], grid, self.processor.token_boxes(image.size))
        pixel_values, grid = self.processor.preprocess_image(image)
        graph = next((e["graph"] for e in vision_info["sizes"] if e["grid_thw"] == grid.tolist()), None)
        if graph is None:
            raise InputError(f"{self.folder}: no vision graph serves a {image.size[0]}x{image.size[1]} slate (patch "
                             f"grid {grid.tolist()}); this export serves {self._served()} — re-export adding "
                             f"--image-size {image.size[0]}x{image.size[1]}")
        feats, deepstack = self.sessions[graph].run({"pixel_values": pixel_values.numpy()})
        return SlateFeatures(torch.from_numpy(feats), list(torch.from_numpy(deepstack)), grid,
                             self.processor.token_boxes(grid, image.size))

    def _served(self) -> str:
        return ", ".join(f"{w}x{h}" for w, h in (e["image_size"] for e in self.manifest["vision"]["sizes"]))

    def positions(self, input_ids, types, mask, slates):
        if self.family == "internvl":
            return (mask.cumsum(-1) - 1).clamp(min=0) * mask
        m = self.manifest["vision"]["spatial_merge_size"]
        grids = [(int(f.grid_thw[0, 1]) // m, int(f.grid_thw[0, 2]) // m) for f in slates]
        return torch.from_numpy(mrope_positions(types.numpy(), mask.numpy(), grids))

    def probe(self, inputs: DecoderInputs, slates: SlateFeatures | list[SlateFeatures], prompts: torch.Tensor | None,
              label_ids: list[int] | torch.Tensor, plan, *, layers: tuple[int, ...] = (), residual: float = 0.5,
              targets: torch.Tensor | None = None) -> ProbeResult:
        """`Backend.probe`: label logits [B, S] and image-token relevance [B, P]: the rollout row computed by
        ``rollout_row_qk`` from the decoder graph's Q [B, L, Hq, T, d] and K [B, L, Hkv, T, d].

        The probed layers were fixed at export time (manifest); ``targets`` do not change rollout.
        """
        if plan.combine_op != "rollout_row_qk" or plan.differentiable:
            raise UnavailableError(f"--probe {plan.probe.value} needs gradients: torch backend only "
                                   f"(exports carry rollout)")
        label_logits, q, k, lse = self.decode(inputs, slates, prompts, label_ids)
        last = torch.full((q.shape[0],), q.shape[-2] - 1, dtype=torch.long)
        row = ops.rollout_row_qk(q, k, last, inputs.attention_mask, scale=self.scale, residual=residual, lse=lse,
                                 impl=plan.combine_impl)
        return ProbeResult(label_logits.float(), inputs.image_tokens(row).abs().float())

    def decode(self, inputs: DecoderInputs, slates, prompts, label_ids
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(label logits [B, S], probed layers' Q [B, L, Hq, T, d], K [B, L, Hkv, T, d], and their log-sum-exp
        [B, L, Hq, T] when the decoder runs on the fused attention, else None)
        from the embedding and decoder graphs."""
        B = inputs.input_ids.shape[0]
        slates = [slates] * B if isinstance(slates, SlateFeatures) else list(slates)
        (embeds,) = self.sessions["embed"].run({"input_ids": inputs.input_ids.numpy()})
        embeds = np.array(embeds)  # writable: the soft prompt and image features are spliced in place
        soft, image = inputs.soft_mask.numpy(), inputs.image_mask.numpy()
        if prompts is not None and prompts.shape[1] > 0:
            embeds[soft] = prompts.detach().reshape(-1, prompts.shape[-1]).numpy()
        embeds[image] = np.concatenate([f.image_embeds.numpy() for f in slates])
        feed = {"inputs_embeds": embeds, "attention_mask": inputs.attention_mask.numpy(),
                "position_ids": inputs.position_ids.numpy()}
        if self.family == "qwen3_vl":
            feed["visual_pos_masks"] = image
            feed["deepstack"] = np.stack([np.concatenate([f.deepstack[i].numpy() for f in slates])
                                          for i in range(len(slates[0].deepstack))])
        decoder = self.sessions["decoder"]
        outputs = dict(zip(decoder.output_names, decoder.run(feed), strict=True))
        logits, q, k = (torch.from_numpy(np.ascontiguousarray(outputs[name])) for name in PROBE_OUTPUTS)
        # 0 where a query has no real key (left padding): the row skips such queries, the value is never read
        lse = torch.from_numpy(outputs[ort_attention.PROBE_LSE]) if ort_attention.PROBE_LSE in outputs else None
        labels = logits.gather(1, label_ids) if isinstance(label_ids, torch.Tensor) else logits[:, label_ids]
        return labels, q, k, lse  # label_ids [B, S]: per-row ids (batches that mix slates)
