"""`fixate-rt export --format onnx|export|torchscript`: three graphs + manifest + preprocessing files + prompt
bank, then validation of every output against PyTorch on fresh inputs (runtimes.py holds the per-format parts)."""

from __future__ import annotations

import logging
import platform
import shutil
import warnings
from pathlib import Path

import numpy as np
import torch

from fixate_rt.backends.graph_runtime import (
    FORMAT,
    MANIFEST,
    SUFFIX,
    GraphSession,
    file_digests,
    onnx_status,
    read_manifest,
)
from fixate_rt.backends.trust import require_signing, sign_folder
from fixate_rt.config import RANDOM_MODELS, RANDOM_WEIGHTS
from fixate_rt.errors import UnavailableError, ValidationError
from fixate_rt.io import write_json
from fixate_rt.limits import MAX_IMAGE_SIDE
from fixate_rt.outputs import check_output, staged_output
from fixate_rt.versions import versions

from .families import FamilyExport, dynamic_shapes, family_export
from .graphs import PROBE_CONTRACT, DecoderGraph, EmbedGraph
from .runtimes import DYNAMIC_OPSET, QUANTIZATIONS, check_format, convert, quantize_decoder

PROCESSOR_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "preprocessor_config.json",
                   "config.json", "chat_template.jinja")


class ExportValidationError(ValidationError):
    """An exported output has the wrong shape: the export is unusable."""

log = logging.getLogger("fixate_rt")  # progress of the long steps (the CLI shows it; -q hides it)


def _sample_image(size: tuple[int, int]):
    from fixate_rt.data.render import render_slate

    rng = np.random.default_rng(0)
    items = [{"title": "Blue Moon", "genre": "Drama"}] * 15
    img = render_slate(items, ["Drama", "Comedy", "Crime"], rng)
    return img if img.size == tuple(size) else img.resize(tuple(size))


def torch_decoder_inputs(backbone, family: FamilyExport, profiles, feats, prompts):
    """The decoder graph's inputs, built with the torch backbone (soft prompt and image features spliced)."""
    from fixate_rt.data.layout import LETTERS

    inputs = backbone.build_inputs(profiles, LETTERS, feats, prompts.shape[1])
    B = len(profiles)
    embeds = backbone.model.get_input_embeddings()(inputs.input_ids).clone()
    embeds[inputs.soft_mask] = prompts.reshape(-1, prompts.shape[-1]).to(embeds.dtype)
    embeds = embeds.masked_scatter(inputs.image_mask[..., None], torch.cat([feats.image_embeds] * B).to(embeds.dtype))
    return inputs, (embeds, inputs.attention_mask, inputs.position_ids, *family.decoder_extra_args(inputs, feats, B))


