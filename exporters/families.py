"""One export description per model family, the pattern of optimum's per-architecture ``OnnxConfig``: the graphs,
their named inputs and outputs with named dims, the inputs each graph is traced with, and the manifest's vision
entry. Dynamic shapes are derived from the named dims (`dynamic_shapes`), so export.py holds no family branches
and no hand-written shape dicts.

Named dims in `DYNAMIC` vary at run time (B batch, T tokens, BP image tokens over the batch, tiles); any other
name (D hidden, P patches, S tile side, ...) documents a size fixed when the model or slate size is fixed.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from fixate_rt.errors import UnavailableError

from .graphs import GraphSpec, TensorSpec, VisionGraph, dense_qwen3vl_text_steps, single_image_vision_attention

DYNAMIC = {"B": (1, 256), "T": (8, 32768), "BP": (2, 2**23), "tiles": (1, 64)}


def dynamic_shapes(spec: GraphSpec) -> tuple[dict, ...] | None:
    """torch.export's ``dynamic_shapes`` for ``spec``'s inputs: one ``{axis: Dim}`` per input, a dim per name in
    `DYNAMIC` (one Dim object per name, so inputs sharing B or T share it); None for a fixed-shape graph."""
    if not spec.dynamic:
        return None
    dims = {name: torch.export.Dim(name, min=lo, max=hi) for name, (lo, hi) in DYNAMIC.items()}
    return tuple({axis: dims[d] for axis, d in enumerate(t.dims) if isinstance(d, str) and d in dims}
                 for t in spec.inputs)


@dataclass(frozen=True)
class VisionExport:
    """One vision graph to write: its spec, module, the traced input and the slate sizes it serves."""

    spec: GraphSpec
    module: torch.nn.Module
    args: tuple
    served: list[dict]


_EMBED_IN = (TensorSpec("input_ids", ("B", "T"), "int64"),)
_EMBED_OUT = (TensorSpec("inputs_embeds", ("B", "T", "D")),)
_DECODER_OUT = (TensorSpec("logits", ("B", "V")), TensorSpec("probe_q", ("B", "L", "Hq", "T", "d")),
                TensorSpec("probe_k", ("B", "L", "Hkv", "T", "d")))


class FamilyExport:
    """What a family's export is; subclasses fill in the parts that differ."""

    family = ""

    def decoder_inputs(self, deepstack: int) -> tuple[TensorSpec, ...]:
        raise NotImplementedError

    def vision_spec(self, deepstack: int, suffix: str, fmt: str) -> GraphSpec:
        raise NotImplementedError

    def decoder_extra_args(self, inputs, feats, batch: int) -> tuple:
        """Decoder inputs beyond (inputs_embeds, attention_mask, position_ids), built with the torch backbone."""
        return ()

    def vision_graphs(self, backbone, base: GraphSpec, sizes: list[tuple[int, int]], sample) -> list[VisionExport]:
        raise NotImplementedError

    def vision_for(self, backbone, graph: str, image) -> tuple[torch.nn.Module, tuple]:
        """The PyTorch module and input a vision graph is validated against, on ``image``."""
        raise NotImplementedError

    def vision_manifest(self, backbone, fmt: str, served: list[dict], sample_image) -> dict:
        raise NotImplementedError

    @contextlib.contextmanager
    def writing(self, backbone, fmt: str, graph: str) -> Iterator[None]:
        """Model patches needed while ``graph`` is converted to ``fmt`` (none by default)."""
        yield

    def specs(self, deepstack: int, suffix: str, fmt: str) -> dict[str, GraphSpec]:
        return {
            "vision": self.vision_spec(deepstack, suffix, fmt),
            "embed": GraphSpec("embed", f"embed.{suffix}", _EMBED_IN, _EMBED_OUT),
            "decoder": GraphSpec("decoder", f"decoder.{suffix}", self.decoder_inputs(deepstack), _DECODER_OUT),
        }


