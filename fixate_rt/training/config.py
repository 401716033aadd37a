"""Training configuration (defaults = the reference's RecGaze settings, docs/method.md §3, §5)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..losses import ATTN_LOSSES
from ..config import Probe

PROBES = tuple(p.value for p in Probe)


@dataclass(frozen=True)
class TrainConfig:
    sessions: Path
    images: Path
    users: Path
    out: Path
    model: str = "tiny-qwen3vl"
    probe: str = "rollout"
    signal: str = "fixation"
    tau: float = 1.0
    basis: int = 8
    soft_tokens: int = 16
    epochs: int = 30
    batch_size: int = 4
    grad_accum: int = 2
    lr_basis: float = 1e-3
    lr_alpha: float = 1e-3
    weight_decay: float = 1e-3
    lambda_attn: float = 0.5
    warmup_steps: int = 30
    choice_weight: float = 0.5
    beta: float = 1e-3
    gamma: float = 2.0
    attn_loss: str = "weighted_full_kl"
    clip_basis: float = 100.0
    clip_alpha: float = 5.0
    init_std: float = 0.01
    eval_every: int = 2
    patience: int = 5
    seeds: tuple[int, ...] = (42,)
    device: str = "auto"
    kernel: str = "auto"
    pool_mode: str = "auto"  # overlap when a slate's boxes overlap, else exclusive
    # Cold start and ablations (docs/method.md §3 "Ablations", §5 "Ablation switches").
    freeze_basis: bool = False
    init_from: Path | None = None
    random_prompt: bool = False
    no_user_alpha: bool = False
    no_ntp: bool = False
    resume: bool = False
    eval_batch_size: int = field(default=8)

    def __post_init__(self) -> None:
        from ..errors import ValidationError

        checks = [
            (self.probe in PROBES, f"--probe must be one of {', '.join(PROBES)}"),
            (self.signal in ("fixation", "cursor"), "--signal must be fixation or cursor"),
            (self.attn_loss in ATTN_LOSSES, f"--attn-loss must be one of {', '.join(ATTN_LOSSES)}"),
            (self.basis >= 1 and self.soft_tokens >= 1, "--basis and --soft-tokens must be ≥ 1"),
            (self.epochs >= 1 and self.batch_size >= 1 and self.grad_accum >= 1, "--epochs, --batch-size, --grad-accum ≥ 1"),
            (self.tau > 0, "--tau must be > 0"),
            (len(self.seeds) >= 1, "--seeds needs at least one seed"),
            (not self.freeze_basis or self.init_from is not None, "--freeze-basis needs --init-from prompts.safetensors"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValidationError(message)

    @property
    def uses_choice(self) -> bool:
        return not self.no_ntp and self.choice_weight > 0

    def to_json(self) -> dict:
        return {k: (str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v)
                for k, v in asdict(self).items()}
