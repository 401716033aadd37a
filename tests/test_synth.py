import numpy as np

from fixate_rt.data.synth import SynthConfig, generate, statistics


def test_synth_is_deterministic_for_a_seed():
    a, _ = generate(SynthConfig(n_users=5, n_slates=6, seed=11))
    b, _ = generate(SynthConfig(n_users=5, n_slates=6, seed=11))
    c, _ = generate(SynthConfig(n_users=5, n_slates=6, seed=12))
    assert a.users == b.users
    assert all(np.array_equal(x, y) for x, y in zip(a.sessions.fixation_ms, b.sessions.fixation_ms))
    assert not all(np.array_equal(x, y) for x, y in zip(a.sessions.fixation_ms, c.sessions.fixation_ms))


def test_split_is_content_disjoint_by_slate():
    data, _ = generate(SynthConfig(n_users=4, n_slates=20, seed=0))
    split_of = {}
    for slate, split in zip(data.sessions.slate_ids, data.sessions.splits):
        assert split_of.setdefault(slate, split) == split, "a slate appears in two splits"
    assert set(split_of.values()) == {"train", "val", "test"}


def test_generative_model_properties():
    data, _ = generate(SynthConfig(n_users=30, n_slates=40, seed=0))
    stats = statistics(data)
    # The click is strongly predicted by fixations (far above the 1/15 chance of a permuted click) ...
    assert stats["click_is_most_fixated"] > 0.45 > 2 * stats["permuted_click_is_most_fixated"]
    # ... and each user's gaze profile is stable across slates, much more than it resembles other users'.
    assert stats["gaze_split_half_corr_same_user"] > stats["gaze_split_half_corr_other_users"] + 0.3
    for f in data.sessions.fixation_ms:
        assert f.shape == (15,) and (f >= 0).all() and f.sum() > 0


def test_true_attention_is_a_distribution():
    data, _ = generate(SynthConfig(n_users=3, n_slates=4, seed=1))
    np.testing.assert_allclose(data.true_attention.sum(-1), 1.0, rtol=1e-9)