def export_model(model: str, out: Path, *, fmt: str = "onnx", prompts: Path | None = None,
                 image_size: tuple[int, int] | list[tuple[int, int]] = (1100, 619), quantize: str | None = None,
                 sign_key: Path | None = None, overwrite: bool = False) -> dict:
    """Export in format ``fmt`` (onnx, export, torchscript), write the manifest, validate. Returns the manifest.

    ``quantize``: ``"int8"`` (ONNX only): ONNX Runtime's dynamic quantisation of the decoder's MatMul weights
    (activations quantised per call); the vision and embedding graphs stay fp32. The manifest says so.
    ``sign_key``: an elliptic-curve private key (PEM); the finished folder is signed with it (``model.sig``,
    OpenSSF model-signing), so that `fixate-rt simulate --verify-key PUB` can load it without ``--trust-export``.
    ``overwrite``: replace an earlier export in ``out`` (`fixate_rt.outputs`: never a folder holding anything else).

    ``image_size``: the slate size, or a list of them, the vision graph must serve. Qwen-VL's vision graph has a
    fixed patch grid: one graph is written per distinct grid. InternVL's serves any size (tile count dynamic),
    except in TorchScript, which keeps the tiles of the first size.
    """
    sizes = [tuple(image_size)] if isinstance(image_size[0], int) else [tuple(s) for s in image_size]
    for w, h in sizes:
        if w < 28 or h < 28 or w > MAX_IMAGE_SIDE or h > MAX_IMAGE_SIDE:
            raise ValidationError(f"--image-size {w}x{h}: each side must be between 28 and {MAX_IMAGE_SIDE} pixels")
    from fixate_rt.backbones import load

    check_format(fmt)
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise ValidationError(f"--quantize must be one of {', '.join(QUANTIZATIONS)}, got '{quantize}'")
    if quantize is not None and fmt != "onnx":
        raise ValidationError(f"--quantize {quantize}: only --format onnx has a quantised form (ONNX Runtime's "
                              f"dynamic quantisation); got --format {fmt}")
    reason = onnx_status() if fmt == "onnx" else ""
    if reason:
        raise UnavailableError(reason)
    if prompts is not None:  # checked before the model loads
        from fixate_rt.backends.describe import describe_model
        from fixate_rt.prompts import SoftPromptBank

        describe_model(model, "torch").check_bank(SoftPromptBank.load(prompts), prompts)
    if sign_key is not None:
        require_signing(Path(sign_key), "signing key")
    source = Path(str(model))
    inputs = (prompts, sign_key, source if source.exists() else None)
    check_output(out, "export", inputs=inputs, overwrite=overwrite)
    from fixate_rt.backends.describe import describe_model

    backbone = load(model, device="cpu", dtype=torch.float32)
    family_export(backbone.family)  # an unexportable family: one line, before the staging folder exists
    describe_model(model, "torch").announce_weights()  # the folder's manifest says so too ("model_weights")
    # built in a staging folder beside --out and swapped in whole once validated (and signed): a failed export
    # leaves nothing behind
    with staged_output(out, "export", inputs=inputs, overwrite=overwrite) as stage:
        manifest = _write_export(backbone, stage, fmt, sizes, prompts, quantize)
        if sign_key is not None:
            log.info(f"export: signing the folder with {sign_key}")
            sign_folder(stage, Path(sign_key))
    return manifest


def _write_export(backbone, out: Path, fmt: str, sizes: list[tuple[int, int]], prompts: Path | None,
                  quantize: str | None) -> dict:
    """Write the graphs, the preprocessing files, the prompt bank and the manifest into ``out``; validate."""
    family = family_export(backbone.family)
    feats = backbone.encode_slate(_sample_image(sizes[0]))
    graph_specs = family.specs(len(feats.deepstack), SUFFIX[fmt], fmt)
    prompts_t = torch.randn(2, 4, backbone.hidden_size, generator=torch.Generator().manual_seed(0)) * 0.05
    inputs, dec_args = torch_decoder_inputs(backbone, family, ["Top_genre: Drama",
                                                               "Top_genre: Crime, Preferred_genres: Horror"],
                                            feats, prompts_t)
    visions = family.vision_graphs(backbone, graph_specs.pop("vision"), sizes, _sample_image)
    graph_specs = {**{v.spec.name: v.spec for v in visions}, **graph_specs}
    modules = {**{v.spec.name: (v.module, v.args) for v in visions},
               "embed": (EmbedGraph(backbone).eval(), (inputs.input_ids,)),
               "decoder": (DecoderGraph(backbone).eval(), dec_args)}
    with torch.no_grad():
        for name, (module, args) in modules.items():
            spec = graph_specs[name]
            log.info(f"export: writing the {name} graph ({spec.file})")
            with family.writing(backbone, fmt, name):
                convert(fmt, module, args, out / spec.file, [t.name for t in spec.inputs],
                        [t.name for t in spec.outputs], dynamic_shapes(spec))
    served = [entry for v in visions for entry in v.served]
    if quantize is not None:
        log.info(f"export: quantising the decoder ({quantize})")
        quantize_decoder(out / graph_specs["decoder"].file)
    src = Path(backbone.model.config._name_or_path) if Path(str(backbone.model.config._name_or_path)).is_dir() else None
    for name in PROCESSOR_FILES:
        if src is not None and (src / name).is_file():
            shutil.copy(src / name, out / name)
    if prompts is not None:
        shutil.copy(prompts, out / "prompts.safetensors")
    manifest = {
        "format": FORMAT, "runtime": fmt, "backbone": backbone.name, "family": backbone.family,
        "model_weights": RANDOM_WEIGHTS if backbone.name in RANDOM_MODELS else "trained",
        "hidden_size": backbone.hidden_size,
        "num_layers": backbone.num_layers, "probe_layers": list(backbone.default_probe_layers),
        "probe": {**PROBE_CONTRACT, "scale": _attention_scale(backbone)},
        "quantization": ({"decoder": QUANTIZATIONS[quantize]} if quantize else None),
        "image_token_id": int(backbone.model.config.image_token_id), "pad_id": int(backbone.processor.pad_id),
        "template": "fixate_rt.template (instruction, profile, image, question)",
        "vision": family.vision_manifest(backbone, fmt, served, _sample_image(sizes[0])),
        "graphs": {name: spec.to_json() for name, spec in graph_specs.items()},
        "files": file_digests(out),  # every file (external data included); loading refuses any other or changed file
        "prompts": "prompts.safetensors" if prompts is not None else None,
        "versions": {**versions(), "platform": platform.platform(),
                     **({"onnx_opset": {"vision": 18, "embed": DYNAMIC_OPSET, "decoder": DYNAMIC_OPSET}}
                        if fmt == "onnx" else {})},
        **({"legacy": "TorchScript is deprecated upstream; prefer --format export"} if fmt == "torchscript" else {}),
    }
    write_json(out / MANIFEST, manifest)
    log.info("export: validating every graph against PyTorch on fresh inputs")
    manifest["validation"] = validate(out, backbone, quantized=quantize is not None)
    write_json(out / MANIFEST, manifest)
    return manifest


