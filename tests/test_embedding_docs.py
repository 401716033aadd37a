"""Every Python block of docs/embedding.md runs as written, in a folder holding `fixate-rt synth data` output."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # left out of the quick subset: bash scripts/test.sh -m "not slow"

DOC = Path(__file__).resolve().parents[1] / "docs" / "embedding.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


def test_the_page_has_its_examples():
    assert len(BLOCKS) >= 4 and any("map_batches" in b for b in BLOCKS) and any("simulate_slate" in b for b in BLOCKS)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    from fixate_rt.data.synth import SynthConfig, write_synth

    root = tmp_path_factory.mktemp("embedding")
    write_synth(root / "data", SynthConfig(n_users=4, n_slates=3, seed=2))
    return root


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_doc_block_runs(index, workdir, monkeypatch, capsys):
    monkeypatch.chdir(workdir)
    exec(compile(BLOCKS[index], f"{DOC.name}[block {index}]", "exec"), {"__name__": "__embedding_doc__"})
    printed = capsys.readouterr().out
    assert printed.strip(), "every example prints what it produced"
    if "simulate_slate" in BLOCKS[index]:
        assert re.search(r"^2 \[\[\d, \d\], \[\d, \d\]\]$", printed, flags=re.M)
    if "map_batches" in BLOCKS[index]:
        assert "4 rows" in printed  # 2 slates × 2 users, one sample each
