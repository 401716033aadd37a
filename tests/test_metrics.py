"""Metrics against values computed by hand (docs/method.md §6.2 formulas, natural log, ε = 1e-8)."""

import math

import numpy as np
import pytest

from fixate_rt import metrics as M

A = pytest.approx


def test_gaze_target_tau_one_is_the_smoothed_dwell_share():
    g = M.gaze_target(np.array([3.0, 1.0, 0.0, 0.0]))
    assert g[:2] == A([0.75, 0.25], abs=1e-7) and g[2] == A(1e-8, rel=1e-2) and g.sum() == A(1.0, abs=1e-7)


def test_gaze_target_tau_half_sharpens():
    # p = [0.75, 0.25] -> squared [0.5625, 0.0625] -> normalised [0.9, 0.1]
    assert M.gaze_target(np.array([75.0, 25.0]), tau=0.5) == A([0.9, 0.1], abs=1e-7)


def test_kl_hand_example():
    # 0.5 ln(0.5/0.25) + 0.5 ln(0.5/0.75) = 0.5 (0.693147 − 0.405465)
    assert M.kl(np.array([0.5, 0.5]), np.array([0.25, 0.75])) == A(0.143841, abs=1e-6)
    assert M.kl(np.array([0.2, 0.8]), np.array([2.0, 8.0])) == A(0.0, abs=1e-7)


def test_kl_uniform_fallback_for_massless_prediction():
    assert M.kl(np.array([1.0, 0.0]), np.zeros(2)) == A(math.log(2), abs=1e-7)


def test_js_disjoint_is_ln2():
    assert M.js(np.array([1.0, 0.0]), np.array([0.0, 1.0])) == A(math.log(2), abs=1e-12)


def test_js_hand_example():
    # m = [0.75, 0.25]; KL(q‖m) = 0.143841, KL(p‖m) = ln(4/3) = 0.287682; JS = mean = 0.215762
    assert M.js(np.array([0.5, 0.5]), np.array([1.0, 0.0])) == A(0.215762, abs=1e-6)


def test_js_matches_scipy_squared_distance():
    from scipy.spatial.distance import jensenshannon

    rng = np.random.default_rng(0)
    q, p = rng.random(15), rng.random(15)
    assert M.js(q, p) == A(jensenshannon(q, p) ** 2, abs=1e-12)


def test_cosine_hand_example():
    assert M.cosine(np.array([1.0, 0, 0]), np.array([0.5, 0.5, 0])) == A(1 / math.sqrt(2), abs=1e-7)


def test_csh_and_tie_rule():
    p = np.array([0.1, 0.5, 0.4])
    assert (M.csh(p, 2, 1), M.csh(p, 2, 3)) == (0.0, 1.0)
    tied = np.array([0.4, 0.4, 0.2])
    assert M.csh(tied, 0, 1, "lower-index") == 1.0 and M.csh(tied, 1, 1, "lower-index") == 0.0
    assert M.csh(tied, 0, 1) == M.csh(tied, 1, 1) == 0.5  # default: expected value under random tie-breaking
    assert M.rank(np.array([0.2, 0.3, 0.3, 0.2])).tolist() == [1, 2, 0, 3]
    assert M.rank(np.array([0.2, 0.3, 0.3, 0.2]), "reference").tolist() == [2, 1, 3, 0]


def test_tgo_hand_example_and_k_clipping():
    p, q = np.array([0.5, 0.3, 0.2, 0.0]), np.array([0.1, 0.6, 0.3, 0.0])
    assert M.tgo(q, p, 2) == 0.5  # top-2 p = {0, 1}, top-2 q = {1, 2}
    assert M.tgo(np.array([0.2, 0.3, 0.5]), np.array([0.5, 0.3, 0.2]), 5) == 1.0  # k_eff = 3


def test_topk_js_hand_example():
    # k = 1: q -> (0.7, 0.3), p -> (0.4, 0.6); m = (0.55, 0.45); JS = ½(0.047174 + 0.045228) = 0.046201
    assert M.topk_js(np.array([0.7, 0.2, 0.1]), np.array([0.4, 0.4, 0.2]), k=1) == A(0.046201, abs=1e-6)