def _attention_scale(backbone) -> float:
    """The probed layers' softmax scale (what the rollout op needs beside Q and K)."""
    layer = backbone.model.model.language_model.layers[backbone.default_probe_layers[0]].self_attn
    return float(layer.scaling)


def validate(folder: Path, backbone, atol: float = 1e-4, *, quantized: bool = False) -> dict:
    """Run the exported graphs and PyTorch on fresh inputs (another slate, other profiles, N = 3, B = 3).

    Shape mismatch -> ExportValidationError; a difference above ``atol`` (relative to the output's scale) -> a
    warning naming the output; the files are kept either way. Returns the max differences.
    """
    from fixate_rt.data.render import render_slate

    rng = np.random.default_rng(7)
    items = [{"title": "Dark River", "genre": g} for g in ("Horror", "Comedy", "Drama") for _ in range(5)]
    image = render_slate(items, ["Horror", "Comedy", "Drama"], rng)
    feats = backbone.encode_slate(image)
    family = family_export(backbone.family)
    prompts = torch.randn(3, 3, backbone.hidden_size, generator=torch.Generator().manual_seed(3)) * 0.1
    inputs, dec_args = torch_decoder_inputs(backbone, family, ["x", "Top_genre: Horror",
                                                               "Top_genre: Comedy, Preferred_genres: Crime"],
                                            feats, prompts)
    manifest = read_manifest(folder)
    fmt = manifest.get("runtime", "onnx")
    modules = {"embed": (EmbedGraph(backbone), (inputs.input_ids,)), "decoder": (DecoderGraph(backbone), dec_args)}
    for entry in manifest["vision"]["sizes"]:  # every vision graph, on a fresh slate of the size it serves
        fresh = image if tuple(entry["image_size"]) == image.size else image.resize(tuple(entry["image_size"]))
        modules[entry["graph"]] = family.vision_for(backbone, entry["graph"], fresh)
    report = {}
    for name, (module, args) in modules.items():
        graph = manifest["graphs"][name]
        path = folder / graph["file"]
        session = GraphSession(fmt, path, [t["name"] for t in graph["inputs"]], [t["name"] for t in graph["outputs"]],
                               listed=manifest["files"], authorised=True)  # validating what this process just wrote
        with torch.no_grad():
            expected = module.eval()(*args)
        expected = expected if isinstance(expected, tuple) else (expected,)
        got = session.run({i: a.numpy() for i, a in zip(session.input_names, args)})
        for out_name, e, g in zip(session.output_names, expected, got):
            if tuple(g.shape) != tuple(e.shape):
                raise ExportValidationError(f"{path}, output '{out_name}': shape {g.shape} "
                                            f"but PyTorch gives {tuple(e.shape)}")
            diff = float(np.abs(g - e.numpy()).max())
            scale = max(1.0, float(np.abs(e.numpy()).max()))
            report[f"{name}.{out_name}"] = diff
            if diff > atol * scale and not (quantized and name == "decoder"):  # int8: reported as measured
                warnings.warn(f"{path}, output '{out_name}': max |exported − PyTorch| = {diff:.3g} "
                              f"exceeds {atol * scale:.3g} (files kept)", stacklevel=2)
    return report
