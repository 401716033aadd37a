"""The Triton rollout kernel under the interpreter (CPU): run with TRITON_INTERPRET=1 set before import
(`TRITON_INTERPRET=1 pytest tests_triton`). bf16 is wrong in the interpreter: it is left to the GPU run."""

import os

import pytest
import torch

if os.environ.get("TRITON_INTERPRET") != "1":
    pytest.skip("set TRITON_INTERPRET=1 to run the Triton kernel on CPU", allow_module_level=True)
pytest.importorskip("triton", reason="pip install 'fixate-rt[gpu]'")

from fixate_rt import ops  # noqa: E402
from fixate_rt.probes.reference import attention_from_qk, rollout_row_qk_chunked, rollout_row_reference  # noqa: E402


def _inputs(B, L, HQ, HKV, T, D, dtype, pad, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, L, HQ, T, D, generator=g).to(dtype)
    k = torch.randn(B, L, HKV, T, D, generator=g).to(dtype)
    mask = torch.ones(B, T, dtype=torch.long)
    for b in range(B):
        mask[b, : pad * b] = 0  # left padding, different per row
    return q, k, mask


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.float16, 2e-3)])
@pytest.mark.parametrize("T", [37, 130])
@pytest.mark.parametrize("HQ, HKV", [(2, 2), (4, 1)])
def test_kernel_matches_materialised_rollout(dtype, tol, T, HQ, HKV):
    B, L, D = 2, 3, 16
    q, k, mask = _inputs(B, L, HQ, HKV, T, D, dtype, pad=5)
    last = torch.full((B,), T - 1)
    attn = attention_from_qk(q.float(), k.float(), mask)  # [B, L, T, T], the materialised path
    expected = rollout_row_reference(attn.double(), last, 0.5).float()
    got = ops.rollout_row_qk(q, k, last, mask, impl="triton")
    torch.testing.assert_close(got, expected, atol=tol, rtol=tol)
    chunked = ops.rollout_row_qk(q, k, last, mask, impl="torch")
    torch.testing.assert_close(chunked, expected, atol=1e-5 if dtype == torch.float32 else tol, rtol=1e-4)
    assert torch.all(got[1, :5] == 0), "padded keys get no relevance"


def test_kernel_without_mask_and_other_residual():
    q, k, _ = _inputs(1, 2, 2, 2, 50, 8, torch.float32, pad=0, seed=3)
    pos = torch.tensor([31])  # not the last row
    expected = rollout_row_reference(attention_from_qk(q, k).double(), pos, 0.3).float()
    torch.testing.assert_close(ops.rollout_row_qk(q, k, pos, residual=0.3, impl="triton"), expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(rollout_row_qk_chunked(q, k, pos, residual=0.3, chunk=16), expected, atol=1e-5, rtol=1e-5)


def test_simulate_with_the_fused_kernel_matches_the_capture_path(tmp_path):
    """Q/K captured at the attention boundary (every layer SDPA) + Triton rollout == eager capture + torch rollout."""
    import json

    import numpy as np
    import pyarrow.parquet as pq
    from typer.testing import CliRunner

    from fixate_rt.cli import app
    from fixate_rt.data.synth import SynthConfig, write_synth

    write_synth(tmp_path / "data", SynthConfig(n_users=3, n_slates=3, seed=5))
    runner = CliRunner()
    tables = {}
    for kernel in ("torch", "triton"):
        result = runner.invoke(app, ["simulate", "--users", str(tmp_path / "data" / "users.parquet"), "--images",
                                     str(tmp_path / "data" / "slates"), "--out", str(tmp_path / kernel), "--device",
                                     "cpu", "--kernel", kernel, "--batch-size", "2"])
        assert result.exit_code == 0, result.output + (result.stderr or "")
        tables[kernel] = pq.read_table(tmp_path / kernel / "simulations.parquet").to_pydict()
    run = json.loads((tmp_path / "triton" / "run.json").read_text())
    assert run["implementations"]["rollout_row_qk"] == "triton"
    assert tables["torch"]["click_slot"] == tables["triton"]["click_slot"]
    np.testing.assert_allclose(np.array(tables["torch"]["slot_relevance"]), np.array(tables["triton"]["slot_relevance"]),
                               atol=1e-5)
