"""docs/formats.md's "Bounds on work" table states the constants fixate_rt/limits.py enforces."""

from __future__ import annotations

import re
from pathlib import Path

from fixate_rt.limits import LIMITS

DOC = Path(__file__).resolve().parents[1] / "docs" / "formats.md"


def test_every_limit_is_documented_with_its_value():
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index("### Bounds on work"):]
    documented = {name: value for name, value in re.findall(r"`(MAX_[A-Z_]+|RAY_[A-Z_]+)` = ([0-9.]+)", section)}
    assert set(documented) == set(LIMITS)
    for name, value in LIMITS.items():
        assert float(documented[name]) == float(value), name
