"""Per-user soft prompts: a shared basis mixed by per-user logits (docs/method.md §3).

prompt_u = softmax(alpha_u) @ basis, i.e. [K] x [K, N, D] -> [N, D]. A user missing from the bank gets the
cold-start prompt alpha = 0, the plain mean of the bases, and is flagged as such.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .errors import InputError, ValidationError
from .io import atomic_path

FORMAT_VERSION = "1"


@dataclass
class SoftPromptBank:
    """basis [K, N, D] (shared), alpha [U, K] (one row per user in ``user_ids`` order)."""

    basis: torch.Tensor
    alpha: torch.Tensor
    user_ids: tuple[str, ...]
    backbone: str = ""
    config_hash: str = ""
    template: str = "fixate-rt"  # the prompt template it was trained under (banks older than templates: fixate-rt)

    def __post_init__(self) -> None:
        if self.basis.ndim != 3:
            raise ValidationError(f"prompt bank: basis must be [K, N, D], got shape {tuple(self.basis.shape)}")
        if self.alpha.ndim != 2 or self.alpha.shape != (len(self.user_ids), self.basis.shape[0]):
            raise ValidationError(
                f"prompt bank: alpha must be [U, K] = [{len(self.user_ids)}, {self.basis.shape[0]}], "
                f"got {tuple(self.alpha.shape)}"
            )
        for name, tensor in (("basis", self.basis), ("alpha", self.alpha)):
            if not tensor.is_floating_point():
                raise ValidationError(f"prompt bank, field '{name}': expected floating point, got {tensor.dtype}")
            if not torch.isfinite(tensor).all():
                raise ValidationError(f"prompt bank, field '{name}': {int((~torch.isfinite(tensor)).sum())} "
                                      "non-finite values (NaN or Inf)")
        for i, uid in enumerate(self.user_ids):
            if not isinstance(uid, str) or not uid:
                raise ValidationError(f"prompt bank, field 'user_ids': entry {i} is {uid!r}, not a non-empty string "
                                      "(every user would silently be cold-start)")
        if len(set(self.user_ids)) != len(self.user_ids):
            dup = next(u for u in self.user_ids if self.user_ids.count(u) > 1)
            raise ValidationError(f"prompt bank, field 'user_ids': duplicate user id '{dup}'")
        if 0 in self.basis.shape[:2]:
            raise ValidationError(f"prompt bank, field 'basis': empty shape {tuple(self.basis.shape)} (K and N must be ≥ 1)")
        self._row = {uid: i for i, uid in enumerate(self.user_ids)}

    @property
    def n_basis(self) -> int:
        return self.basis.shape[0]

    @property
    def n_tokens(self) -> int:
        return self.basis.shape[1]

    @property
    def hidden_size(self) -> int:
        return self.basis.shape[2]

    @classmethod
    def init(
        cls, user_ids: list[str] | tuple[str, ...], n_basis: int, n_tokens: int, hidden_size: int, *,
        std: float = 0.01, seed: int = 0, backbone: str = "",
    ) -> SoftPromptBank:
        """FixATE's initialisation: basis ~ N(0, std^2), alpha = 0 (every user starts at the mean prompt)."""
        gen = torch.Generator().manual_seed(seed)
        basis = torch.randn(n_basis, n_tokens, hidden_size, generator=gen) * std
        return cls(basis, torch.zeros(len(user_ids), n_basis), tuple(user_ids), backbone)

    def check_hidden_size(self, hidden_size: int, source: object = "prompt bank") -> None:
        if self.hidden_size != hidden_size:
            raise ValidationError(
                f"{source}: prompt hidden size {self.hidden_size} does not match the model's {hidden_size}"
            )

    def check_template(self, template: str, source: object = "prompt bank", *, allow_mismatch: bool = False) -> None:
        """Refuse a bank trained under another prompt template: its prompts were fitted to other conditioning."""
        if self.template != template and not allow_mismatch:
            raise ValidationError(f"{source}: trained with --template {self.template} but this run uses --template "
                                  f"{template} (pass --template {self.template}, or --allow-template-mismatch)")

    def is_cold(self, user_id: str) -> bool:
        return user_id not in self._row

    def mix(self, user_ids: list[str] | tuple[str, ...]) -> tuple[torch.Tensor, list[bool]]:
        """Prompts [B, N, D] for ``user_ids`` plus a cold-start flag per user."""
        cold = [uid not in self._row for uid in user_ids]
        alpha = torch.stack(
            [torch.zeros(self.n_basis) if c else self.alpha[self._row[uid]] for uid, c in zip(user_ids, cold)]
        ).to(self.basis.dtype)
        weights = torch.softmax(alpha.float(), dim=-1).to(self.basis.dtype)  # [B, K]
        if self.basis.is_cuda:  # pinned + async: no synchronising copy inside a simulation's batch loop
            weights = weights.pin_memory().to(self.basis.device, non_blocking=True)
        return torch.einsum("bk,knd->bnd", weights, self.basis), cold

    def to(self, device: torch.device, dtype: torch.dtype | None = None) -> SoftPromptBank:
        """A copy whose basis lives on ``device`` (alpha stays on the CPU: it is indexed per user)."""
        return dataclasses.replace(self, basis=self.basis.to(device, dtype or self.basis.dtype))

    # ------------------------------------------------------------------------------------ files
    def save(self, path: Path) -> None:
        meta = {
            "format": f"fixate-rt/prompt-bank/{FORMAT_VERSION}",
            "user_ids": json.dumps(list(self.user_ids)),
            "backbone": self.backbone,
            "hidden_size": str(self.hidden_size),
            "config_hash": self.config_hash,
            "template": self.template,
        }
        tensors = {"basis": self.basis.detach().float().contiguous(), "alpha": self.alpha.detach().float().contiguous()}
        with atomic_path(Path(path)) as tmp:
            save_file(tensors, str(tmp), metadata=meta)

    @classmethod
    def load(cls, path: Path) -> SoftPromptBank:
        """Load from safetensors (never pickle); every problem names the file."""
        path = Path(path)
        if not path.is_file():
            raise InputError(f"{path}: prompt bank not found")
        try:
            tensors = load_file(str(path))
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
        except (SafetensorError, OSError, ValueError) as exc:
            raise InputError(f"{path}: not a readable safetensors prompt bank ({exc})") from None
        for name in ("basis", "alpha"):
            if name not in tensors:
                raise ValidationError(f"{path}, field '{name}': tensor missing")
        try:
            user_ids = json.loads(meta.get("user_ids", "[]"))
        except json.JSONDecodeError:
            raise ValidationError(f"{path}, field 'user_ids': metadata is not a JSON list") from None
        if not isinstance(user_ids, list):
            raise ValidationError(f"{path}, field 'user_ids': metadata is not a JSON list")
        user_ids = tuple(user_ids)
        stated = meta.get("hidden_size")
        if stated is not None and tensors["basis"].ndim == 3 and stated != str(tensors["basis"].shape[2]):
            raise ValidationError(f"{path}, field 'hidden_size': metadata says {stated} but basis is "
                                  f"{tuple(tensors['basis'].shape)}")
        try:
            return cls(tensors["basis"], tensors["alpha"], user_ids, meta.get("backbone", ""), meta.get("config_hash", ""),
                       meta.get("template", "fixate-rt"))
        except ValidationError as exc:
            raise ValidationError(f"{path}: {exc}") from None


def config_hash(config: dict) -> str:
    """Short stable hash of a JSON-able config (recorded in prompt banks and run.json)."""
    return hashlib.blake2b(json.dumps(config, sort_keys=True, default=str).encode(), digest_size=8).hexdigest()
