"""Data commands: `synth`, `import-recgaze`, `import-adserp` and `validate`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..config import SynthVariant
from ..outputs import check_output
from .common import OVERWRITE_HELP, app, fail_cleanly
from .display import print_adserp_report, print_stats
from .progress import progress


@app.command(rich_help_panel="Data")
@fail_cleanly
def synth(
    out: Annotated[Path, typer.Argument(help="Output folder (users.parquet, slates/, sessions.parquet, truth.json)")],
    users: Annotated[int, typer.Option(min=2, help="Number of users")] = 30,
    slates: Annotated[Optional[int], typer.Option(min=3, help="Number of slates [default: 40; 80 for --variant "
                                                              "latent]")] = None,
    seed: Annotated[int, typer.Option(min=0, max=2**32 - 1, help="Random seed (same seed, same data)")] = 0,
    variant: Annotated[SynthVariant, typer.Option(help="profile: gaze follows positional habits and the profile's genres; "
                                              "latent: content-driven gaze with a hidden genre taste the profile "
                                              "never names (docs/synthetic.md)")] = SynthVariant.profile,
    overwrite: Annotated[bool, typer.Option("--overwrite", help=OVERWRITE_HELP)] = False,
) -> None:
    """Generate a synthetic RecGaze-like dataset with a known generative model."""
    from ..data.synth import SynthConfig, write_synth

    check_output(out, "synth", overwrite=overwrite)
    sizes = {"n_users": users, "seed": seed, **({"n_slates": slates} if slates is not None else {})}
    cfg = SynthConfig.latent(**sizes) if variant is SynthVariant.latent else SynthConfig(**sizes)
    with progress("rendering", "slates") as bar:
        bar.total(cfg.n_slates)
        stats = write_synth(out, cfg, progress=lambda done, total: bar.advance(1), overwrite=overwrite)
    print_stats(f"synthetic data in {out}", stats)


@app.command("import-recgaze", rich_help_panel="Data")
@fail_cleanly
def import_recgaze(
    records: Annotated[Path, typer.Argument(help="FixATE's fixate_dataset.jsonl")],
    images_root: Annotated[Path, typer.Option(help="folder that image_index_path is relative to")],
    out: Annotated[Path, typer.Option(help="output folder (users.parquet, slates/, sessions.parquet)")],
    user_features: Annotated[Optional[Path], typer.Option(help="RecGaze user_features.csv for profiles")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help=OVERWRITE_HELP)] = False,
) -> None:
    """Convert FixATE-processed RecGaze records (+ lettered viewport images) into fixate-rt's formats."""
    check_output(out, "import-recgaze", inputs=(records, images_root, user_features), overwrite=overwrite)
    from ..data.recgaze import import_recgaze as run_import

    counts = run_import(records, images_root, out, user_features, overwrite=overwrite)
    print(f"imported {counts['records']} records: {counts['users']} users ({counts['profiles_found']} with a profile), "
          f"{counts['slates']} slates -> {out}")


@app.command("import-adserp", rich_help_panel="Data")
@fail_cleanly
def import_adserp(
    data_dir: Annotated[Path, typer.Argument(help="AdSERP folder (fixation-data/, mouse-movement-data/, serps/, ...)")],
    out: Annotated[Path, typer.Option(help="output folder (users.parquet, slates/, sessions.parquet, import_report.json)")],
    seed: Annotated[int, typer.Option(min=0, max=2**32 - 1, help="seed of the per-user train/val/test split")] = 0,
    cache: Annotated[Optional[Path], typer.Option(help="organic-box cache folder [default: "
                                                       "$FIXATE_RT_CACHE/adserp-organic]")] = None,
    stop_gap_ms: Annotated[float, typer.Option(help="a gap of at least this many ms between scroll events is a stop")] = 400.0,
    viewport_height: Annotated[int, typer.Option(min=100, help="viewport height in screenshot px (docs/method.md: 922)")] = 922,
    overwrite: Annotated[bool, typer.Option("--overwrite", help=OVERWRITE_HELP)] = False,
) -> None:
    """Turn AdSERP trials into slates (viewport at the last scroll stop before the click, labelled slots) and sessions."""
    check_output(out, "import-adserp", inputs=(data_dir, cache), overwrite=overwrite)
    from ..data.adserp import import_adserp as run_import

    with progress("importing", "trials") as bar:
        report = run_import(data_dir, out, seed=seed, cache_dir=cache, gap_ms=stop_gap_ms,
                            viewport=(1280, viewport_height), overwrite=overwrite,
                            on_trial=lambda name: (bar.advance(1), bar.describe(f"trial {name}")))
    print_adserp_report(report, out)


@app.command(rich_help_panel="Data")
@fail_cleanly
def validate(
    users: Annotated[Optional[Path], typer.Option(help="users.parquet to check")] = None,
    images: Annotated[Optional[Path], typer.Option(help="slates folder to check")] = None,
    sessions: Annotated[Optional[Path], typer.Option(help="sessions.parquet to check (against --users and --images "
                                                          "if given)")] = None,
    prompts: Annotated[Optional[Path], typer.Option(help="prompts.safetensors to check")] = None,
    model: Annotated[str, typer.Option(help="the model the files are for: slate labels must be single tokens of "
                                            "its tokenizer, a prompt bank must match its hidden size")] = "slates-qwen3vl",
) -> None:
    """Check input files against the documented formats without running a model (no weights are loaded)."""
    from ..backends.describe import describe_model
    from ..data.join import load_inputs
    from ..errors import ValidationError
    from ..prompts import SoftPromptBank

    if not any((users, images, sessions, prompts)):
        raise ValidationError("nothing to validate: pass --users, --images, --sessions and/or --prompts")
    data = load_inputs(users=users, images=images, sessions=sessions)
    info = describe_model(model)
    if data.slates is not None:
        info.check_labels(data.slates, images)
    report = []
    if data.users is not None:
        report.append(f"{users}: {len(data.users)} users")
    if data.slates is not None:
        report.append(f"{images}: {len(data.slates)} slates")
    if data.sessions is not None:
        report.append(f"{sessions}: {len(data.sessions)} sessions")
    if prompts is not None:
        bank = SoftPromptBank.load(prompts)
        info.check_bank(bank, prompts)
        report.append(f"{prompts}: {len(bank.user_ids)} users, K={bank.n_basis}, N={bank.n_tokens}, D={bank.hidden_size}")
    for line in report:
        print(f"ok  {line}")
