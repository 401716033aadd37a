"""fixate-rt: fixation-aligned VLM user simulation (FixATE) — simulate, score, train, export, profile."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._version import __version__

# Importing fixate_rt changes nothing in the host process (no logging or progress-bar settings) and loads nothing
# heavy: the names below are imported on first use, so `fixate-rt --help` and the CLI's thread settings come before
# torch is loaded.
# ``fixate_rt.simulate`` is the module (``import fixate_rt.simulate`` reaches it); the file-to-file run is
# ``run_simulation(config)``.
__all__ = ["Layout", "SimulateConfig", "Simulator", "SoftPromptBank", "run_simulation", "__version__"]
_WHERE = {"Layout": ".data.slates", "SimulateConfig": ".config", "Simulator": ".simulate", "SoftPromptBank": ".prompts",
          "run_simulation": ".run.local"}

if TYPE_CHECKING:
    from .config import SimulateConfig
    from .data.slates import Layout
    from .prompts import SoftPromptBank
    from .run.local import run_simulation
    from .simulate import Simulator


def __getattr__(name: str):
    if name in _WHERE:
        import importlib

        value = getattr(importlib.import_module(_WHERE[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'fixate_rt' has no attribute {name!r}")
