"""The Triton rollout kernel under the interpreter (CPU): run with TRITON_INTERPRET=1 set before import
(`TRITON_INTERPRET=1 pytest tests_triton`). bf16 is wrong in the interpreter: it is left to the GPU run."""

import os

import pytest
import torch

if os.environ.get("TRITON_INTERPRET") != "1":
    pytest.skip("set TRITON_INTERPRET=1 to run the Triton kernel on CPU", allow_module_level=True)
pytest.importorskip("triton", reason="pip install 'fixate-rt[gpu]'")

from fixate_rt import ops  # noqa: E402
from fixate_rt.reference import attention_from_qk, rollout_row_qk_chunked, rollout_row_reference  # noqa: E402
from fixate_rt.run.layout import read_simulation


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
        tables[kernel] = read_simulation(tmp_path / kernel)[0].to_pydict()
    run = json.loads((tmp_path / "triton" / "run.json").read_text())
    assert run["implementations"]["rollout_row_qk"] == {"impl": "triton", "device": "cpu", "capture": "qk"}
    assert tables["torch"]["click_slot"] == tables["triton"]["click_slot"]
    np.testing.assert_allclose(np.array(tables["torch"]["slot_relevance"]), np.array(tables["triton"]["slot_relevance"]),
                               atol=1e-5)


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.float16, 2e-3)])
@pytest.mark.parametrize("T, HQ, HKV", [(37, 4, 1), (130, 2, 2)])
def test_reusing_the_forwards_log_sum_exp(dtype, tol, T, HQ, HKV):
    """The log-sum-exp returned by the fused attention op of the forward (sdpa_with_lse) replaces the kernel's own
    first pass: same row, and the op's attention output equals SDPA's on the real (unpadded) rows."""
    from fixate_rt.probes.capture import sdpa_with_lse

    B, L, D = 2, 3, 16
    q, k, mask = _inputs(B, L, HQ, HKV, T, D, dtype, pad=5)
    v = torch.randn(B, L, HKV, T, D, generator=torch.Generator().manual_seed(9)).to(dtype)
    keep = torch.ones(T, T, dtype=torch.bool).tril()[None, None] & mask.bool()[:, None, None, :]
    lse = []
    for layer in range(L):
        out, layer_lse = sdpa_with_lse(q[:, layer], k[:, layer], v[:, layer], keep, D ** -0.5)
        lse.append(layer_lse)
        groups = HQ // HKV
        sdpa = torch.nn.functional.scaled_dot_product_attention(
            q[:, layer].float(), k[:, layer].float().repeat_interleave(groups, 1),
            v[:, layer].float().repeat_interleave(groups, 1), attn_mask=keep).transpose(1, 2)
        torch.testing.assert_close(out[1, 5:].float(), sdpa[1, 5:], atol=tol * 10, rtol=tol * 10)
    lse = torch.stack(lse, 1)  # [B, L, Hq, T]
    last = torch.full((B,), T - 1)
    expected = rollout_row_reference(attention_from_qk(q.float(), k.float(), mask).double(), last, 0.5).float()
    torch.testing.assert_close(ops.rollout_row_qk(q, k, last, mask, lse=lse, impl="triton"), expected, atol=tol, rtol=tol)
    torch.testing.assert_close(ops.rollout_row_qk(q, k, last, mask, lse=lse, impl="torch"), expected,
                               atol=max(tol, 1e-5), rtol=1e-4)


def test_simulate_capture_hands_over_the_log_sum_exp():
    """On the fused path every probed layer's log-sum-exp comes from the forward (no recomputation)."""
    import numpy as np

    from fixate_rt.backbones import load
    from fixate_rt.data.layout import LETTERS
    from fixate_rt.data.render import render_slate

    bb = load("tiny-qwen3vl", device="cpu")
    image = render_slate([{"title": "Blue Moon", "genre": "Drama"}] * 15, ["Drama", "Comedy", "Crime"],
                         np.random.default_rng(0))
    feats = bb.encode_slate(image)
    inputs = bb.build_inputs(["x", "Top_genre: Drama"], LETTERS, feats, 0)
    out = bb.decode(inputs, feats, None, bb.label_token_ids(LETTERS), bb.default_probe_layers, capture="qk")
    assert set(out.capture.lse) == set(bb.default_probe_layers)
    B, T = inputs.input_ids.shape
    q = out.capture.queries[bb.default_probe_layers[0]]
    assert out.capture.lse[bb.default_probe_layers[0]].shape == (B, q.shape[1], T)
