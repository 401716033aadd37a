"""Every choice the CLI and the Python API offer (one Enum each) and the frozen run configurations."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from enum import Enum
from pathlib import Path
from typing import TypeAlias

PathArg: TypeAlias = "str | os.PathLike[str]"  # what users naturally pass for a path; normalised to Path


class Probe(str, Enum):
    rollout = "rollout"
    glimpse = "glimpse"
    attnlrp = "attnlrp"


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


# The built-in models (fixate_rt/backbones/builtins.py: random ones built offline by tiny.py, the pretrained
# slates-qwen3vl and slates-qwen3vl-fair-deep shipped in fixate_rt/models/); listed here so --help can name them
# without importing torch.
# tests/test_cli_errors.py checks the two agree.
BUILTIN_MODELS = ("tiny-qwen3vl", "tiny-qwen2vl", "tiny-qwen25vl", "tiny-internvl", "mid-qwen3vl", "qwen3vl-4b-shape",
                  "slates-qwen3vl", "slates-qwen3vl-fair-deep")
# The default wherever a user reads the numbers: the pretrained built-in. The random ones (tiny-*, mid-qwen3vl,
# qwen3vl-4b-shape) are for tests and timing, chosen explicitly; running one says so (RANDOM_WEIGHTS).
DEFAULT_MODEL = "slates-qwen3vl"
RANDOM_MODELS = ("tiny-qwen3vl", "tiny-qwen2vl", "tiny-qwen25vl", "tiny-internvl", "mid-qwen3vl", "qwen3vl-4b-shape")
RANDOM_WEIGHTS = "random weights: for tests and timing only"
MODEL_HELP = ("a local checkpoint folder, an export folder, or a built-in model: " + ", ".join(BUILTIN_MODELS)
              + f" (random weights, for tests and timing: {', '.join(RANDOM_MODELS)})")


def parse_device(value: object) -> str:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (a `Device` or its value); anything else is one clear error."""
    import re

    from .errors import ValidationError

    text = value.value if isinstance(value, Enum) else str(value)
    if text in {d.value for d in Device} or re.fullmatch(r"cuda:\d{1,3}", text):
        return text
    raise ValidationError(f"--device must be auto, cpu, cuda or cuda:N (a GPU index), got '{text}'")


class Quantization(str, Enum):
    """`export --quantize`: the quantised forms an export can take."""

    int8 = "int8"


class Kernel(str, Enum):
    auto = "auto"
    torch = "torch"
    cpp = "cpp"
    triton = "triton"


class MetricKernel(str, Enum):
    """`score --kernel`: the implementations the batched metrics have (no Triton kernel for them)."""

    auto = "auto"
    torch = "torch"
    cpp = "cpp"


class BackendKind(str, Enum):
    """What runs the decoder: the Hugging Face model itself, or an export folder in one of its formats."""

    auto = "auto"  # an export folder's own format (its manifest), else torch
    torch = "torch"
    onnx = "onnx"  # ONNX Runtime
    export = "export"  # torch.export programs (.pt2)
    torchscript = "torchscript"  # legacy traces (.pt)

    @property
    def exported(self) -> bool:
        return self not in (BackendKind.torch, BackendKind.auto)


class Engine(str, Enum):
    """Where `simulate` runs: this process, or a Ray cluster (local or remote)."""

    local = "local"
    ray = "ray"


class LabelMode(str, Enum):
    """`permute --labels`: labels follow their items, or stay with the positions."""

    item = "item"
    position = "position"


class ClickLogFormat(str, Enum):
    """`export-clicks --format`: PyClick's Yandex log, or clax-models' Parquet arrays."""

    yandex = "yandex"
    clax = "clax"


class ExportFormat(str, Enum):
    """Formats `fixate-rt export` writes; an export folder runs with the backend of the same name."""

    onnx = "onnx"
    export = "export"
    torchscript = "torchscript"


class AttnLoss(str, Enum):
    weighted_full_kl = "weighted_full_kl"
    plain_kl = "plain_kl"
    coarsened_kl = "coarsened_kl"
    weighted_kl_normalised = "weighted_kl_normalised"


class Signal(str, Enum):
    fixation = "fixation"
    cursor = "cursor"
    intersect = "intersect"  # fixation targets, only sessions that also have cursor dwell (the dual-signal subset)


class TieRule(str, Enum):
    """How ranking metrics (CSH@k, TGO@k, accuracy) order slots of equal value (docs/metrics.md)."""

    average = "average"  # the exact expected value under uniformly random tie-breaking
    lower_index = "lower-index"  # reading order: the lower slot index ranks first
    reference = "reference"  # the reference code's accidental "higher index first", for paper comparisons


class Template(str, Enum):
    """The prompt template (fixate_rt/template.py): the project's, or the reference code's exact wording."""

    fixate_rt = "fixate-rt"
    reference = "reference"  # the reference's RecGaze prompt (image, then profile and instruction)
    reference_adserp = "reference-adserp"  # the reference's AdSERP prompt (image, search query, instruction)


