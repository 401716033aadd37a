"""The README's and docs' command lines name only commands and options that exist (docs cannot go stale)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.main import get_command

from fixate_rt.cli import app

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _options(command) -> set[str]:
    names = set()
    for param in command.params:
        names.update(getattr(param, "opts", ()))
        names.update(getattr(param, "secondary_opts", ()))
    return names | {"--help"}


def _code(text: str) -> list[str]:
    """The lines of fenced code blocks, and each inline `code span`, in order (prose is left out)."""
    out, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if fenced:
            out.append(line)
        else:
            out.extend(re.findall(r"`([^`]+)`", line))
    return out


def _invocations(text: str):
    """Every `fixate-rt <command> ...` in code, with its continuation lines (an indented synopsis or `\\`)."""
    lines = _code(text)
    for i, line in enumerate(lines):
        for m in re.finditer(r"fixate-rt ([a-z][a-z-]*)", line):
            chunk = line[m.start():]
            j = i + 1
            while j < len(lines) and (lines[j - 1].rstrip().endswith("\\") or lines[j].startswith("    [")):
                chunk += " " + lines[j]
                j += 1
            yield m.group(1), chunk


@pytest.mark.parametrize("doc", DOCS, ids=[p.name for p in DOCS])
def test_documented_commands_and_options_exist(doc):
    commands = get_command(app).commands
    problems = []
    for name, chunk in _invocations(doc.read_text()):
        if name not in commands:
            problems.append(f"unknown command 'fixate-rt {name}'")
            continue
        known = _options(commands[name])
        # options up to the next command on the same line
        rest = chunk.split("fixate-rt ", 2)[1] if chunk.count("fixate-rt ") > 1 else chunk
        for opt in re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", rest):
            if opt not in known:
                problems.append(f"'fixate-rt {name}' has no option {opt}")
    assert not problems, f"{doc.name}: " + "; ".join(sorted(set(problems)))


def test_readme_figures_are_the_benchmark_results():
    """The README's measured figures are generated from benchmarks/results/ and must agree with them."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "readme_figures.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
