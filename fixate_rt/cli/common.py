"""What every command shares: the Typer app, the one-line error contract, the consoles and the progress columns."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps

import typer
from rich.console import Console
from rich.progress import TextColumn

from ..errors import FixateError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="FixATE user simulation: synth, simulate, score, show, train, export, profile, validate, info.")
console = Console(stderr=True)  # progress and notes
out_console = Console()  # results


def fail_cleanly(fn: Callable) -> Callable:
    """One line and exit code 2 for every expected error; no traceback."""

    @wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except FixateError as exc:
            print(f"fixate-rt: error: {exc}", file=sys.stderr)
            raise typer.Exit(2) from None

    return wrapper


class PairsPerSecond(TextColumn):
    def __init__(self) -> None:
        super().__init__("")

    def render(self, task):
        speed = task.completed / task.elapsed if task.elapsed else 0.0
        return f"{speed:6.1f} pairs/s"
