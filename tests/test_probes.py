"""Probing operators: row versions equal the full-matrix definitions; efficient capture paths on the live
tiny model equal the all-layers eager `output_attentions` path with autograd over the returned maps."""

import pytest
import torch

from fixate_rt import reference as ref
from fixate_rt.data.layout import LETTERS
from fixate_rt.plan import plan_ops
from fixate_rt.probes.eager import eager_reference
from fixate_rt.probes.operators import probe


def _random_maps(B=2, L=3, H=2, T=11, seed=0):
    g = torch.Generator().manual_seed(seed)
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    attn = torch.softmax(torch.randn(B, L, H, T, T, generator=g, dtype=torch.float64).masked_fill(~causal, -torch.inf), -1)
    grad = torch.randn(B, L, H, T, T, generator=g, dtype=torch.float64)
    return attn, grad


def test_attnlrp_row_equals_full_matrix_row():
    attn, grad = _random_maps()
    q = torch.tensor([10, 7])
    full = ref.attnlrp_full(attn, grad)[torch.arange(2), q]
    row = ref.attnlrp_row(attn[:, :, :, q[0]].clone(), grad[:, :, :, q[0]].clone(), q)  # row 10 for both...
    torch.testing.assert_close(row[0], full[0])
    rows_b1 = ref.attnlrp_row(attn[1:, :, :, 7], grad[1:, :, :, 7], q[1:])
    torch.testing.assert_close(rows_b1[0], full[1])


def test_attnlrp_hand_example():
    # One layer, one head, T = 2, answer row 1: A = [0.5, 0.5], ∂s/∂A = [2, −1] -> X = [1, −0.5], r = 0.5,
    # r̃ = 0.5 + 1e-4 -> E = X / 0.5001; w = 1; plus the identity at column 1.
    a = torch.tensor([[[[0.5, 0.5]]]], dtype=torch.float64)
    g = torch.tensor([[[[2.0, -1.0]]]], dtype=torch.float64)
    out = ref.attnlrp_row(a, g, torch.tensor([1]))
    torch.testing.assert_close(out, torch.tensor([[1 / 0.5001, 1 - 0.5 / 0.5001]], dtype=torch.float64))


def test_attnlrp_stabiliser_handles_zero_row_sum():
    a = torch.tensor([[[[0.5, 0.5]]]], dtype=torch.float64)
    g = torch.tensor([[[[1.0, -1.0]]]], dtype=torch.float64)  # X = [0.5, −0.5], r = 0 -> r̃ = ε
    out = ref.attnlrp_row(a, g, torch.tensor([1]))
    torch.testing.assert_close(out, torch.tensor([[0.5 / 1e-4, 1 - 0.5 / 1e-4]], dtype=torch.float64))


def test_attnlrp_layer_weights():
    torch.testing.assert_close(ref.attnlrp_layer_weights(6), torch.arange(1, 7, dtype=torch.float64) / 21)


def test_glimpse_row_equals_full_matrix_row():
    attn, grad = _random_maps(seed=4)
    q = torch.tensor([10, 10])
    torch.testing.assert_close(ref.glimpse_row(attn, grad, q), ref.glimpse_full(attn, grad)[:, 10])


def test_glimpse_hand_example_uses_the_reference_epsilon():
    # One layer, one head, T = 2: A = [[1, 0], [.5, .5]], ∂s/∂A = [[0, 0], [2, −1]] -> G = [[0, 0], [1, 0]];
    # E row 1 = [1/(1 + ε), 0]; γ = |2| + |−1| = 3, α = 3/(3 + ε); row 1 of R = [α/(1 + ε), 1] with ε = 1e-4
    # (1e-8 would give 0.99999997 instead of 0.99986668: the constant is visible at 1e-6).
    a = torch.tensor([[[[[1.0, 0.0], [0.5, 0.5]]]]], dtype=torch.float64)
    g = torch.tensor([[[[[0.0, 0.0], [2.0, -1.0]]]]], dtype=torch.float64)
    expected = torch.tensor([[3 / 3.0001 / 1.0001, 1.0]], dtype=torch.float64)
    torch.testing.assert_close(ref.glimpse_row(a, g, torch.tensor([1])), expected, atol=1e-12, rtol=0)
    from fixate_rt import ops

    for impl, reason in ops.available("glimpse_row").items():
        if not reason:
            got = ops.glimpse_row([a[:, 0]], [g[:, 0]], torch.tensor([1]), impl=impl)
            torch.testing.assert_close(got.double(), expected, atol=1e-7, rtol=0)


