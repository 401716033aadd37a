"""Training checkpoints: tensors in safetensors, everything else in JSON (no pickle), written atomically."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..io import atomic_path, write_json

TENSORS, STATE = "state.safetensors", "state.json"


def save(folder: Path, tensors: dict[str, torch.Tensor], state: dict, optimizer: torch.optim.Optimizer | None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    payload = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    opt_state = {}
    if optimizer is not None:
        sd = optimizer.state_dict()
        for pid, st in sd["state"].items():
            for key, value in st.items():
                if isinstance(value, torch.Tensor) and value.ndim > 0:
                    payload[f"opt.{pid}.{key}"] = value.detach().cpu().contiguous()
                else:
                    opt_state[f"{pid}.{key}"] = float(value)
        state = {**state, "optimizer_scalars": opt_state, "optimizer_groups": sd["param_groups"]}
    # Tensors first, then the JSON that makes them current: a crash in between leaves the old JSON pointing
    # at a consistent (older or newer) set only if both agree, so the JSON also records the tensor step.
    with atomic_path(folder / TENSORS) as tmp:
        save_file(payload, str(tmp))
    write_json(folder / STATE, state)


def load(folder: Path) -> tuple[dict[str, torch.Tensor], dict] | None:
    if not (folder / STATE).is_file() or not (folder / TENSORS).is_file():
        return None
    return load_file(str(folder / TENSORS)), json.loads((folder / STATE).read_text())


def restore_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], state: dict) -> None:
    sd = optimizer.state_dict()
    restored = {}
    for name, value in tensors.items():
        if name.startswith("opt."):
            _, pid, key = name.split(".", 2)
            restored.setdefault(int(pid), {})[key] = value
    for name, value in state.get("optimizer_scalars", {}).items():
        pid, key = name.split(".", 1)
        restored.setdefault(int(pid), {})[key] = torch.tensor(value)
    sd["state"] = restored
    for group, saved in zip(sd["param_groups"], state.get("optimizer_groups", [])):
        group.update({k: v for k, v in saved.items() if k != "params"})
    optimizer.load_state_dict(sd)
