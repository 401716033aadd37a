"""`simulate` and `profile`: the simulation pipeline, run for results or timed stage by stage."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..config import (
    DEFAULT_MODEL,
    MODEL_HELP,
    BackendKind,
    Engine,
    Kernel,
    PoolMode,
    Probe,
    SimulateConfig,
    Template,
    parse_device,
)
from ..outputs import check_output, owned_output
from .common import OVERWRITE_HELP, app, fail_cleanly, option_panels, out_console
from .display import print_profile, print_simulation_summary
from .progress import progress


@app.command(rich_help_panel="Simulation")
@option_panels({
    "Inputs and output": ("users", "images", "pairs", "prompts", "out"),
    "Model and probe": ("model", "backend", "trust_export", "verify_key", "template", "allow_template_mismatch",
                        "device", "probe", "kernel", "pool"),
    "Clicks": ("samples", "seed", "batch_size", "threads"),
    "Long and distributed runs": ("shard_pairs", "resume", "overwrite", "engine", "address", "workers",
                                  "gpus_per_worker"),
})
@fail_cleanly
def simulate(
    users: Annotated[Path, typer.Option(help="users.parquet (user_id, optional profile)")],
    images: Annotated[Path, typer.Option(help="slates folder: <slate_id>.png|.jpg + layout.json or <slate_id>.json")],
    out: Annotated[Path, typer.Option(help="Output folder: simulations/ (a Parquet dataset) and run.json")],
    model: Annotated[str, typer.Option(help=MODEL_HELP)] = DEFAULT_MODEL,
    prompts: Annotated[Optional[Path], typer.Option(help="Prompt bank prompts.safetensors")] = None,
    pairs: Annotated[Optional[Path], typer.Option(help="Parquet of (user_id, slate_id) to simulate; default all")] = None,
    samples: Annotated[int, typer.Option(min=1, help="Clicks drawn per (user, slate)")] = 1,
    seed: Annotated[int, typer.Option(min=0, max=2**63 - 1, help="Click sampling seed")] = 0,
    batch_size: Annotated[int, typer.Option(min=1, help="Users per decoder batch")] = 8,
    threads: Annotated[Optional[int], typer.Option(min=1, max=1024, help="Compute threads [default: chosen batch by "
                                                                     "batch between the CPUs this process may use "
                                                                     "(affinity, cgroup quota) and one, by measured "
                                                                     "speed]")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N")] = "auto",
    probe: Annotated[Probe, typer.Option(help="Probing operator")] = Probe.rollout,
    kernel: Annotated[Kernel, typer.Option(help="Op implementation (auto picks the fastest available)")] = Kernel.auto,
    pool: Annotated[PoolMode, typer.Option(help="Token→slot pooling mode (auto: overlap for layouts with "
                                                "overlapping boxes, else exclusive)")] = PoolMode.auto,
    backend: Annotated[BackendKind, typer.Option(help="auto: an export folder in its own format, else torch; or name "
                                                  "one (torch, onnx, export, torchscript)")] = BackendKind.auto,
    trust_export: Annotated[bool, typer.Option("--trust-export", help="Load an unsigned torch.export or TorchScript "
                                                                     "export: RUNS CODE FROM THAT FOLDER; only for "
                                                                     "folders you made")] = False,
    verify_key: Annotated[Optional[Path], typer.Option(help="Public key (PEM): the export folder must carry a valid "
                                                            "signature by its private key (export --sign-key)")] = None,
    shard_pairs: Annotated[int, typer.Option(min=1, help="Pairs per chunk: one part file of simulations/, "
                                                         "and what an interruption can lose at most")] = 4096,
    engine: Annotated[Engine, typer.Option(help="local: this process; ray: Ray Data actors (pip install "
                                                "'fixate-rt[ray]')")] = Engine.local,
    address: Annotated[Optional[str], typer.Option(help="Ray cluster to join (auto, ray://host:10001, host:port); "
                                                        "default: start a local one")] = None,
    workers: Annotated[int, typer.Option(min=1, help="Ray actors, each with one loaded model")] = 1,
    gpus_per_worker: Annotated[float, typer.Option(min=0, help="GPUs per Ray actor (1 on GPU clusters)")] = 0.0,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run in --out (by "
                                                  "either engine) from its finished chunks")] = False,
    template: Annotated[Template, typer.Option(help="Prompt template: fixate-rt, or the reference code's exact "
                                                    "RecGaze / AdSERP prompt (docs/method.md)")] = Template.fixate_rt,
    allow_template_mismatch: Annotated[bool, typer.Option("--allow-template-mismatch", help="Run a prompt bank "
                                                          "trained under another template")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help=OVERWRITE_HELP)] = False,
) -> None:
    """Simulate clicks of every user on every slate; report click probability and slot relevance."""
    from ..run.local import run_simulation
    from ..run.preflight import run_inputs

    config = SimulateConfig(users=users, images=images, out=out, model=model, prompts=prompts, pairs=pairs,
                            samples=samples, seed=seed, batch_size=batch_size, device=device, probe=probe,
                            kernel=kernel, pool_mode=pool, backend=backend, shard_pairs=shard_pairs, resume=resume,
                            trust_export=trust_export, verify_key=verify_key, template=template,
                            allow_template_mismatch=allow_template_mismatch, overwrite=overwrite, threads=threads)
    check_output(out, "simulate", inputs=run_inputs(config), overwrite=overwrite, resume=resume)
    t0 = time.perf_counter()
    if engine is Engine.ray:  # Ray Data reports its own progress
        from ..distributed import run_distributed

        info = run_distributed(config, address=address, workers=workers, gpus_per_worker=gpus_per_worker)
        print_simulation_summary(Path(out), info, time.perf_counter() - t0)
        return
    with progress("simulating", "pairs") as bar:
        info = run_simulation(config, on_start=bar.total, on_pairs=bar.advance)
    print_simulation_summary(Path(out), info, time.perf_counter() - t0)


@app.command(rich_help_panel="Simulation")
@fail_cleanly
def profile(
    model: Annotated[str, typer.Option(help=MODEL_HELP)] = DEFAULT_MODEL,
    batch_size: Annotated[int, typer.Option(min=1, help="Users per decoder batch")] = 8,
    n_pairs: Annotated[Optional[int], typer.Option(min=1, help="How many pairs to time after warm-up [default: 64 "
                                                              "synthetic, or every pair of --users × --images]")] = None,
    users: Annotated[Optional[Path], typer.Option(help="Profile on these users (with --images) instead of synthetic "
                                                       "data: the figures then compare with `simulate` on them")] = None,
    images: Annotated[Optional[Path], typer.Option(help="slates folder (with --users)")] = None,
    backend: Annotated[BackendKind, typer.Option(help="auto: an export folder in its own format, else torch; or name "
                                                  "one (torch, onnx, export, torchscript)")] = BackendKind.auto,
    probe: Annotated[Probe, typer.Option(help="Probing operator")] = Probe.rollout,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N")] = "auto",
    kernel: Annotated[Kernel, typer.Option(help="Op implementation (auto picks the fastest available)")] = Kernel.auto,
    warmup: Annotated[int, typer.Option(min=0, help="Untimed batches first")] = 1,
    out: Annotated[Optional[Path], typer.Option(help="Folder for profile.json (and trace.json with --trace)")] = None,
    trace: Annotated[bool, typer.Option("--trace", help="Also record a PyTorch profiler (Chrome) trace: "
                                                         "OUT/trace.json")] = False,
    peak_tflops: Annotated[Optional[float], typer.Option(help="Device peak for utilisation (else a known table)")] = None,
    threads: Annotated[Optional[int], typer.Option(min=1, max=1024, help="Compute threads [default: the CPUs this "
                                                                     "process may use (affinity, cgroup quota)]")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help=OVERWRITE_HELP)] = False,
) -> None:
    """Latency per stage (p50/p90), pairs/s, peak memory and decoder FLOP utilisation."""
    if out is not None:
        check_output(out, "profile", inputs=(users, images), overwrite=overwrite)
    from ..errors import ValidationError
    from ..io import write_json
    from ..latency import STAGES, run_profile

    if (users is None) != (images is None):
        raise ValidationError("--users and --images go together (or neither: synthetic data)")
    if trace and out is None:
        raise ValidationError("--trace writes OUT/trace.json: give --out")
    with tempfile.TemporaryDirectory(prefix="fixate-rt-trace-") as scratch:  # --out is written only at the end
        report = run_profile(model, batch_size=batch_size, pairs=n_pairs, backend=backend.value,
                             probe_name=probe.value, device=parse_device(device), warmup=warmup,
                             trace=Path(scratch) / "trace.json" if trace else None, peak_tflops=peak_tflops,
                             kernel=kernel.value, users=users, images=images, threads=threads)
        print_profile(report, STAGES)
        if out is not None:
            with owned_output(out, "profile", inputs=(users, images), overwrite=overwrite) as folder:
                if trace:
                    report["trace"] = str(out / "trace.json")
                    shutil.move(Path(scratch) / "trace.json", folder / "trace.json")
                write_json(folder / "profile.json", report)
            out_console.print(f"report: {out / 'profile.json'}" + (f"; trace: {out / 'trace.json'}" if trace else ""))