def test_glimpse_rows_are_normalised_and_alpha_sums_to_one():
    attn, grad = _random_maps(seed=5)
    E, alpha = ref.glimpse_layer_terms(attn, grad)
    torch.testing.assert_close(alpha.sum(-1), torch.ones(2, dtype=torch.float64), atol=1e-6, rtol=0)
    sums = E.sum(-1)  # E[i,:] / (Σ E[i,:] + ε): at most 1, and ≈ 1 wherever the row has mass
    assert (sums <= 1 + 1e-12).all() and (sums > 0.999).float().mean() > 0.9


# ------------------------------------------------------------------------------ live model, all 3 probes
@pytest.fixture(scope="module")
def batch(tiny, synth_dir):
    from PIL import Image

    feats = tiny.encode_slate(Image.open(synth_dir / "slates" / "s001.png"))
    inputs = tiny.build_inputs(["Top_genre: Drama", "Top_genre: Comedy, Preferred_genres: Horror"], LETTERS, feats, 3)
    prompts = torch.randn(2, 3, tiny.hidden_size, generator=torch.Generator().manual_seed(1))
    return feats, inputs, prompts


@pytest.mark.parametrize("method", ["rollout", "attnlrp", "glimpse"])
def test_efficient_probe_equals_all_layers_eager_path(tiny, batch, method):
    feats, inputs, prompts = batch
    layers = tiny.default_probe_layers
    label_ids = tiny.label_token_ids(LETTERS)
    fast = probe(tiny, inputs, feats, prompts, label_ids, plan_ops(method, "auto", tiny.device), layers=layers)
    logits, rel = eager_reference(tiny, inputs, feats, prompts, layers, method, label_ids)
    torch.testing.assert_close(fast.label_logits, logits, atol=1e-5, rtol=1e-5)
    assert fast.token_relevance.shape == (2, feats.n_tokens)
    scale = rel.abs().max()
    torch.testing.assert_close(fast.token_relevance / scale, rel / scale, atol=2e-5, rtol=1e-4)
    corr = torch.corrcoef(torch.stack([fast.token_relevance.flatten(), rel.flatten()]))[0, 1]
    assert corr > 0.9999 and rel.std() > 0


@pytest.mark.parametrize("method", ["rollout", "attnlrp", "glimpse"])
def test_a_padded_row_equals_the_row_alone(tiny, batch, method):
    """Row 0 has the shorter profile, so it is left-padded in the batch of two; alone it has no padding.
    (GLIMPSE sums ∂s/∂A over every entry: without zeroing it at padded keys this differed by 3e-3 of the max.)"""
    feats, inputs, prompts = batch
    layers, label_ids = tiny.default_probe_layers, tiny.label_token_ids(LETTERS)
    plan = plan_ops(method, "auto", tiny.device)
    assert (inputs.attention_mask[0] == 0).any()
    both = probe(tiny, inputs, feats, prompts, label_ids, plan, layers=layers).token_relevance[0]
    one = tiny.build_inputs(["Top_genre: Drama"], LETTERS, feats, 3)
    alone = probe(tiny, one, feats, prompts[:1], label_ids, plan, layers=layers).token_relevance[0]
    scale = alone.abs().max()
    torch.testing.assert_close(both / scale, alone / scale, atol=2e-5, rtol=1e-4)


def test_teacher_forced_target_changes_gradient_probes(tiny, batch):
    feats, inputs, prompts = batch
    label_ids = tiny.label_token_ids(LETTERS)
    layers = tiny.default_probe_layers
    plan = plan_ops("attnlrp", "auto", tiny.device)
    fg = probe(tiny, inputs, feats, prompts, label_ids, plan, layers=layers)
    other = (fg.label_logits.argmax(-1) + 3) % 15
    tf = probe(tiny, inputs, feats, prompts, label_ids, plan, layers=layers, targets=other)
    assert (fg.token_relevance - tf.token_relevance).abs().max() > 1e-6


@pytest.mark.parametrize("kind", ["causal", "bool", "float"])
def test_additive_mask_rows_equal_the_rows_of_the_full_mask(kind):
    """The answer-row probes (AttnLRP) build their mask for the last row only: the same values as the full one."""
    from fixate_rt.probes.capture import additive_mask

    T = 7
    keep = torch.ones(2, 1, T, T, dtype=torch.bool).tril()
    keep[1, ..., :2] = False  # left padding in the second batch row
    mask = {"causal": None, "bool": keep, "float": torch.zeros(keep.shape).masked_fill(~keep, -1e30)}[kind]
    full = additive_mask(mask, T, T, torch.device("cpu"))
    for rows in (slice(-1, None), slice(2, 5)):
        torch.testing.assert_close(additive_mask(mask, T, T, torch.device("cpu"), rows), full[..., rows, :])
