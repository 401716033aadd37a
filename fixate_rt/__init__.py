"""fixate-rt: fixation-aligned VLM user simulation (FixATE) — simulate, score, train, export, profile."""

from __future__ import annotations

__version__ = "0.1.0"

from transformers.utils import logging as _hf_logging  # noqa: E402

# Loading local checkpoints needs no per-shard progress bars; our own progress bars say what is happening.
_hf_logging.disable_progress_bar()

from .config import SimulateConfig  # noqa: E402
from .prompts import SoftPromptBank  # noqa: E402
from .simulate import Simulator, simulate  # noqa: E402

__all__ = ["SimulateConfig", "Simulator", "SoftPromptBank", "simulate", "__version__"]
