"""Parity tests generated from the ops registry: every op × every implementation × dtype against the op's
reference (the plain definitions in reference.py and metrics.py).

An implementation that cannot run here is skipped with the registry's own reason (the C++ module not built,
Triton without CUDA or the interpreter). Adding an op to the registry without a case here fails
`test_every_registered_op_has_a_parity_case`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from fixate_rt import metrics as M
from fixate_rt import ops
from fixate_rt import reference as ref

TOL = {torch.float32: dict(atol=1e-5, rtol=1e-4), torch.float64: dict(atol=1e-10, rtol=1e-9)}


@dataclass
class Case:
    """Inputs for one op at one dtype, the call under test and the reference result (float64)."""

    make: Callable[[torch.dtype], tuple[tuple, dict]]  # dtype -> (args, kwargs) for the ops function
    call: Callable  # the public `fixate_rt.ops` function
    expected: Callable[[tuple, dict], torch.Tensor]
    dtypes: tuple[torch.dtype, ...] = (torch.float32, torch.float64)
    tolerance: Callable[[torch.dtype], dict] = lambda dtype: TOL[dtype]
    scale_by_max: bool = False  # compare relative to the largest |value| (AttnLRP rows are unnormalised)
    columns: Callable[[torch.dtype], list[int] | None] = lambda dtype: None  # only these output columns


def _attention(dtype, B=3, L=4, H=2, T=37, seed=0):
    g = torch.Generator().manual_seed(seed)
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    scores = torch.randn(B, L, H, T, T, generator=g, dtype=torch.float64).masked_fill(~causal, -torch.inf)
    grad = torch.randn(B, L, H, T, T, generator=g, dtype=torch.float64)
    return torch.softmax(scores, -1).to(dtype), grad.to(dtype)


def _rollout(dtype):
    attn, _ = _attention(dtype)
    return (attn.mean(2), torch.tensor([36, 12, 0])), {"residual": 0.3}


def _rollout_qk(dtype):
    g = torch.Generator().manual_seed(7)
    B, L, Hq, Hkv, T, d = 2, 3, 4, 2, 45, 8
    q = torch.randn(B, L, Hq, T, d, generator=g, dtype=torch.float64).to(dtype)
    k = torch.randn(B, L, Hkv, T, d, generator=g, dtype=torch.float64).to(dtype)
    mask = torch.ones(B, T, dtype=torch.long)
    mask[1, :9] = 0  # left padding
    return (q, k, torch.tensor([T - 1, T - 1]), mask), {"residual": 0.5}


def _rollout_qk_expected(args, kwargs):
    q, k, pos, mask = args
    attn = ref.attention_from_qk(q.double(), k.double(), mask)
    return ref.rollout_row_reference(attn, pos, kwargs["residual"])


def _with_lse(args, kwargs):
    """The log-sum-exp the fused attention of the forward computes (probes.capture.sdpa_with_lse)."""
    from fixate_rt.probes.capture import sdpa_with_lse

    q, k, _, mask = args
    T, d = q.shape[3], q.shape[4]
    keep = torch.ones(T, T, dtype=torch.bool).tril()[None, None] & mask.bool()[:, None, None, :]
    lse = torch.stack([sdpa_with_lse(q[:, l], k[:, l], k[:, l], keep, d ** -0.5)[1] for l in range(q.shape[1])], 1)
    return args, {**kwargs, "lse": lse}


def _attnlrp(dtype):
    attn, grad = _attention(dtype, seed=1)
    return (attn[:, :, :, 36], grad[:, :, :, 36], torch.tensor([36, 36, 36])), {}


def _glimpse(dtype):
    attn, grad = _attention(dtype, seed=2)
    return (attn, grad, torch.tensor([36, 30, 36])), {}


def _slot_pool(dtype, mode):
    rng = np.random.default_rng(3)
    tok = torch.tensor([[x, y, x + 10, y + 10] for y in range(0, 50, 10) for x in range(0, 70, 10)],
                       dtype=torch.float32)
    rel = torch.from_numpy(rng.random((3, 35))).to(dtype)
    corners = torch.from_numpy(rng.uniform(0, 40, (3, 15, 2))).float()
    boxes = torch.cat([corners, corners + 15], -1)
    boxes[1, 11:] = 0.0  # ragged: row 1 has 11 valid slots (degenerate boxes are padding)
    return (rel, tok, boxes), {"mode": mode}


def _metrics(dtype, R=200, S=15, seed=4):
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
    tensors = (torch.from_numpy(x).to(dtype) for x in (a, g, p))
    return (*tensors, torch.from_numpy(clicked), torch.from_numpy(n)), {}


def _metrics_expected(args, kwargs):
    a, g, p, clicked, n = (x.double().numpy() if x.is_floating_point() else x.numpy() for x in args)
    return torch.tensor([[M.sample_metrics(a[r, :k], g[r, :k], p[r, :k], int(clicked[r]))[name]
                          for name in M.METRIC_NAMES] for r, k in enumerate(n)], dtype=torch.float64)


# fp32 ranking metrics may flip on near-ties against the fp64 reference: fp32 is compared on the smooth ones.
_RANKING = {M.METRIC_NAMES.index(k) for k in ("csh@1", "csh@3", "csh@5", "tgo@1", "tgo@3", "tgo@5", "correct")}

CASES: dict[str, Case] = {
    "rollout_row": Case(_rollout, ops.rollout_row,
                        lambda a, kw: ref.rollout_row_reference(a[0].double(), a[1], kw["residual"])),
    # per-head maps [B, L, H, T, T], averaged over heads on the fly
    "rollout_row[heads]": Case(lambda dtype: ((_attention(dtype)[0], torch.tensor([36, 12, 0])), {"residual": 0.3}),
                               ops.rollout_row,
                               lambda a, kw: ref.rollout_row_reference(a[0].double().mean(2), a[1], kw["residual"])),
    "rollout_row_qk": Case(_rollout_qk, ops.rollout_row_qk, _rollout_qk_expected,
                           dtypes=(torch.float32,), tolerance=lambda dtype: dict(atol=1e-5, rtol=1e-4)),
    # with the forward's log-sum-exp handed over (the path simulate takes), GQA 4 → 1 and left padding
    "rollout_row_qk[lse]": Case(lambda dtype: _with_lse(*_rollout_qk(dtype)), ops.rollout_row_qk,
                                lambda a, kw: _rollout_qk_expected(a, {"residual": kw["residual"]}),
                                dtypes=(torch.float32,), tolerance=lambda dtype: dict(atol=1e-5, rtol=1e-4)),
    "attnlrp_row": Case(_attnlrp, ops.attnlrp_row,
                        lambda a, kw: ref.attnlrp_row(a[0].double(), a[1].double(), a[2]), scale_by_max=True),
    "glimpse_row": Case(_glimpse, ops.glimpse_row, lambda a, kw: ref.glimpse_row(a[0].double(), a[1].double(), a[2]),
                        tolerance=lambda dtype: dict(atol=1e-4, rtol=1e-3) if dtype == torch.float32 else TOL[dtype]),
    **{f"slot_pool[{mode}]": Case(lambda dtype, mode=mode: _slot_pool(dtype, mode), ops.slot_pool,
                                  lambda a, kw: ref.slot_pool_reference(a[0].double(), a[1], a[2], kw["mode"]),
                                  tolerance=lambda dtype: dict(atol=1e-6, rtol=1e-5))
       for mode in ("exclusive", "overlap", "area")},
    "batch_metrics": Case(_metrics, ops.batch_metrics, _metrics_expected,
                          tolerance=lambda dtype: dict(atol=1e-12, rtol=1e-9) if dtype == torch.float64
                          else dict(atol=1e-5, rtol=2e-4),
                          columns=lambda dtype: None if dtype == torch.float64
                          else [i for i in range(len(M.METRIC_NAMES)) if i not in _RANKING]),
}


def _op_name(case_name: str) -> str:
    return case_name.split("[")[0]


PARAMS = [pytest.param(case, impl, dtype, id=f"{case}-{impl}-{str(dtype).removeprefix('torch.')}")
          for case in CASES for impl in ops.REGISTRY[_op_name(case)] for dtype in CASES[case].dtypes]


def test_every_registered_op_has_a_parity_case():
    assert {_op_name(c) for c in CASES} == set(ops.REGISTRY)


@pytest.mark.parametrize("case_name, impl, dtype", PARAMS)
def test_implementation_matches_the_reference(case_name, impl, dtype):
    reason = ops.available(_op_name(case_name), "cpu")[impl]
    if reason:
        pytest.skip(f"{impl}: {reason}")
    case = CASES[case_name]
    args, kwargs = case.make(dtype)
    out = case.call(*args, **kwargs, impl=impl).double()
    expected = case.expected(args, kwargs).double()
    cols = case.columns(dtype)
    if cols is not None:
        out, expected = out[:, cols], expected[:, cols]
    if case.scale_by_max:
        scale = expected.abs().max()
        out, expected = out / scale, expected / scale
    assert out.shape == expected.shape
    torch.testing.assert_close(out, expected, equal_nan=True, **case.tolerance(dtype))
