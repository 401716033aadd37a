"""The ``fixate-rt`` command line (Typer). Each command validates, then calls the same API as Python users.

Every `FixateError` becomes one line on stderr and exit code 2 (`common.fail_cleanly`). Commands live in
modules by theme; importing them registers them on the one `app`.
"""

from __future__ import annotations

from ..threads import bound_spin_wait

bound_spin_wait()  # before any command module imports torch: OpenMP reads its wait settings when it starts

# Imported in the order `--help` lists them; importing a module registers its commands.
from . import data_cmds, run_cmds, analysis_cmds, train_cmd, model_cmds, experiment_cmds  # noqa: E402, F401, I001
from .common import app  # noqa: E402

__all__ = ["app", "main"]


def main() -> None:
    app()
