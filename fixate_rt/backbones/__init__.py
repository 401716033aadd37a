"""Backbone adapters. ``load(name_or_path)`` returns a ready `Backbone`."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import torch
from safetensors import SafetensorError

from ..errors import InputError, UnavailableError, ValidationError
from ..io import read_utf8
from ..model_io import DecoderInputs, DecoderOutput, SlateFeatures
from .builtins import builtin_folder, builtin_names
from .spliced import SplicedVLM

__all__ = ["DecoderInputs", "DecoderOutput", "SlateFeatures", "load", "resolve_device"]

SUPPORTED = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl", "internvl")
REMOTE_CODE_ONLY = ("internvl_chat",)


def resolve_device(device: str) -> torch.device:
    """``auto`` → cuda when available else cpu; an explicit ``cuda`` without a GPU is a clear error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"--device {device}: no CUDA device is available (torch.cuda.is_available() is False)")
    if device.startswith("cuda:") and int(device.split(":")[1]) >= torch.cuda.device_count():
        raise InputError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) here")
    return torch.device(device)


@contextlib.contextmanager
def _quiet_loading():
    """No per-shard progress bars while a local checkpoint loads; the host's own setting is restored after."""
    from transformers.utils import logging as hf_logging

    was_disabled = hf_logging.is_progress_bar_enabled() is False
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if not was_disabled:
            hf_logging.enable_progress_bar()


OLDEST_TRANSFORMERS = (5, 18)  # mm_encoder_outputs: older releases silently drop the image features


def require_transformers() -> None:
    """Refuse a transformers release whose VLMs would ignore the image features (results silently wrong)."""
    import re

    import transformers

    found = tuple(int(x) for x in re.findall(r"\d+", transformers.__version__)[:2])
    if found < OLDEST_TRANSFORMERS:
        raise UnavailableError(f"transformers {transformers.__version__} is too old: fixate-rt needs >= "
                               f"{'.'.join(map(str, OLDEST_TRANSFORMERS))} (earlier releases drop the image features "
                               "given through mm_encoder_outputs); pip install -U 'transformers>=5.18'")


def read_config(config: Path) -> dict:
    """A checkpoint's config.json as a dict; unreadable, non-UTF-8, invalid or non-object JSON is one line."""
    try:
        payload = json.loads(read_utf8(config, "model config"))
    except json.JSONDecodeError as exc:
        raise InputError(f"{config}: invalid JSON (line {exc.lineno})") from None
    if not isinstance(payload, dict):
        raise ValidationError(f"{config}: expected a JSON object, got {type(payload).__name__}")
    return payload


def model_folder(name_or_path: str | Path) -> tuple[Path, str, str]:
    """(folder, name, model_type) of ``--model``, checked without loading any weights: the folder has a readable
    config.json (UTF-8 JSON object) whose model_type is supported. Commands call this before writing anything."""
    if str(name_or_path) in builtin_names():
        name = str(name_or_path)
        with _quiet_loading():  # the first use of a random built-in writes it (no progress bars on stderr)
            path = builtin_folder(name)
    else:
        path, name = Path(name_or_path), str(name_or_path)
        if not (path / "config.json").is_file():
            raise InputError(f"{path}: not a model folder (no config.json); use a local checkpoint or one of "
                             f"{', '.join(builtin_names())}")
    config = path / "config.json"
    model_type = read_config(config).get("model_type")
    if model_type in REMOTE_CODE_ONLY:
        raise ValidationError(
            f"{config}, field 'model_type': '{model_type}' is the original remote-code InternVL "
            f"release, which would need trust_remote_code (never enabled here); use its transformers-native "
            f"'-HF' conversion (model_type 'internvl')"
        )
    if model_type not in SUPPORTED:
        raise ValidationError(f"{config}, field 'model_type': '{model_type}' is not supported (supported: "
                              f"{', '.join(SUPPORTED)})")
    return path, name, model_type


def load(name_or_path: str | Path, *, device: str | torch.device = "auto",
         dtype: torch.dtype | None = None) -> SplicedVLM:
    """Load a backbone from a local checkpoint folder or a built-in model (`builtins`). Never downloads."""
    dev = resolve_device(device) if isinstance(device, str) else device
    if dtype is None:
        dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    path, name, model_type = model_folder(name_or_path)
    require_transformers()
    try:
        if model_type in ("qwen2_vl", "qwen2_5_vl", "qwen3_vl"):
            from .qwen_vl import QwenVLBackbone

            with _quiet_loading():
                return QwenVLBackbone.from_pretrained(path, device=dev, dtype=dtype, name=name, model_type=model_type)
        if model_type == "internvl":
            from .internvl import InternVLBackbone

            with _quiet_loading():
                return InternVLBackbone.from_pretrained(path, device=dev, dtype=dtype, name=name)
    except (OSError, ValueError, RuntimeError, KeyError, TypeError, SafetensorError) as exc:
        # corrupt or mismatched weights, a config transformers rejects: one line naming the folder
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise InputError(f"{path}: cannot load this checkpoint ({type(exc).__name__}: {first})") from None
    raise AssertionError(model_type)  # model_folder admits only the families above
