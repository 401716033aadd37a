"""The C++ module and the ops registry: input checks, errors, fallback behaviour (parity: test_ops_parity.py)."""

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from fixate_rt import ops
from fixate_rt import reference as ref
from fixate_rt.errors import UnavailableError
from fixate_rt.run.layout import read_simulation

needs_cpp = pytest.mark.skipif(not ops.cpp_available(), reason="fixate_rt._C not built (FIXATE_RT_BUILD_CPP=OFF)")


def _attention(B=3, L=4, H=2, T=37, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    scores = torch.randn(B, L, H, T, T, generator=g, dtype=torch.float64).masked_fill(~causal, -torch.inf)
    attn = torch.softmax(scores, -1).to(dtype)
    grad = torch.randn(B, L, H, T, T, generator=g, dtype=torch.float64).to(dtype)
    return attn, grad


@needs_cpp
def test_rollout_row_cpp_accepts_non_contiguous_input():
    attn, _ = _attention(L=3, H=1, T=21)
    a = attn[:, :, 0]
    strided = a.transpose(0, 1).contiguous().transpose(0, 1)  # same values, non-contiguous layout
    assert not strided.is_contiguous()
    q = torch.tensor([20, 20, 5])
    torch.testing.assert_close(ops.rollout_row(strided, q, impl="cpp"), ops.rollout_row(a, q, impl="torch"))


@needs_cpp
@pytest.mark.parametrize("call, message", [
    (lambda C: C.rollout_row(np.zeros((2, 3, 4), np.float32), np.zeros(2, np.int64)), "attn must be"),
    (lambda C: C.rollout_row(np.zeros((2, 1, 4, 5), np.float32), np.zeros(2, np.int64)), "square"),
    (lambda C: C.rollout_row(np.zeros((2, 1, 4, 4), np.float32), np.array([0, 4])), r"query_pos\[1\] = 4 is outside 0..3"),
    (lambda C: C.rollout_row(np.zeros((1, 1, 4, 4), np.int32), np.zeros(1, np.int64)), "float32 or float64"),
    (lambda C: C.rollout_row(np.zeros((1, 1, 4, 4), np.float32), np.zeros(1, np.int64), 1.5), "residual"),
    (lambda C: C.attnlrp_row(np.zeros((1, 2, 2, 5)), np.zeros((1, 2, 2, 4)), np.zeros(1, np.int64)), "grad must have"),
    (lambda C: C.batch_metrics(np.zeros((2, 3)), np.zeros((2, 3)), np.zeros((2, 3)), np.array([0, 3]), np.array([3, 3])),
     r"clicked\[1\] = 3"),
    (lambda C: C.batch_metrics(np.zeros((2, 3)), np.zeros((2, 3)), np.zeros((2, 3)), np.array([0, 0]), np.array([3, 0])),
     "at least 1"),
    (lambda C: C.slot_pool(np.zeros((2, 5), np.float32), np.zeros((4, 4), np.float32), np.zeros((2, 3, 4), np.float32)),
     "token_boxes must be"),
])
def test_cpp_errors_are_value_errors_with_readable_messages(call, message):
    from fixate_rt import _C

    with pytest.raises(ValueError, match=message):
        call(_C)


def test_registry_fallback_and_explicit_failure(monkeypatch):
    monkeypatch.setattr(ops, "_C", None)
    monkeypatch.setattr(ops, "_CPP_ERROR", "C++ module fixate_rt._C not built (test)")
    assert ops.resolve("rollout_row", "auto", device=torch.device("cpu")) == "torch"
    with pytest.raises(UnavailableError, match="impl 'cpp' unavailable: C\\+\\+ module fixate_rt._C not built"):
        ops.resolve("rollout_row", "cpp", device=torch.device("cpu"))
    attn = torch.softmax(torch.randn(1, 2, 5, 5), -1)
    torch.testing.assert_close(ops.rollout_row(attn, torch.tensor([4])),
                               ref.rollout_row_reference(attn, torch.tensor([4])))


def test_registry_refuses_wrong_device_grad_and_unknown_impl():
    if ops.cpp_available():
        with pytest.raises(UnavailableError, match="runs on cpu, inputs are on cuda"):
            ops.resolve("slot_pool", "cpp", device=torch.device("cuda"))
        with pytest.raises(UnavailableError, match="not differentiable"):
            ops.resolve("slot_pool", "cpp", device=torch.device("cpu"), needs_grad=True)
    else:
        with pytest.raises(UnavailableError, match="not built"):
            ops.resolve("slot_pool", "cpp", device=torch.device("cpu"))
    with pytest.raises(UnavailableError, match="no 'triton' implementation"):
        ops.resolve("slot_pool", "triton", device=torch.device("cpu"))
    assert ops.resolve("slot_pool", "auto", device=torch.device("cpu"), needs_grad=True) == "torch"
    assert ops.resolve("slot_pool", "auto", device=torch.device("cuda")) == "torch"


@needs_cpp
@pytest.mark.slow
def test_simulate_same_results_with_torch_and_cpp_kernels(tmp_path, synth_dir):
    from typer.testing import CliRunner

    from fixate_rt.cli import app

    tables = {}
    for kernel in ("torch", "cpp"):
        result = CliRunner().invoke(app, ["simulate", "--users", str(synth_dir / "users.parquet"), "--images",
                                          str(synth_dir / "slates"), "--out", str(tmp_path / kernel), "--device", "cpu",
                                          "--kernel", kernel])
        assert result.exit_code == 0, result.output
        tables[kernel] = read_simulation(tmp_path / kernel)[0].to_pydict()
        run = __import__("json").loads((tmp_path / kernel / "run.json").read_text())
        probe_op = ({"rollout_row": {"impl": "torch", "device": "cpu", "capture": "mean"}} if kernel == "torch" else
                    {"rollout_row_qk": {"impl": "cpp", "device": "cpu", "capture": "qk_cpp"}})  # every layer SDPA
        assert run["implementations"] == {**probe_op, "slot_pool": {"impl": kernel, "device": "cpu"}}
    # the eager capture + torch row vs the fused C++ row from Q/K (and the forward's log-sum-exp): same clicks
    assert tables["torch"]["click_slot"] == tables["cpp"]["click_slot"]
    np.testing.assert_allclose(np.array(tables["torch"]["slot_relevance"]), np.array(tables["cpp"]["slot_relevance"]),
                               atol=1e-5)
    np.testing.assert_allclose(np.array(tables["torch"]["p_click"]), np.array(tables["cpp"]["p_click"]), atol=1e-5)


@needs_cpp
@pytest.mark.parametrize("groups, T", [(1, 64), (4, 257), (4, 1024)])
def test_rollout_row_qk_cpp_bf16_gqa_padding_long(groups, T):
    """bf16 Q/K are read as bf16 and accumulated in fp32: equal to the exact rollout of those bf16 values."""
    g = torch.Generator().manual_seed(T)
    B, L, Hkv, d = 2, 2, 2, 16
    q = torch.randn(B, L, Hkv * groups, T, d, generator=g).bfloat16()
    k = torch.randn(B, L, Hkv, T, d, generator=g).bfloat16()
    mask = torch.ones(B, T, dtype=torch.long)
    mask[1, : T // 4] = 0
    pos = torch.full((B,), T - 1)
    expected = ref.rollout_row_reference(ref.attention_from_qk(q.double(), k.double(), mask).double(), pos, 0.5)
    out = ops.rollout_row_qk(q, k, pos, mask, impl="cpp")
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.double(), expected, atol=1e-6, rtol=1e-5)
    assert (out[1, : T // 4] == 0).all()  # padded keys get nothing


def _qk_case(groups: int, T: int, dtype=torch.float32):
    g = torch.Generator().manual_seed(T + groups)
    B, L, d = 2, 2, 24  # d not a multiple of 8; T not a multiple of the 4-row / 16-key tiles
    Hkv = 2 if groups == 1 else 1  # at most 4 query heads: the dense reference holds B·L·H·T² doubles
    q = torch.randn(B, L, Hkv * groups, T, d, generator=g).to(dtype)
    k = torch.randn(B, L, Hkv, T, d, generator=g).to(dtype)
    mask = torch.ones(B, T, dtype=torch.long)
    mask[1, : T // 3] = 0
    pos = torch.tensor([T - 1, T - 2])  # the second row's answer is not the last token
    return q, k, pos, mask


@needs_cpp
@pytest.mark.parametrize("groups, T", [(1, 33), (4, 301), (1, 1024), (4, 1024)])
@pytest.mark.parametrize("with_lse", [False, True])
def test_rollout_row_qk_cpp_fp32_within_1e5_of_the_reference(groups, T, with_lse):
    q, k, pos, mask = _qk_case(groups, T)
    expected = ref.rollout_row_reference(ref.attention_from_qk(q.double(), k.double(), mask).double(), pos, 0.5)
    lse = None
    if with_lse:  # what the forward's fused attention hands over: log-sum-exp of the scaled, masked scores
        kk = k.double().repeat_interleave(groups, dim=2)
        scores = torch.einsum("blhid,blhjd->blhij", q.double(), kk) * q.shape[-1] ** -0.5
        keep = torch.ones(T, T, dtype=torch.bool).tril()[None, None, None] & mask.bool()[:, None, None, None, :]
        lse = torch.logsumexp(scores.masked_fill(~keep, -torch.inf), -1)
        lse = lse.masked_fill(~keep.any(-1), torch.inf).float()  # a row with no key: +inf, the capture's convention
        del scores
    out = ops.rollout_row_qk(q, k, pos, mask, lse=lse, impl="cpp")
    torch.testing.assert_close(out.double(), expected, atol=1e-5, rtol=1e-5)


@needs_cpp
def test_rollout_row_qk_portable_and_vector_variants_agree():
    """The AVX2+FMA variant (picked at run time) and the portable one give the same row; each runs in its own
    process because the choice is made once per process."""
    import subprocess
    import sys

    code = ("import sys, torch; sys.path.insert(0, %r); from test_cpp_ops import _qk_case; from fixate_rt import ops, _C;"
            "q, k, pos, mask = _qk_case(4, 301); out = ops.rollout_row_qk(q, k, pos, mask, impl='cpp');"
            "print(_C.rollout_qk_variant()); print(' '.join(repr(float(v)) for v in out.flatten()))")
    code = code % str(Path(__file__).parent)
    rows = {}
    for env in ({}, {"FIXATE_RT_CPU_PORTABLE": "1"}):
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              env={**os.environ, **env}, check=True)
        variant, values = done.stdout.strip().splitlines()
        rows[variant] = np.array([float(v) for v in values.split()])
    assert "portable" in rows
    for variant, row in rows.items():
        np.testing.assert_allclose(row, rows["portable"], atol=1e-6, err_msg=variant)
