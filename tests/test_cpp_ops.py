"""The C++ module and the ops registry: parity with the torch references, errors, fallback behaviour."""

import numpy as np
import pytest
import torch

from fixate_rt import metrics as M
from fixate_rt import ops
from fixate_rt.errors import UnavailableError
from fixate_rt.metrics_batch import batch_metrics as batch_metrics_torch
from fixate_rt.probes import reference as ref

needs_cpp = pytest.mark.skipif(not ops.cpp_available(), reason="fixate_rt._C not built (FIXATE_RT_BUILD_CPP=OFF)")
DTYPES = [torch.float32, torch.float64]
TOL = {torch.float32: dict(atol=1e-5, rtol=1e-4), torch.float64: dict(atol=1e-12, rtol=1e-10)}


def _attention(B=3, L=4, H=2, T=37, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    scores = torch.randn(B, L, H, T, T, generator=g, dtype=torch.float64).masked_fill(~causal, -torch.inf)
    attn = torch.softmax(scores, -1).to(dtype)
    grad = torch.randn(B, L, H, T, T, generator=g, dtype=torch.float64).to(dtype)
    return attn, grad


@needs_cpp
@pytest.mark.parametrize("dtype", DTYPES)
def test_rollout_row_cpp_matches_torch(dtype):
    attn, _ = _attention(dtype=dtype)
    q = torch.tensor([36, 12, 0])
    head_avg = attn.mean(2)
    expected = ref.rollout_row_reference(head_avg.double(), q, 0.3)
    out = ops.rollout_row(head_avg, q, residual=0.3, impl="cpp")
    assert out.dtype == dtype
    torch.testing.assert_close(out.double(), expected, **TOL[dtype])
    # The [B, L, H, T, T] variant averages heads on the fly.
    torch.testing.assert_close(ops.rollout_row(attn, q, residual=0.3, impl="cpp").double(), expected, **TOL[dtype])


@needs_cpp
def test_rollout_row_cpp_accepts_non_contiguous_input():
    attn, _ = _attention(L=3, H=1, T=21)
    a = attn[:, :, 0]
    strided = a.transpose(0, 1).contiguous().transpose(0, 1)  # same values, non-contiguous layout
    assert not strided.is_contiguous()
    q = torch.tensor([20, 20, 5])
    torch.testing.assert_close(ops.rollout_row(strided, q, impl="cpp"), ops.rollout_row(a, q, impl="torch"))


@needs_cpp
@pytest.mark.parametrize("dtype", DTYPES)
def test_attnlrp_row_cpp_matches_torch(dtype):
    attn, grad = _attention(dtype=dtype, seed=1)
    q = torch.tensor([36, 36, 36])
    a_row, g_row = attn[:, :, :, 36], grad[:, :, :, 36]
    expected = ref.attnlrp_row(a_row.double(), g_row.double(), q)
    out = ops.attnlrp_row(a_row, g_row, q, impl="cpp")
    scale = expected.abs().max()
    torch.testing.assert_close(out.double() / scale, expected / scale, **TOL[dtype])


@needs_cpp
@pytest.mark.parametrize("dtype", DTYPES)
def test_glimpse_row_cpp_matches_torch(dtype):
    attn, grad = _attention(dtype=dtype, seed=2)
    q = torch.tensor([36, 30, 36])
    expected = ref.glimpse_row(attn.double(), grad.double(), q)
    out = ops.glimpse_row(attn, grad, q, impl="cpp")
    tol = dict(atol=1e-4, rtol=1e-3) if dtype == torch.float32 else TOL[dtype]
    torch.testing.assert_close(out.double(), expected, **tol)


@needs_cpp
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", ["exclusive", "overlap", "area"])
def test_slot_pool_cpp_float32_and_float64(dtype, mode):
    rng = np.random.default_rng(3)
    tok = torch.tensor([[x, y, x + 10, y + 10] for y in range(0, 50, 10) for x in range(0, 70, 10)], dtype=torch.float32)
    rel = torch.from_numpy(rng.random((3, 35))).to(dtype)
    slots = torch.from_numpy(rng.uniform(0, 40, (3, 15, 2))).float()
    boxes = torch.cat([slots, slots + 15], -1)
    torch.testing.assert_close(ops.slot_pool(rel, tok, boxes, mode=mode, impl="cpp").double(),
                               ops.slot_pool(rel.double(), tok, boxes, mode=mode, impl="torch"), atol=1e-6, rtol=1e-5)


def _metric_inputs(R=200, S=15, seed=4):
    rng = np.random.default_rng(seed)
    a = rng.random((R, S)) ** 3
    g = M.gaze_target(np.where(rng.random((R, S)) < 0.4, 0.0, rng.random((R, S)) * 1000))
    p = rng.dirichlet(np.ones(S), R)
    n = rng.integers(1, S + 1, R)
    n[:5] = [15, 10, 5, 1, 2]
    a[1, :] = 0.0  # massless relevance -> uniform fallback
    a[2, :3] = 0.5  # ties in the ranking
    p[3, :] = 1.0 / S  # tied probabilities
    clicked = np.array([rng.integers(0, k) for k in n])
    return a, g, p, clicked, n


def _reference_table(a, g, p, clicked, n):
    return np.array([[M.sample_metrics(a[r, :k], g[r, :k], p[r, :k], int(clicked[r]))[name] for name in M.METRIC_NAMES]
                     for r, k in enumerate(n)])


@pytest.mark.parametrize("impl", ["torch", pytest.param("cpp", marks=needs_cpp)])
def test_batch_metrics_match_the_per_sample_reference(impl):
    a, g, p, clicked, n = _metric_inputs()
    expected = _reference_table(a, g, p, clicked, n)
    out = ops.batch_metrics(torch.from_numpy(a), torch.from_numpy(g), torch.from_numpy(p), torch.from_numpy(clicked),
                            torch.from_numpy(n), impl=impl).numpy()
    assert out.shape == (200, 16)
    np.testing.assert_allclose(out, expected, rtol=1e-9, atol=1e-12, equal_nan=True)
    assert np.isnan(out[3, M.METRIC_NAMES.index("auc")])  # n_cand = 1: AUC undefined


@needs_cpp
def test_batch_metrics_cpp_float32():
    a, g, p, clicked, n = _metric_inputs(seed=5)
    out = ops.batch_metrics(*(torch.from_numpy(x).float() for x in (a, g, p)), torch.from_numpy(clicked),
                            torch.from_numpy(n), impl="cpp").numpy()
    ref_table = batch_metrics_torch(a, g, p, clicked, n).numpy()
    ranking = [M.METRIC_NAMES.index(k) for k in ("csh@1", "csh@3", "csh@5", "tgo@1", "tgo@3", "tgo@5", "correct")]
    smooth = [i for i in range(16) if i not in ranking]
    np.testing.assert_allclose(out[:, smooth], ref_table[:, smooth], rtol=2e-4, atol=1e-5, equal_nan=True)


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
def test_simulate_same_results_with_torch_and_cpp_kernels(tmp_path, synth_dir):
    import pyarrow.parquet as pq
    from typer.testing import CliRunner

    from fixate_rt.cli import app

    tables = {}
    for kernel in ("torch", "cpp"):
        result = CliRunner().invoke(app, ["simulate", "--users", str(synth_dir / "users.parquet"), "--images",
                                          str(synth_dir / "slates"), "--out", str(tmp_path / kernel), "--device", "cpu",
                                          "--kernel", kernel])
        assert result.exit_code == 0, result.output
        tables[kernel] = pq.read_table(tmp_path / kernel / "simulations.parquet").to_pydict()
        run = __import__("json").loads((tmp_path / kernel / "run.json").read_text())
        assert run["implementations"] == {"rollout_row": {"impl": kernel, "device": "cpu", "capture": "mean"},
                                          "slot_pool": {"impl": kernel, "device": "cpu"}}
    assert tables["torch"]["click_slot"] == tables["cpp"]["click_slot"]
    np.testing.assert_allclose(np.array(tables["torch"]["slot_relevance"]), np.array(tables["cpp"]["slot_relevance"]),
                               atol=1e-6)
