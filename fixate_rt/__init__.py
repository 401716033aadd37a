"""fixate-rt: fixation-aligned VLM user simulation (FixATE) — simulate, score, train, export, profile."""

from __future__ import annotations

__version__ = "0.1.0"

# Importing fixate_rt changes nothing in the host process (no logging or progress-bar settings).
from .config import SimulateConfig  # noqa: E402
from .data.slates import Layout  # noqa: E402
from .prompts import SoftPromptBank  # noqa: E402
from .simulate import Simulator, run_simulation  # noqa: E402

# ``fixate_rt.simulate`` is the module (``import fixate_rt.simulate`` reaches it); the file-to-file run is
# ``run_simulation(config)``.
__all__ = ["Layout", "SimulateConfig", "Simulator", "SoftPromptBank", "run_simulation", "__version__"]