class Selection(str, Enum):
    """How training picks its checkpoint on the val split (TF, micro)."""

    composite = "composite"  # 0.10·cos + 0.20·CSH@1 + 0.25·CSH@3 + 0.20·TGO@3 − 0.10·topkJS (RecGaze)
    js = "js"  # the lowest JS (AdSERP)


class SplitMode(str, Enum):
    data = "data"  # the sessions file's split column
    per_seed = "per-seed"  # re-drawn for every seed, per user (the reference's AdSERP protocol)


class Preset(str, Enum):
    """What the reference sets per data set for training (fixate_rt/training/presets.py)."""

    none = "none"
    recgaze = "recgaze"
    adserp = "adserp"


class SynthVariant(str, Enum):
    """`fixate-rt synth --variant` (fixate_rt/data/synth.py, docs/synthetic.md)."""

    profile = "profile"  # positional habits and the profile's genres drive gaze
    latent = "latent"  # content-driven gaze with a hidden genre taste the profile never names


class Split(str, Enum):
    all = "all"
    train = "train"
    val = "val"
    test = "test"


class PoolMode(str, Enum):
    auto = "auto"  # per slate: overlap when its boxes overlap, else exclusive
    exclusive = "exclusive"
    overlap = "overlap"
    area = "area"


def parse_choice(kind: type[Enum], value: object, name: str) -> Enum:
    """``value`` as a member of ``kind`` (a member or its string); a `ValidationError` naming ``name`` otherwise."""
    if isinstance(value, kind):
        return value
    try:
        return kind(value)
    except ValueError:
        from .errors import ValidationError

        raise ValidationError(f"{name} must be one of {', '.join(m.value for m in kind)}; got {value!r}") from None


@dataclass(frozen=True)
class SimulateConfig:
    """Every option of `fixate-rt simulate`. Paths may be given as ``str`` or any ``os.PathLike`` and choices as
    their Enum or its value; ``__post_init__`` normalises them (the fields then hold ``Path`` and the Enums)."""

    users: PathArg
    images: PathArg
    out: PathArg
    model: str | os.PathLike[str] = DEFAULT_MODEL
    prompts: PathArg | None = None
    pairs: PathArg | None = None
    samples: int = 1
    seed: int = 0
    batch_size: int = 8
    device: str = "auto"  # auto, cpu, cuda or cuda:N (`parse_device`)
    probe: Probe | str = Probe.rollout
    kernel: Kernel | str = Kernel.auto
    pool_mode: PoolMode | str = PoolMode.auto
    residual: float = 0.5
    backend: BackendKind | str = BackendKind.auto
    trust_export: bool = False  # load exports whose format can carry code (torch.export, TorchScript) unsigned
    verify_key: PathArg | None = None  # public key: the export folder must carry a valid signature by its private key
    shard_pairs: int = 4096  # pairs per output shard (what an interruption can lose at most)
    resume: bool = False
    overwrite: bool = False  # replace this command's earlier output in `out` (never anything else)
    threads: int | None = None  # compute threads; None: the CPUs this process may use (fixate_rt.threads)
    template: Template | str = Template.fixate_rt  # the prompt template (fixate_rt/template.py)
    allow_template_mismatch: bool = False  # run a bank trained under another template

    def __post_init__(self) -> None:
        from . import checks

        # Python callers may pass plain strings; the fields hold the Enums the CLI passes.
        for name, kind in (("probe", Probe), ("kernel", Kernel), ("pool_mode", PoolMode),
                           ("backend", BackendKind), ("template", Template)):
            object.__setattr__(self, name, parse_choice(kind, getattr(self, name), name))
        object.__setattr__(self, "device", parse_device(self.device))
        for name in ("users", "images", "out"):  # str or PathLike, as users naturally pass them
            object.__setattr__(self, name, checks.path(getattr(self, name), name))
        for name in ("prompts", "pairs", "verify_key"):
            object.__setattr__(self, name, checks.path(getattr(self, name), name, optional=True))
        if not isinstance(self.model, str):
            object.__setattr__(self, "model", str(checks.path(self.model, "model")))
        checks.integer(self.samples, 1, checks.MAX_SAMPLES, "samples")
        checks.seed(self.seed)
        checks.integer(self.batch_size, 1, checks.MAX_BATCH, "batch_size")
        checks.integer(self.shard_pairs, 1, 10 * checks.MAX_BATCH, "shard_pairs")
        checks.finite(self.residual, 0.0, 1.0, "residual")
        if self.threads is not None:
            checks.integer(self.threads, 1, 1024, "threads")
        for name in ("trust_export", "resume", "overwrite", "allow_template_mismatch"):
            checks.flag(getattr(self, name), name)

    def to_json(self) -> dict:
        return {k: (v.value if isinstance(v, Enum) else str(v) if isinstance(v, Path) else v)
                for k, v in asdict(self).items()}
