"""What every command shares: the Typer app, the one-line error contract, the consoles and the progress columns."""

from __future__ import annotations

import logging
import math
import os
import sys
from collections.abc import Callable
from functools import wraps
from typing import Annotated, NamedTuple

import typer
from rich.console import Console
from typer.core import TyperGroup

from ..errors import FixateError

try:  # Typer ≥ 0.25 ships its own copy of Click and raises that copy's exceptions
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover - older Typer on the real Click
    from click import exceptions as click_errors


class OneLineErrors(TyperGroup):
    """Usage errors (an unknown option, a value Typer cannot parse or that is out of range) as one line on
    stderr and exit code 2, like every other input error, instead of Click's boxed multi-line report."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        from rich.markup import escape

        # Help strings are plain text: escape what Rich would read as markup ("[default: ...]", "fixate-rt[ray]"),
        # which its help renderer would otherwise swallow.
        for command in self.commands.values():
            for param in command.params:
                if getattr(param, "help", None):
                    param.help = escape(param.help)

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args=args, prog_name=prog_name, complete_var=complete_var,
                                standalone_mode=False, **extra)
        try:
            code = super().main(args=args, prog_name=prog_name, complete_var=complete_var,
                                standalone_mode=False, **extra)
        except click_errors.NoArgsIsHelpError as exc:
            print(exc.ctx.get_help() if exc.ctx is not None else str(exc))
            sys.exit(0)
        except click_errors.UsageError as exc:
            command = exc.ctx.command_path if exc.ctx is not None else "fixate-rt"
            message = " ".join(exc.format_message().split())
            print(f"{command}: error: {message} (see '{command} --help')", file=sys.stderr)
            sys.exit(2)
        except click_errors.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except typer.Abort:
            print("fixate-rt: aborted", file=sys.stderr)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(cls=OneLineErrors, add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="FixATE user simulation that looks at the page: simulated clicks and where the model looked, "
                       "scored against eye tracking, trained per user, exported, and put to experiments.")


def _print_version(value: bool) -> None:
    if value:
        from .._version import __version__

        print(f"fixate-rt {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                                help="Print the version and exit.")] = False,
          quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only warnings and errors on stderr")] = False,
          verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug messages too")] = False) -> None:
    """Global options (the app's help text describes the tool)."""
    configure_logging(logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO)


# Third-party messages that say nothing to a fixate-rt user (they concern optional packages or internals):
# warnings by message, and the loggers of the ONNX exporter ("torchvision is not installed. Skipping ...",
# "Attribute type is ambiguous ...").
QUIET_WARNINGS = (r".*torchvision.*", r".*Attribute type is ambiguous.*", r".*TypedStorage is deprecated.*")
QUIET_LOGGERS = ("torch.onnx._internal.exporter._registration", "onnx_ir._convenience")


def configure_logging(level: int) -> None:
    """The ``fixate_rt`` logger: Rich's handler on a terminal, plain ``fixate-rt: message`` lines elsewhere."""
    import warnings

    from rich.logging import RichHandler

    log = logging.getLogger("fixate_rt")
    log.handlers.clear()
    if console.is_terminal:
        handler: logging.Handler = RichHandler(console=console, show_time=False, show_path=False, markup=False)
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("fixate-rt: %(message)s"))
    log.addHandler(handler)
    log.setLevel(level)
    log.propagate = False
    for pattern in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # read when transformers is imported (only if needed)
console = Console(stderr=True)  # progress and notes
out_console = Console()  # results


def reject_non_finite(options: dict) -> None:
    """A NaN or infinite number given for any float option is refused before the command starts (Click's
    FloatRange lets NaN through, and a NaN learning rate or temperature would silently spread into results)."""
    for name, value in options.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise FixateError(f"--{name.replace('_', '-')} must be a finite number, got {value}")


def fail_cleanly(fn: Callable) -> Callable:
    """One line and exit code 2 for every expected error; no traceback."""

    @wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            reject_non_finite(kwargs)
            return fn(*args, **kwargs)
        except FixateError as exc:
            code = getattr(exc, "exit_code", 2)  # 130 for an interrupted run, as a shell reports Ctrl-C
            # a path with undecodable bytes (kept as surrogates) must not break the one line that names it
            message = str(exc).encode("utf-8", "backslashreplace").decode("utf-8")
            print(f"fixate-rt: {'error: ' if code == 2 else ''}{message}", file=sys.stderr)
            raise typer.Exit(code) from None

    return wrapper


OVERWRITE_HELP = "Replace the finished output already in --out (without it, such a folder is refused)"


def option_panels(groups: dict[str, tuple[str, ...]]) -> Callable[[Callable], Callable]:
    """Put a command's options into named help panels (``{panel: parameter names}``), so a command with many
    options reads in groups; applied below ``@app.command`` (it edits the options' metadata in place)."""

    def apply(fn: Callable) -> Callable:
        import typing

        panel = {name: title for title, names in groups.items() for name in names}
        # The annotations are strings (postponed evaluation): evaluate them once and store the objects back, so
        # the OptionInfo edited here is the one Typer reads.
        hints = typing.get_type_hints(fn, include_extras=True)
        for name, hint in hints.items():
            fn.__annotations__[name] = hint
            for meta in getattr(hint, "__metadata__", ()):
                if name in panel and hasattr(meta, "rich_help_panel"):
                    meta.rich_help_panel = panel[name]
        return fn

    return apply


class ImageSize(NamedTuple):
    width: int
    height: int


def image_size_option(text: object) -> ImageSize:
    """``WxH`` (e.g. ``1100x619``) as parsed by Typer: a bad value is a usage error naming the option."""
    if isinstance(text, ImageSize):
        return text
    try:
        width, height = (int(v) for v in str(text).lower().split("x"))
    except ValueError:
        raise typer.BadParameter(f"expected WxH like 1100x619, got '{text}'") from None
    return ImageSize(width, height)


def seeds_option(text: object) -> tuple[int, ...]:
    """Comma-separated integer seeds (``1,2,3``) as parsed by Typer."""
    if isinstance(text, tuple):
        return text
    try:
        seeds = tuple(int(s) for s in str(text).split(",") if s.strip())
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated integers, got '{text}'") from None
    if not seeds:
        raise typer.BadParameter("expected at least one seed")
    bad = next((s for s in seeds if not 0 <= s < 2**63), None)
    if bad is not None:
        raise typer.BadParameter(f"seeds must be in 0..2^63-1, got {bad}")
    repeated = next((s for s in seeds if seeds.count(s) > 1), None)
    if repeated is not None:
        raise typer.BadParameter(f"seed {repeated} is given twice (each seed trains once)")
    return seeds