class Qwen3VLExport(FamilyExport):
    """Qwen3-VL: a fixed patch grid per slate size (one vision graph per distinct grid), 3-axis M-RoPE positions
    and DeepStack features injected into the first decoder layers."""

    family = "qwen3_vl"

    def decoder_inputs(self, deepstack: int) -> tuple[TensorSpec, ...]:
        return (TensorSpec("inputs_embeds", ("B", "T", "D")), TensorSpec("attention_mask", ("B", "T"), "int64"),
                TensorSpec("position_ids", (3, "B", "T"), "int64"), TensorSpec("visual_pos_masks", ("B", "T"), "bool"),
                TensorSpec("deepstack", (deepstack, "BP", "D")))

    def vision_spec(self, deepstack: int, suffix: str, fmt: str) -> GraphSpec:
        return GraphSpec("vision", f"vision.{suffix}", (TensorSpec("pixel_values", ("patches", "C·t·p·p")),),
                         (TensorSpec("image_features", ("P", "D")), TensorSpec("deepstack", (deepstack, "P", "D"))),
                         dynamic=False, notes="exported for the grid of the export-time slate size (fixed-size renders)")

    def decoder_extra_args(self, inputs, feats, batch: int) -> tuple:
        return inputs.image_mask, torch.stack([torch.cat([f] * batch) for f in feats.deepstack])

    def vision_graphs(self, backbone, base: GraphSpec, sizes: list[tuple[int, int]], sample) -> list[VisionExport]:
        graphs: dict[tuple, VisionExport] = {}
        for size in sizes:
            pixels, grid = backbone.processor.preprocess_image(sample(size))
            key = tuple(grid.flatten().tolist())
            if key not in graphs:
                name = "vision" if not graphs else f"vision_{len(graphs)}"
                spec = dataclasses.replace(base, name=name, file=base.file.replace("vision", name, 1))
                graphs[key] = VisionExport(spec, VisionGraph(backbone, grid).eval(), (pixels,), [])
            graphs[key].served.append({"image_size": list(size), "grid_thw": grid.tolist(), "graph": graphs[key].spec.name})
        return list(graphs.values())

    def vision_for(self, backbone, graph: str, image) -> tuple[torch.nn.Module, tuple]:
        pixels, grid = backbone.processor.preprocess_image(image)
        return VisionGraph(backbone, grid), (pixels,)

    def vision_manifest(self, backbone, fmt: str, served: list[dict], sample_image) -> dict:
        return {"serves": "listed", "sizes": served,
                "spatial_merge_size": int(backbone.model.config.vision_config.spatial_merge_size)}

    @contextlib.contextmanager
    def writing(self, backbone, fmt: str, graph: str) -> Iterator[None]:
        if fmt == "export" and graph.startswith("vision"):  # torch.export cannot trace the per-image split
            with single_image_vision_attention(backbone.model):
                yield
        elif graph == "decoder":
            with dense_qwen3vl_text_steps(backbone.model):
                yield
        else:
            yield


class InternVLExport(FamilyExport):
    """InternVL: 448-pixel tiles (dynamic tile count, so one vision graph serves any slate size, except in
    TorchScript, whose trace keeps the tiles it saw) and 1-D positions."""

    family = "internvl"

    def decoder_inputs(self, deepstack: int) -> tuple[TensorSpec, ...]:
        return (TensorSpec("inputs_embeds", ("B", "T", "D")), TensorSpec("attention_mask", ("B", "T"), "int64"),
                TensorSpec("position_ids", ("B", "T"), "int64"))

    def vision_spec(self, deepstack: int, suffix: str, fmt: str) -> GraphSpec:
        spec = GraphSpec("vision", f"vision.{suffix}", (TensorSpec("pixel_values", ("tiles", 3, "S", "S")),),
                         (TensorSpec("image_features", ("P", "D")),), notes="tiles (+ thumbnail) of one slate")
        if fmt == "torchscript":
            spec = dataclasses.replace(spec, dynamic=False, notes="traced for the tiles of the export-time slate size")
        return spec

    def vision_graphs(self, backbone, base: GraphSpec, sizes: list[tuple[int, int]], sample) -> list[VisionExport]:
        pixels = backbone.processor.preprocess_image(sample(sizes[0]))
        return [VisionExport(base, VisionGraph(backbone, None).eval(), (pixels,),
                             [{"image_size": list(s), "graph": "vision"} for s in sizes])]

    def vision_for(self, backbone, graph: str, image) -> tuple[torch.nn.Module, tuple]:
        return VisionGraph(backbone, None), (backbone.processor.preprocess_image(image),)

    def vision_manifest(self, backbone, fmt: str, served: list[dict], sample_image) -> dict:
        tiles = int(backbone.processor.preprocess_image(sample_image).shape[0])
        return {"serves": "listed" if fmt == "torchscript" else "any", "sizes": served,
                "tokens_per_tile": backbone.processor.tokens_per_tile, "tiles": tiles}


FAMILIES: dict[str, FamilyExport] = {f.family: f for f in (Qwen3VLExport(), InternVLExport())}


def family_export(family: str) -> FamilyExport:
    """The export description of ``family``; one line naming the exportable families otherwise."""
    if family not in FAMILIES:
        raise UnavailableError(f"export of family '{family}' is not implemented yet (exportable: "
                               f"{', '.join(FAMILIES)})")
    return FAMILIES[family]
