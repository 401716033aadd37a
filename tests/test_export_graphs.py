"""The export-time rewrites of Qwen3-VL's text model (`exporters.graphs.dense_qwen3vl_text_steps`) give
transformers' values bit for bit, and leave the model as it was."""

import torch

from exporters.graphs import dense_qwen3vl_text_steps


def _modules(tiny):
    text = tiny.model.model.language_model
    return text, text.rotary_emb


def test_mrope_recomposition_is_bit_exact(tiny):
    text, rotary = _modules(tiny)
    for section in ([24, 20, 20], list(rotary.mrope_section)):  # Qwen3-VL-4B's split and the tiny model's
        rotary.mrope_section = section
        freq = torch.randn(3, 2, 7, sum(section), generator=torch.Generator().manual_seed(1))
        expected = rotary.recomposition_frequencies(freq.clone())  # transformers' writes into its input
        with dense_qwen3vl_text_steps(tiny.model):
            got = rotary.recomposition_frequencies(freq.clone())
        assert torch.equal(got, expected)
    assert "recomposition_frequencies" not in vars(rotary)  # the patch is gone


def test_deepstack_injection_is_bit_exact(tiny):
    text, _ = _modules(tiny)
    g = torch.Generator().manual_seed(2)
    hidden = torch.randn(3, 11, 8, generator=g)
    mask = torch.zeros(3, 11, dtype=torch.bool)
    mask[0, 2:6] = mask[1, 0:3] = mask[2, 9:] = True  # image tokens at different places per row (left padding)
    features = torch.randn(int(mask.sum()), 8, generator=g)
    expected = text._deepstack_process(hidden, mask, features)
    with dense_qwen3vl_text_steps(tiny.model):
        got = text._deepstack_process(hidden, mask, features)
    assert torch.equal(got, expected) and not torch.equal(got, hidden)
    assert "_deepstack_process" not in vars(text)
