"""Training configuration (defaults = the reference's RecGaze settings, docs/method.md §3, §5).

`TrainConfig.from_preset` applies a named protocol (`fixate_rt.training.presets`): options given win over
the preset's values, which win over the project's defaults.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..config import Preset, Probe, Template, TieRule, parse_choice
from ..losses import ATTN_LOSSES
from . import presets

PROBES = tuple(p.value for p in Probe)


def _utf8(path: object) -> bool:
    try:
        str(path).encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


@dataclass(frozen=True)
class TrainConfig:
    sessions: Path
    images: Path
    users: Path
    out: Path
    model: str = "slates-qwen3vl"  # config.DEFAULT_MODEL
    probe: str = "rollout"
    signal: str = "fixation"  # fixation, cursor, or intersect (fixation, sessions that also have cursor dwell)
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
    patience: int | None = 5  # evaluations without improvement before stopping; None: never stop early
    seeds: tuple[int, ...] = (42, 123, 456, 789, 2024)
    device: str = "auto"
    kernel: str = "auto"
    threads: int | None = None  # compute threads; None: the CPUs this process may use (fixate_rt.threads)
    pool_mode: str = "auto"  # overlap when a slate's boxes overlap, else exclusive
    # Cold start and ablations (docs/method.md §3 "Ablations", §5 "Ablation switches").
    freeze_basis: bool = False
    init_from: Path | None = None
    random_prompt: bool = False
    no_user_alpha: bool = False
    no_ntp: bool = False
    resume: bool = False
    overwrite: bool = False  # replace a previous run's outputs in `out` (else such a folder is refused)
    eval_batch_size: int = field(default=8)
    # The paper's protocols (presets.py): set per data set by --preset, each overridable.
    preset: str = "none"
    template: str = "fixate-rt"
    tie_rule: str = "average"
    topk_js_k: int = 5
    selection: str = "composite"  # checkpoint selection on val: the composite score, or the lowest micro JS
    max_tiles: int | None = None  # InternVL tiles per slate (None: the model's own setting)
    split_mode: str = "data"  # "data": the sessions file's split; "per-seed": re-drawn per seed and user
    preset_sources: dict = field(default_factory=dict)  # where each protocol value came from (printed, recorded)

    @classmethod
    def from_preset(cls, preset: Preset | str = Preset.none, **options) -> TrainConfig:
        """A config with ``preset``'s protocol; options that are not None override it."""
        given = {name: options.pop(name, None) for name in presets.SETTINGS}
        values, sources = presets.resolve(preset, given)
        return cls(**options, **values, preset=parse_choice(Preset, preset, "preset").value, preset_sources=sources)

    def __post_init__(self) -> None:
        from ..errors import ValidationError

        def finite(value: float, low: float) -> bool:
            return isinstance(value, (int, float)) and math.isfinite(value) and value >= low

        checks = [
            (self.probe in PROBES, f"--probe must be one of {', '.join(PROBES)}"),
            (self.signal in ("fixation", "cursor", "intersect"), "--signal must be fixation, cursor or intersect"),
            (self.template in {t.value for t in Template}, f"--template must be one of {', '.join(t.value for t in Template)}"),
            (self.tie_rule in {t.value for t in TieRule}, f"--tie-rule must be one of {', '.join(t.value for t in TieRule)}"),
            (self.selection in presets.SELECTIONS, f"--selection must be one of {', '.join(presets.SELECTIONS)}"),
            (self.split_mode in presets.SPLIT_MODES, f"--split-mode must be one of {', '.join(presets.SPLIT_MODES)}"),
            (1 <= self.topk_js_k <= 64, f"--topk-js-k must be in 1..64, got {self.topk_js_k}"),
            (self.max_tiles is None or self.max_tiles >= 1, f"--max-tiles must be ≥ 1, got {self.max_tiles}"),
            (self.patience is None or self.patience >= 1, f"--patience must be ≥ 1, got {self.patience}"),
            (isinstance(self.warmup_steps, int) and self.warmup_steps >= 0,
             f"--warmup-steps must be ≥ 0, got {self.warmup_steps}"),
            (all(finite(getattr(self, n), 0.0) for n in ("lr_basis", "lr_alpha", "weight_decay", "lambda_attn",
                                                          "choice_weight", "beta", "gamma", "clip_basis",
                                                          "clip_alpha", "init_std")),
             "--lr-basis, --lr-alpha, --lambda-attn, --choice-weight, --beta and --gamma must be finite and ≥ 0 ("
             + ", ".join(f"{n}={getattr(self, n)}" for n in ("lr_basis", "lr_alpha", "lambda_attn", "choice_weight",
                                                              "beta", "gamma") if not finite(getattr(self, n), 0.0)) + ")"),
            (self.attn_loss in ATTN_LOSSES, f"--attn-loss must be one of {', '.join(ATTN_LOSSES)}"),
            (self.basis >= 1 and self.soft_tokens >= 1, "--basis and --soft-tokens must be ≥ 1"),
            (self.epochs >= 1 and self.batch_size >= 1 and self.grad_accum >= 1, "--epochs, --batch-size, --grad-accum ≥ 1"),
            (finite(self.tau, 0.0) and self.tau > 0, f"--tau must be finite and > 0, got {self.tau}"),
            (len(self.seeds) >= 1, "--seeds needs at least one seed"),
            (all(isinstance(s, int) and 0 <= s < 2**63 for s in self.seeds), f"--seeds must be in 0..2^63-1, got "
                                                                             f"{list(self.seeds)}"),
            (len(set(self.seeds)) == len(self.seeds), f"--seeds: each seed once, got {list(self.seeds)}"),
            (_utf8(self.out), f"--out {self.out!r}: not valid UTF-8"),
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

    def protocol(self) -> dict:
        """The preset's settings as resolved, with their sources (printed by `train`, kept in metrics.json)."""
        return {"preset": self.preset, "tie_rule": self.tie_rule,
                **{name: {"value": list(v) if isinstance(v := getattr(self, name), tuple) else v,
                          "source": self.preset_sources.get(name, "option")} for name in presets.SETTINGS}}
