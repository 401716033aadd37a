"""The README's Python example and the docs' command walkthroughs run as written (docs cannot go stale).

docs/embedding.md's examples run in tests/test_embedding_docs.py. Blocks that need data this machine does not
have (the AdSERP demo needs Chromium and is run by scripts/adserp_demo.sh; docs/scale-out.md's cluster paths)
are checked for their command names and options only, by tests/test_docs_cli.py.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from fixate_rt.run.layout import read_simulation

pytestmark = pytest.mark.slow  # left out of the quick subset: bash scripts/test.sh -m "not slow"

ROOT = Path(__file__).resolve().parents[1]


def _blocks(doc: Path, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", doc.read_text(), flags=re.S)


def _without_optional_parts(command: str) -> str:
    """A synopsis line as a command: `[--level 0.95]` style optional groups dropped."""
    return re.sub(r"\s*\[[^\[\]]*\]", "", command)


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    """`fixate-rt synth` output both at the root (the README's paths) and in data/ (the docs' paths)."""
    from fixate_rt.data.synth import SynthConfig, write_synth

    root = tmp_path_factory.mktemp("docs-run")
    write_synth(root / "data", SynthConfig(n_users=4, n_slates=3, seed=3))
    write_synth(root / "readme", SynthConfig(n_users=4, n_slates=3, seed=3))
    return root


def test_the_readme_python_example_runs_and_its_comments_hold(synth_root, monkeypatch):
    from fixate_rt.prompts import SoftPromptBank

    (block,) = _blocks(ROOT / "README.md", "python")
    folder = synth_root / "readme"
    monkeypatch.chdir(folder)
    # the bank the example loads: one trained user (u001), so u002 is cold-start as the comment says
    SoftPromptBank.init(["u001"], 2, 4, 128, backbone="slates-qwen3vl").save(folder / "prompts.safetensors")
    names: dict = {"__name__": "__readme__"}
    exec(compile(block, "README.md[python]", "exec"), names)
    res, info = names["res"], names["info"]
    S = len(names["slate"].layout.labels)
    assert tuple(res.p_click.shape) == (2, S) and tuple(res.slot_relevance.shape) == (2, S)
    assert tuple(res.clicks.shape) == (2, 2)
    assert list(res.cold_start) == [False, True]
    assert info["rows"] == 4 * 3 and (folder / "out" / "simulations").is_dir()


def test_the_experiments_walkthrough_runs_as_written(tmp_path):
    """docs/experiments.md's command blocks, in order, in an empty folder (the first makes the data)."""
    doc = ROOT / "docs" / "experiments.md"
    commands = [_without_optional_parts(line) for block in _blocks(doc, "bash")
                for line in block.splitlines() if line.strip()]
    assert [c.split()[1] for c in commands] == ["synth", "permute", "simulate", "simulate", "compare",
                                                "position-bias", "export-clicks", "export-clicks"]
    synth_root = tmp_path
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "HF_HUB_OFFLINE": "1"}
    for command in commands:
        done = subprocess.run(["bash", "-c", command], cwd=synth_root, env=env, capture_output=True, text=True)
        assert done.returncode == 0, f"{command}\n{done.stderr[-2000:]}"
    for path in ("shuffled/.permutation.json", "compare/compare.json", "compare/compare.png",
                 "position_bias/position_bias.png", "clicks/yandex/clicks.tsv", "clicks/clax/clicks.parquet"):
        assert (synth_root / path).is_file(), path
    sims = read_simulation(synth_root / "sim_shuffled")[0]
    assert sims.num_rows == 12 * 8 * 4  # users × slates × --samples 4
    assert pq.read_table(synth_root / "clicks" / "clax" / "clicks.parquet").num_rows == sims.num_rows
