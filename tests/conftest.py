"""Shared fixtures: a private model cache, the tiny backbone, and a small synthetic dataset."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# Before fixate_rt is imported anywhere: tests never touch the user's cache and never reach a network.
os.environ.setdefault("FIXATE_RT_CACHE", tempfile.mkdtemp(prefix="fixate-rt-test-cache-"))
os.environ["HF_HUB_OFFLINE"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def tiny():
    from fixate_rt.backbones import load

    return load("tiny-qwen3vl", device="cpu")


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory) -> Path:
    from fixate_rt.data.synth import SynthConfig, write_synth

    out = tmp_path_factory.mktemp("synth")
    write_synth(out, SynthConfig(n_users=6, n_slates=4, seed=3))
    return out
