"""Every command's rendered ``--help``: each option's help text appears whole (Rich markup swallows nothing, e.g.
``[default: ...]`` or ``fixate-rt[ray]`` inside a help string), and each option with a default shows it."""

from __future__ import annotations

import re

import pytest
import typer
from typer.testing import CliRunner

from fixate_rt.cli import app

runner = CliRunner()
BOX = re.compile(r"[│╭╮╰╯─]")
COMMANDS = sorted(typer.main.get_command(app).commands)


def _flat(text: str) -> str:
    return " ".join(BOX.sub(" ", text).split())


def _options(name: str) -> list:
    """The command's options (Typer ships its own Click, so they are told apart by their kind, not their class)."""
    command = typer.main.get_command(app).commands[name]
    return [p for p in command.params if p.param_type_name == "option" and not p.hidden and p.name != "help"]


@pytest.mark.parametrize("name", COMMANDS)
def test_help_shows_each_option_whole_with_its_default(name):
    result = runner.invoke(app, [name, "--help"], env={"COLUMNS": "400"}, terminal_width=400)
    assert result.exit_code == 0, result.output
    shown = _flat(result.output)
    assert _options(name), f"{name}: no options found (the test would check nothing)"
    for option in _options(name):
        text = _flat((option.help or "").replace("\\[", "["))  # the help as written (its escaping undone)
        assert text and text in shown, f"{name} {option.opts[0]}: help text missing, lost or cut: {text!r}"
        if option.required or option.is_flag or option.default is None:
            # no default to show, or one the help text states itself ("[default: ...]" where it means something)
            continue
        after = shown[shown.index(text) + len(text):]
        assert after.lstrip().startswith("[default: "), f"{name} {option.opts[0]}: default not shown"


def test_the_test_sees_swallowed_markup():
    """The check above fails where Rich would eat a bracket: the raw markup renders without its tag."""
    from rich.console import Console
    from rich.text import Text

    console = Console(width=200, record=True)
    console.print(Text.from_markup("pip install 'fixate-rt[ray]'"))
    assert "[ray]" not in console.export_text()


HEAVY = ("torch", "transformers", "numpy", "pyarrow", "PIL", "onnxruntime", "ray", "scipy", "matplotlib", "safetensors")


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["simulate", "--help"], ["train", "--help"],
                                  ["validate", "--help"], ["compare", "--help"], ["export", "--help"]])
def test_help_and_version_start_without_the_heavy_libraries(argv):
    """`--help` and `--version` load only the CLI (Typer, Rich): no torch, no model code, no data libraries, so they
    answer in a fraction of a second of CPU on any machine (measure with `python -X importtime -m fixate_rt`)."""
    import subprocess
    import sys

    code = ("import sys\nfrom fixate_rt.cli import app\n"
            f"try:\n    app({argv!r}, standalone_mode=False)\nexcept SystemExit:\n    pass\n"
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]", out[-500:]