def test_cc_hand_example():
    assert M.cc(np.array([1.0, 2.0, 3.0]), np.array([3.0, 2.0, 1.0])) == A(-1.0)
    assert M.cc(np.array([1.0, 2.0, 3.0]), np.ones(3)) == 0.0


def test_sim_hand_example():
    assert M.sim(np.array([0.5, 0.5, 0.0]), np.array([0.2, 0.2, 0.6])) == A(0.4)


def test_nss_hand_example():
    # p = [0.5, 0.25, 0.25]: mean 1/3, sample std sqrt(1/48) = 0.144338; z_0 = (1/6)/0.144338 = 1.154701
    assert M.nss(np.array([1.0, 0.0, 0.0]), np.array([0.5, 0.25, 0.25])) == A(1.154701, abs=1e-6)
    assert M.nss(np.array([0.0, 1.0, 1.0]), np.array([0.5, 0.25, 0.25])) == A(-0.577350, abs=1e-6)


def test_logloss_hand_example():
    pi = np.array([0.2, 0.5, 0.3])
    assert M.logloss(pi, 1) == A(math.log(2))
    assert M.logloss(np.array([0.0, 1.0]), 0) == A(-math.log(1e-8))


def test_auc_hand_example_with_tie():
    # others = [0.2, 0.3, 0.5]: 2 below, 1 tied -> (2 + 0.5) / 3
    assert M.auc(np.array([0.2, 0.5, 0.3, 0.5]), 1) == A(2.5 / 3)
    assert M.auc(np.array([0.9, 0.05, 0.05]), 0) == 1.0 and M.auc(np.array([0.9, 0.05, 0.05]), 1) == 0.25


def test_correct_uses_the_tie_rule():
    tied = np.array([0.4, 0.4, 0.2])
    assert M.correct(tied, 0, "lower-index") == 1.0 and M.correct(tied, 1, "lower-index") == 0.0


def test_sample_metrics_perfect_alignment():
    g = np.array([0.6, 0.3, 0.1, 0.0, 0.0])
    out = M.sample_metrics(g, g, np.array([0.6, 0.3, 0.1, 0.0, 0.0]), 0)
    assert out["kl"] == A(0.0, abs=1e-6) and out["js"] == A(0.0, abs=1e-12) and out["cosine"] == A(1.0, abs=1e-7)
    assert out["csh@1"] == out["tgo@3"] == out["correct"] == out["auc"] == 1.0 and out["sim"] == A(1.0)
    assert set(out) == set(M.METRIC_NAMES)


def test_micro_and_macro_averages():
    rows = [{name: v for name in M.METRIC_NAMES} for v in (1.0, 0.0, 1.0)]
    agg = M.aggregate(rows, ["u1", "u1", "u2"])
    assert agg["micro"]["csh@1"] == A(2 / 3) and agg["macro"]["csh@1"] == A(0.75)
    assert (agg["n_samples"], agg["n_users"]) == (3, 2)


def test_paired_wilcoxon_needs_ten_users():
    a = {f"u{i}": float(i) for i in range(9)}
    out = M.paired_wilcoxon(a, {u: v + 1 for u, v in a.items()})
    assert out["n"] == 9 and out["p"] is None and M.format_p(out) == "n too small"


def test_paired_wilcoxon():
    a = {f"u{i}": float(i) for i in range(12)}
    b = {f"u{i}": float(i) + 1 + 0.01 * i for i in range(12)}
    out = M.paired_wilcoxon(a, b)
    assert out["n"] == 12 and out["mean_diff"] == A(-1.055) and out["p"] < 0.001
    assert M.paired_wilcoxon(a, dict(a))["p"] == 1.0
    from scipy.stats import wilcoxon

    assert out["p"] == A(wilcoxon(list(a.values()), list(b.values())).pvalue)
