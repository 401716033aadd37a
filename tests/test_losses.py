import math

import pytest
import torch

from fixate_rt import losses as L


def test_weighted_full_kl_is_not_a_divergence_reference_vector_l5():
    # docs/method.md §5: g = (0.9, 0.1), a = (0.99, 0.01) gives −0.0819 (over-sharpening is rewarded).
    g, a = torch.tensor([[0.9, 0.1]]), torch.tensor([[0.99, 0.01]])
    assert L.weighted_full_kl(g, a, gamma=2.0).item() == pytest.approx(-0.0819, abs=5e-4)
    assert L.weighted_kl_normalised(g, a, gamma=2.0).item() > 0


def test_gamma_zero_gives_kl_over_s():
    g, a = torch.tensor([[0.5, 0.3, 0.2]]), torch.tensor([[0.2, 0.3, 0.5]])
    assert L.weighted_full_kl(g, a, gamma=0.0).item() == pytest.approx(L.plain_kl(g, a).item() / 3, rel=1e-6)


def test_plain_kl_hand_example():
    g, a = torch.tensor([[0.5, 0.5]]), torch.tensor([[0.25, 0.75]])
    expected = 0.5 * (math.log(0.5001) - math.log(0.2501)) + 0.5 * (math.log(0.5001) - math.log(0.7501))
    assert L.plain_kl(g, a).item() == pytest.approx(expected, rel=1e-6)


def test_normalised_weighted_kl_is_zero_at_the_target_and_plain_kl_at_gamma_zero():
    g = torch.tensor([[0.6, 0.3, 0.1]])
    assert L.weighted_kl_normalised(g, g.clone()).item() == pytest.approx(0.0, abs=1e-7)
    a = torch.tensor([[0.2, 0.3, 0.5]])
    assert L.weighted_kl_normalised(g, a, gamma=0.0).item() == pytest.approx(L.plain_kl(g, a).item(), rel=1e-6)


def test_coarsened_kl_uses_top_k_and_a_tail_bin():
    g = torch.tensor([[0.5, 0.3, 0.1, 0.1]])
    a = torch.tensor([[0.4, 0.2, 0.2, 0.2]])
    gc, ac = torch.tensor([[0.5, 0.3, 0.2]]), torch.tensor([[0.4, 0.2, 0.4]])  # k = 2 would be; k = 5 keeps all
    padded = L.weighted_full_kl(torch.cat([g, torch.zeros(1, 1)], 1), torch.cat([a, torch.zeros(1, 1)], 1))
    assert L.coarsened_kl(g, a).item() == pytest.approx(padded.item(), rel=1e-5)
    del gc, ac


def test_lambda_schedule():
    assert [L.lambda_schedule(t, 0.5, 30) for t in (0, 29, 30, 45, 60, 100)] == [0.0, 0.0, 0.0, 0.25, 0.5, 0.5]
    assert L.lambda_schedule(0, 0.5, 30, with_choice=False) == 0.5


def test_choice_loss_and_regulariser():
    logits = torch.tensor([[0.0, math.log(3.0)]])
    assert L.choice_loss(logits, torch.tensor([1])).item() == pytest.approx(-math.log(0.75), rel=1e-6)
    assert L.alpha_regulariser(torch.tensor([[1.0, 2.0], [0.0, 0.0]])).item() == pytest.approx(2.5)
