"""GPU checks of the fused rollout kernel (`pytest -m gpu tests_triton` on a lent GPU machine; skipped elsewhere).

flash-attention's rule: the kernel's error against the fp32 reference is at most 2× the error of the same
computation done by torch at the input precision, plus a small atol.
"""

import os

import pytest
import torch

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1",
                                 reason="needs a CUDA device and compiled (not interpreted) Triton")]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("T", [64, 784, 2048, 8192])
@pytest.mark.parametrize("B", [1, 32])
def test_kernel_precision_rule(dtype, T, B):
    from fixate_rt import ops
    from fixate_rt.reference import rollout_row_qk_chunked

    if B * T > 32 * 2048:
        pytest.skip("keeps the GPU check short")
    g = torch.Generator(device="cuda").manual_seed(0)
    q = torch.randn(B, 2, 32, T, 128, generator=g, device="cuda", dtype=dtype)
    k = torch.randn(B, 2, 8, T, 128, generator=g, device="cuda", dtype=dtype)
    last = torch.full((B,), T - 1, device="cuda")
    ref32 = rollout_row_qk_chunked(q.float(), k.float(), last)
    torch_low = _low_precision_rollout(q, k, last)  # the same computation done by torch at the input precision
    got = ops.rollout_row_qk(q, k, last, impl="triton")
    assert (got - ref32).abs().max() <= 2 * (torch_low - ref32).abs().max() + 1e-5


def _low_precision_rollout(q, k, last, residual=0.5):
    """Eager rollout with scores, softmax, head mean and row update all in q's dtype."""
    B, L, HQ, T, D = q.shape
    groups = HQ // k.shape[2]
    causal = torch.ones(T, T, dtype=torch.bool, device=q.device).tril()
    r = torch.zeros(B, T, dtype=q.dtype, device=q.device)
    r[torch.arange(B, device=q.device), last] = 1
    for layer in reversed(range(L)):
        s = q[:, layer] @ k[:, layer].repeat_interleave(groups, 1).transpose(-1, -2) * D ** -0.5
        p = torch.softmax(s.masked_fill(~causal, float("-inf")), -1).mean(1)  # [B, T, T] in q.dtype
        r = residual * r + (1 - residual) * torch.einsum("bi,bij->bj", r, p)
    return r.float()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_forward_log_sum_exp_reused_on_cuda(dtype):
    """The memory-efficient attention op's log-sum-exp (sdpa_with_lse) is the rows' true log-sum-exp, and the
    kernel given it returns the row it computes on its own."""
    from fixate_rt import ops
    from fixate_rt.probes.capture import sdpa_with_lse

    B, L, T, D = 4, 2, 784, 128
    g = torch.Generator(device="cuda").manual_seed(1)
    q = torch.randn(B, L, 32, T, D, generator=g, device="cuda", dtype=dtype)
    k = torch.randn(B, L, 8, T, D, generator=g, device="cuda", dtype=dtype)
    v = torch.randn(B, L, 8, T, D, generator=g, device="cuda", dtype=dtype)
    mask = torch.ones(B, T, dtype=torch.long, device="cuda")
    mask[1, :9] = 0
    keep = torch.ones(T, T, dtype=torch.bool, device="cuda").tril()[None, None] & mask.bool()[:, None, None, :]
    lse = []
    for layer in range(L):
        _, layer_lse = sdpa_with_lse(q[:, layer], k[:, layer], v[:, layer], keep, D ** -0.5)
        s = q[:, layer].float() @ k[:, layer].float().repeat_interleave(4, 1).transpose(-1, -2) * D ** -0.5
        true = torch.logsumexp(s.masked_fill(~keep, float("-inf")), -1)
        torch.testing.assert_close(layer_lse[0], true[0], atol=2e-2, rtol=2e-3)
        lse.append(layer_lse)
    lse = torch.stack(lse, 1)
    last = torch.full((B,), T - 1, device="cuda")
    own = ops.rollout_row_qk(q, k, last, mask, impl="triton")
    reused = ops.rollout_row_qk(q, k, last, mask, lse=lse, impl="triton")
    torch.testing.assert_close(reused, own, atol=2e-3, rtol=2e-2)
