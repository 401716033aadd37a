import sys

import numpy as np
import pytest
import torch

from fixate_rt import ops
from fixate_rt.errors import UnavailableError
from fixate_rt.reference import rollout_full, rollout_row_reference, slot_pool_reference


def _random_attention(B, L, T, seed=0):
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(B, L, T, T, generator=g, dtype=torch.float64)
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    return torch.softmax(scores.masked_fill(~causal, float("-inf")), -1)


def test_row_rollout_equals_full_matrix_rollout():
    attn = _random_attention(3, 4, 37)
    q = torch.tensor([36, 20, 5])
    full = rollout_full(attn)
    row = rollout_row_reference(attn, q)
    torch.testing.assert_close(row, full[torch.arange(3), q])
    torch.testing.assert_close(row.sum(-1), torch.ones(3, dtype=torch.float64))


def test_rollout_of_identity_attention_is_one_hot():
    attn = torch.eye(9, dtype=torch.float64).expand(2, 3, 9, 9)
    row = ops.rollout_row(attn, torch.tensor([8, 4]))
    torch.testing.assert_close(row, torch.eye(9, dtype=torch.float64)[[8, 4]])


def test_rollout_row_hand_example():
    # T = 2, one layer, A = [[1, 0], [0.5, 0.5]]: Â = rownorm(0.5 I + 0.5 A) = [[1, 0], [0.25, 0.75]].
    attn = torch.tensor([[[[1.0, 0.0], [0.5, 0.5]]]], dtype=torch.float64)
    torch.testing.assert_close(ops.rollout_row(attn, torch.tensor([1])), torch.tensor([[0.25, 0.75]], dtype=torch.float64))


def _boxes(B=3, P_side=(5, 7), S=15, seed=0):
    rng = np.random.default_rng(seed)
    h, w = P_side
    W, H = 70.0, 50.0
    jj, ii = np.meshgrid(np.arange(w), np.arange(h))
    x0, y0 = jj.ravel() * W / w, ii.ravel() * H / h
    tok = np.stack([x0, y0, x0 + W / w, y0 + H / h], 1).astype(np.float32)
    sx0, sy0 = rng.uniform(0, W - 10, (B, S)), rng.uniform(0, H - 10, (B, S))
    slots = np.stack([sx0, sy0, sx0 + rng.uniform(5, 30, (B, S)), sy0 + rng.uniform(5, 30, (B, S))], -1)
    slots[1, 11:] = 0.0  # ragged: row 1 has only 11 valid slots (degenerate boxes are padding)
    rel = torch.from_numpy(rng.random((B, h * w))).float()
    return rel, torch.from_numpy(tok), torch.from_numpy(slots.astype(np.float32))


@pytest.mark.parametrize("mode", ["exclusive", "overlap", "area"])
def test_slot_pool_falls_back_to_uniform_without_mass(mode):
    rel, tok, slots = _boxes()
    out = ops.slot_pool(torch.zeros_like(rel), tok, slots, mode=mode, impl="torch")
    torch.testing.assert_close(out[1, :11], torch.full((11,), 1 / 11))
    torch.testing.assert_close(out[0], torch.full((15,), 1 / 15))


def test_slot_pool_hand_example():
    # Four 10×10 tokens in a 2×2 grid; slot A holds the top row's centres, slot B the left column's.
    tok = torch.tensor([[0, 0, 10, 10], [10, 0, 20, 10], [0, 10, 10, 20], [10, 10, 20, 20]], dtype=torch.float32)
    rel = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    slots = torch.tensor([[[0, 0, 20, 10], [0, 0, 10, 20]]], dtype=torch.float32)
    excl = slot_pool_reference(rel, tok, slots, "exclusive")  # A: 1+2, B: 3 (token 0 already taken)
    torch.testing.assert_close(excl, torch.tensor([[3 / 6, 3 / 6]]))
    over = slot_pool_reference(rel, tok, slots, "overlap")  # A: 1+2, B: 1+3
    torch.testing.assert_close(over, torch.tensor([[3 / 7, 4 / 7]]))


def test_explicit_unknown_impl_raises():
    rel, tok, slots = _boxes()
    with pytest.raises(UnavailableError, match="no 'triton' implementation"):
        ops.slot_pool(rel, tok, slots, impl="triton")


def test_cpp_rejects_bad_shapes():
    if not ops.cpp_available():
        pytest.skip("fixate_rt._C not built")
    from fixate_rt import _C

    with pytest.raises(ValueError, match="token_boxes must be"):
        _C.slot_pool(np.zeros((2, 5), np.float32), np.zeros((4, 4), np.float32), np.zeros((2, 3, 4), np.float32), "area")
    with pytest.raises(ValueError, match="mode must be one of"):
        _C.slot_pool(np.zeros((2, 5), np.float32), np.zeros((5, 4), np.float32), np.zeros((2, 3, 4), np.float32), "x")


def test_the_kernels_folder_cannot_shadow_a_top_level_kernels_package():
    # transformers >= 5.25 imports the Hugging Face `kernels` package where it is installed; from the repository
    # root a regular package named kernels/ would be found first and break that import.
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    assert not (root / "kernels" / "__init__.py").exists()
    probe = "import importlib.util as u; s = u.find_spec('kernels'); print(s.origin if s else None)"
    origin = subprocess.run([sys.executable, "-c", probe], cwd=root, capture_output=True, text=True, check=True)
    assert not origin.stdout.strip().startswith(str(root / "kernels"))
    from fixate_rt.kernels.availability import triton_status

    assert isinstance(triton_status(), str)


def test_available_answers_with_a_reason_when_the_kernels_cannot_be_imported(monkeypatch):
    """A clone on PYTHONPATH but not installed has no fixate_rt.kernels: `available` names why, never raises."""
    from fixate_rt import ops

    monkeypatch.setitem(sys.modules, "fixate_rt.kernels", None)  # makes the import fail as it does in such a clone
    monkeypatch.setitem(sys.modules, "fixate_rt.kernels.availability", None)
    reasons = ops.available("rollout_row_qk", "cpu")
    assert "pip install -e ." in reasons["triton"]
