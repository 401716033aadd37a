"""Model commands: `export` (frozen VLM to ONNX / torch.export / TorchScript) and `info`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from ..config import DEFAULT_MODEL, MODEL_HELP, ExportFormat, Quantization
from .common import OVERWRITE_HELP, ImageSize, app, fail_cleanly, image_size_option, out_console


@app.command(rich_help_panel="Models")
@fail_cleanly
def export(
    out: Annotated[Path, typer.Option(help="Output folder for the graphs, manifest.json and preprocessing files")],
    model: Annotated[str, typer.Option(help=MODEL_HELP)] = DEFAULT_MODEL,
    prompts: Annotated[Optional[Path], typer.Option(help="Prompt bank to ship with the export")] = None,
    format: Annotated[ExportFormat, typer.Option("--format", help="onnx (ONNX Runtime), export (torch.export .pt2) "
                                                                   "or torchscript (legacy .pt)")] = ExportFormat.onnx,
    image_size: Annotated[list[ImageSize], typer.Option(
        parser=image_size_option, metavar="WxH",
        help="WxH of the slates the vision graph must serve; repeat for several sizes (Qwen-VL: one graph per "
             "patch grid)")] = ["1100x619"],  # noqa: B006  (Typer needs a list default; never mutated)
    quantize: Annotated[Optional[Quantization], typer.Option(
        help="int8: ONNX Runtime's dynamic int8 quantisation of the decoder's MatMul weights (--format onnx only; "
             "fidelity cost in docs/export.md)")] = None,
    sign_key: Annotated[Optional[Path], typer.Option(help="Elliptic-curve private key (PEM): sign the finished "
                                                          "folder (model.sig) so that simulate --verify-key "
                                                          "can load it without --trust-export")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help=OVERWRITE_HELP)] = False,
) -> None:
    """Export the frozen VLM (vision, embedding, decoder returning the probed layers' Q/K) and validate it."""
    import warnings

    from ..outputs import check_output

    model_path = Path(model)
    if quantize is not None and format is not ExportFormat.onnx:
        from ..errors import ValidationError

        raise ValidationError(f"--quantize {quantize.value}: only --format onnx has a quantised form (ONNX Runtime's "
                              f"dynamic quantisation); got --format {format.value}")
    check_output(out, "export", inputs=(prompts, sign_key, model_path if model_path.exists() else None),
                 overwrite=overwrite)
    sizes = [tuple(image_size_option(size)) for size in image_size]
    from ..exporters.export import export_model

    if format is ExportFormat.torchscript:
        print("note: TorchScript is deprecated upstream (legacy format); prefer --format export", file=sys.stderr)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        manifest = export_model(model, out, fmt=format.value, prompts=prompts, image_size=sizes, sign_key=sign_key,
                                quantize=quantize.value if quantize is not None else None, overwrite=overwrite)
    for warning in caught:
        if "exceeds" in str(warning.message):
            print(f"warning: {warning.message}", file=sys.stderr)
    worst = max(manifest["validation"].values())
    print(f"exported {manifest['family']} as {format.value} to {out} (graphs: {', '.join(manifest['graphs'])}); "
          f"validated against PyTorch on fresh inputs: max |diff| {worst:.2e}")


@app.command(rich_help_panel="Models")
@fail_cleanly
def info(model: Annotated[str, typer.Option(help=MODEL_HELP)] = DEFAULT_MODEL) -> None:
    """Versions, available implementations and the model's shape."""
    from .. import ops
    from ..backbones import load
    from ..versions import versions

    backbone = load(model, device="cpu")
    table = Table(title="fixate-rt")
    table.add_column("item")
    table.add_column("value")
    for key, value in versions().items():
        table.add_row(key, str(value))
    from ..config import RANDOM_MODELS, RANDOM_WEIGHTS

    weights = RANDOM_WEIGHTS if backbone.name in RANDOM_MODELS else "trained"
    table.add_row("model", f"{backbone.name} ({backbone.family}, hidden {backbone.hidden_size}, {backbone.num_layers} "
                           f"layers; {weights})")
    table.add_row("probe layers", str(list(backbone.default_probe_layers)))
    for op in ops.REGISTRY:
        table.add_row(f"{op} impls", ", ".join(f"{k}{'' if not v else ' (unavailable)'}" for k, v in ops.available(op).items()))
    out_console.print(table)
