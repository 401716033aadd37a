import pytest
import torch

from fixate_rt.errors import ValidationError
from fixate_rt.prompts import SoftPromptBank


def test_mix_is_softmax_alpha_times_basis_and_cold_start_is_mean():
    bank = SoftPromptBank.init(["a", "b"], n_basis=3, n_tokens=2, hidden_size=4, seed=0)
    bank.alpha[0] = torch.tensor([2.0, -1.0, 0.5])
    prompts, cold = bank.mix(["a", "zz", "b"])
    assert cold == [False, True, False]
    w = torch.softmax(torch.tensor([2.0, -1.0, 0.5]), 0)
    torch.testing.assert_close(prompts[0], torch.einsum("k,knd->nd", w, bank.basis))
    torch.testing.assert_close(prompts[1], bank.basis.mean(0))  # alpha = 0 -> the mean of the bases
    torch.testing.assert_close(prompts[2], bank.basis.mean(0))  # b has alpha 0 too (not yet trained)


def test_round_trip_keeps_users_and_metadata(tmp_path):
    bank = SoftPromptBank.init(["u1", "u2", "u3"], 4, 5, 8, seed=1, backbone="tiny-qwen3vl")
    bank.alpha.normal_()
    bank.save(tmp_path / "p.safetensors")
    back = SoftPromptBank.load(tmp_path / "p.safetensors")
    assert back.user_ids == ("u1", "u2", "u3") and back.backbone == "tiny-qwen3vl"
    torch.testing.assert_close(back.basis, bank.basis)
    torch.testing.assert_close(back.alpha, bank.alpha)


def test_hidden_size_is_checked():
    bank = SoftPromptBank.init(["a"], 2, 3, 16)
    with pytest.raises(ValidationError, match="hidden size 16 does not match the model's 64"):
        bank.check_hidden_size(64)


def test_shape_mismatch_is_rejected():
    with pytest.raises(ValidationError, match="alpha must be"):
        SoftPromptBank(torch.zeros(2, 3, 4), torch.zeros(2, 5), ("a", "b"))
