"""`py.typed` is a promise: the README's and docs/embedding.md's Python examples pass `mypy --strict` against the
package's public API (paths as str or PathLike, choices as Enum or value, arrays and sequences where a user
naturally has them, `SlateResult.clicks` always an array), so a user's type checker agrees with the docs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # left out of the quick subset: bash scripts/test.sh -m "not slow"

ROOT = Path(__file__).resolve().parents[1]
DOCS = (ROOT / "README.md", ROOT / "docs" / "embedding.md")


def test_the_documented_examples_type_check_strictly(tmp_path):
    pytest.importorskip("mypy", reason="mypy is in the test extra; CI installs it")
    files = []
    for doc in DOCS:
        for i, block in enumerate(re.findall(r"```python\n(.*?)```", doc.read_text(), re.S)):
            path = tmp_path / f"{doc.stem.lower()}_{i}.py"
            path.write_text(block)
            files.append(str(path))
    assert len(files) >= 4, files
    done = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--ignore-missing-imports",
                           "--follow-imports=silent", "--no-incremental", "--cache-dir", str(tmp_path / "cache"),
                           *files], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-1000:]
