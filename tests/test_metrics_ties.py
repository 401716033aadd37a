"""Ranking metrics under each tie rule, on vectors worked out by hand, in every implementation (numpy reference,
torch batch, C++ batch).

The hand vector (S = 6, clicked slot 4):
  gaze dwell [5, 0, 0, 0, 3, 0] -> q: slot 0, then slot 4, then slots {1, 2, 3, 5} tied at the ε floor;
  model p = [0.1, 0.4, 0.1, 0.2, 0.1, 0.1] -> slot 1, then slot 3, then slots {0, 2, 4, 5} tied.
lower-index: top-3 p = [1, 3, 0], top-3 q = [0, 4, 1];  top-5 p = [1, 3, 0, 2, 4], top-5 q = [0, 4, 1, 2, 3].
reference:   top-3 p = [1, 3, 5], top-3 q = [0, 4, 5];  top-5 p = [1, 3, 5, 4, 2], top-5 q = [0, 4, 5, 3, 2].
average: each tied slot of p or q is in the top-3 with probability (3 − 2)/4 = 1/4 and in the top-5 with
  (5 − 2)/4 = 3/4; E|∩| = Σ_i P_p(i) P_q(i): top-3 = 4·(1/4) + 2·(1/16) = 1.125, top-5 = 4·(3/4) + 2·(9/16) = 4.125.
"""

import numpy as np
import pytest
import torch

from fixate_rt import metrics as M
from fixate_rt import ops

DWELL = np.array([5.0, 0, 0, 0, 3.0, 0])
P = np.array([0.1, 0.4, 0.1, 0.2, 0.1, 0.1])
CLICKED = 4
PI = np.array([0.35, 0.35, 0.1, 0.1, 0.05, 0.05])

EXPECTED = {  # by hand, see the module docstring
    "average": {"csh@1": 0.0, "csh@3": 0.25, "csh@5": 0.75, "tgo@1": 0.0, "tgo@3": 1.125 / 3, "tgo@5": 4.125 / 5},
    "lower-index": {"csh@1": 0.0, "csh@3": 0.0, "csh@5": 1.0, "tgo@1": 0.0, "tgo@3": 2 / 3, "tgo@5": 1.0},
    "reference": {"csh@1": 0.0, "csh@3": 0.0, "csh@5": 1.0, "tgo@1": 0.0, "tgo@3": 1 / 3, "tgo@5": 0.8},
}
CORRECT = {  # π = [0.4, 0.4, 0.2]: slots 0 and 1 tie for the top
    "average": (0.5, 0.5), "lower-index": (1.0, 0.0), "reference": (0.0, 1.0),
}


def _impls():
    return [name for name, reason in ops.available("batch_metrics").items() if not reason]


@pytest.mark.parametrize("rule", list(EXPECTED))
def test_numpy_reference_matches_the_hand_values(rule):
    out = M.sample_metrics(P, M.gaze_target(DWELL), PI, CLICKED, tie_rule=rule)
    assert {k: out[k] for k in EXPECTED[rule]} == pytest.approx(EXPECTED[rule], abs=1e-12)


@pytest.mark.parametrize("impl", ["torch", "cpp"])
@pytest.mark.parametrize("rule", list(EXPECTED))
def test_batch_implementations_match_the_hand_values(impl, rule):
    if impl not in _impls():
        pytest.skip(ops.available("batch_metrics")[impl])
    g = M.gaze_target(DWELL)
    # the hand row twice, the second padded to S = 9 (n_cand 6), so ragged rows are covered too
    a, q, pi = np.zeros((2, 9)), np.zeros((2, 9)), np.zeros((2, 9))
    a[:, :6], q[:, :6], pi[:, :6] = P, g, PI
    table = ops.batch_metrics(torch.from_numpy(a), torch.from_numpy(q), torch.from_numpy(pi),
                              torch.tensor([CLICKED, CLICKED]), torch.tensor([6, 6]), tie_rule=rule, impl=impl)
    for name, value in EXPECTED[rule].items():
        column = table[:, M.METRIC_NAMES.index(name)]
        assert column.tolist() == pytest.approx([value, value], abs=1e-12), name


