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


def test_profile_variant_is_unchanged_by_the_latent_one():
    """The documented statistics of the default set (docs/synthetic.md) still come out of SynthConfig()."""
    data, _ = generate(SynthConfig(n_users=30, n_slates=40, seed=0))
    stats = statistics(data)
    assert round(stats["click_is_most_fixated"], 3) == 0.641 and round(stats["gaze_split_half_corr_same_user"], 3) == 0.956
    assert all("latent_genre" not in p for p in data.user_params)


def _slot_prior_fit(pi: np.ndarray) -> float:
    """Mean correlation of a user's attention on one slate with their mean attention over all slates: what a
    per-user slot prior can capture (pi [U, M, S])."""
    mean = pi.mean(1, keepdims=True)
    return float(np.mean([np.corrcoef(pi[u, m], mean[u, 0])[0, 1] for u in range(pi.shape[0]) for m in range(pi.shape[1])]))


def test_latent_variant_hides_a_taste_the_profile_never_names():
    data, _ = generate(SynthConfig.latent(n_users=12, seed=2))
    profile_data, _ = generate(SynthConfig(n_users=12, n_slates=80, seed=2))
    test_slates = {s for s, split in zip(data.sessions.slate_ids, data.sessions.splits) if split == "test"}
    assert len(test_slates) >= 20
    on_latent, elsewhere = [], []
    for u, (params, profile) in enumerate(zip(data.user_params, data.users.profiles)):
        hidden = params["latent_genre"]
        assert hidden not in profile and hidden != params["top_genre"] and hidden not in params["preferred_genres"]
        for m, items in enumerate(data.slate_items):
            for k, item in enumerate(items):
                (on_latent if item["genre"] == hidden else elsewhere).append(data.true_attention[u, m, k])
    # The hidden taste carries gaze: its posters draw several times the attention of the others ...
    assert np.mean(on_latent) > 3 * np.mean(elsewhere)
    # ... and position explains far less of a session's gaze than in the profile variant.
    assert _slot_prior_fit(data.true_attention) < _slot_prior_fit(profile_data.true_attention) - 0.3
