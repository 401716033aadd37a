"""Frozen run configurations shared by the CLI and the Python API."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import Enum
from pathlib import Path


class Probe(str, Enum):
    rollout = "rollout"
    glimpse = "glimpse"
    attnlrp = "attnlrp"


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class Kernel(str, Enum):
    auto = "auto"
    torch = "torch"
    cpp = "cpp"
    triton = "triton"


class Signal(str, Enum):
    fixation = "fixation"
    cursor = "cursor"


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


@dataclass(frozen=True)
class SimulateConfig:
    users: Path
    images: Path
    out: Path
    model: str = "tiny-qwen3vl"
    prompts: Path | None = None
    pairs: Path | None = None
    samples: int = 1
    seed: int = 0
    batch_size: int = 8
    device: Device = Device.auto
    probe: Probe = Probe.rollout
    kernel: Kernel = Kernel.auto
    pool_mode: PoolMode = PoolMode.auto
    residual: float = 0.5
    backend: str = "torch"
    shard_pairs: int = 4096  # pairs per output shard (what an interruption can lose at most)
    resume: bool = False

    def to_json(self) -> dict:
        return {k: (v.value if isinstance(v, Enum) else str(v) if isinstance(v, Path) else v)
                for k, v in asdict(self).items()}