@pytest.mark.parametrize("rule", list(CORRECT))
def test_accuracy_on_a_tied_top(rule):
    tied = np.array([0.4, 0.4, 0.2])
    assert (M.correct(tied, 0, rule), M.correct(tied, 1, rule)) == CORRECT[rule]
    for impl in _impls():
        table = ops.batch_metrics(torch.ones(2, 3), torch.ones(2, 3), torch.from_numpy(np.stack([tied, tied])),
                                  torch.tensor([0, 1]), torch.tensor([3, 3]), tie_rule=rule, impl=impl)
        assert tuple(table[:, M.METRIC_NAMES.index("correct")].tolist()) == CORRECT[rule], impl


def test_average_equals_the_mean_over_every_tie_breaking():
    """The exact expectation equals brute force: enumerate every order of the tied slots of p and of q."""
    from itertools import permutations

    q = M.normalise(M.gaze_target(DWELL))
    p = M.normalise(P)

    def orders(x):
        groups = {}
        for i, v in enumerate(x):
            groups.setdefault(v, []).append(i)
        result = [[]]
        for v in sorted(groups, reverse=True):
            result = [r + list(perm) for r in result for perm in permutations(groups[v])]
        return result

    for k in (1, 3, 5):
        tgo = np.mean([len(set(op[:k]) & set(oq[:k])) / k for op in orders(p) for oq in orders(q)])
        csh = np.mean([CLICKED in op[:k] for op in orders(p)])
        assert M.tgo(q, p, k) == pytest.approx(tgo, abs=1e-12)
        assert M.csh(p, CLICKED, k) == pytest.approx(csh, abs=1e-12)


def test_random_vectors_with_ties_agree_across_implementations():
    rng = np.random.default_rng(3)
    R, S = 300, 12
    a = rng.integers(0, 4, (R, S)).astype(float)  # few distinct values: many ties
    g = M.gaze_target(np.where(rng.random((R, S)) < 0.6, 0.0, rng.integers(1, 4, (R, S)) * 100.0))
    pi = rng.integers(1, 3, (R, S)).astype(float)
    n = rng.integers(1, S + 1, R)
    clicked = np.array([rng.integers(0, k) for k in n])
    for rule in EXPECTED:
        expected = np.array([[M.sample_metrics(a[r, :k], g[r, :k], pi[r, :k], int(clicked[r]), rule)[m]
                              for m in M.METRIC_NAMES] for r, k in enumerate(n)])
        for impl in _impls():
            got = ops.batch_metrics(torch.from_numpy(a), torch.from_numpy(g), torch.from_numpy(pi),
                                    torch.from_numpy(clicked), torch.from_numpy(n), tie_rule=rule, impl=impl).numpy()
            np.testing.assert_allclose(got, expected, atol=1e-12, rtol=1e-9, err_msg=f"{rule} {impl}")


def test_topk_js_follows_the_deterministic_order():
    q, p = M.gaze_target(DWELL), P
    # k = 3: q's top-3 is [0, 4, 1] (lower index first) or [0, 4, 5] (reference); build each JS by hand
    for rule, idx in (("lower-index", [0, 4, 1]), ("average", [0, 4, 1]), ("reference", [0, 4, 5])):
        qn, pn = M.normalise(q), M.normalise(p)
        qa = np.append(qn[idx], max(0.0, 1 - qn[idx].sum()))
        pa = np.append(pn[idx], max(0.0, 1 - pn[idx].sum()))
        assert M.topk_js(q, p, 3, rule) == pytest.approx(M.js(qa, pa), abs=1e-15)
    # ε-floor ties barely matter (q ≈ 0 in the chosen slot and in the rest bin alike); real ties do:
    q2, p2 = np.array([0.4, 0.2, 0.2, 0.2]), np.array([0.1, 0.6, 0.2, 0.1])  # top-2 of q: [0, 1] or [0, 3]
    assert M.topk_js(q2, p2, 2, "reference") != pytest.approx(M.topk_js(q2, p2, 2, "lower-index"), abs=1e-2)
