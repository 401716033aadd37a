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
    from fixate_rt.probes.reference import rollout_row_qk_chunked

    if B * T > 32 * 2048:
        pytest.skip("keeps the GPU check short")
    g = torch.Generator(device="cuda").manual_seed(0)
    q = torch.randn(B, 2, 32, T, 128, generator=g, device="cuda", dtype=dtype)
    k = torch.randn(B, 2, 8, T, 128, generator=g, device="cuda", dtype=dtype)
    last = torch.full((B,), T - 1, device="cuda")
    ref32 = rollout_row_qk_chunked(q.float(), k.float(), last)
    torch_low = rollout_row_qk_chunked(q, k, last)  # the same computation from low-precision inputs
    got = ops.rollout_row_qk(q, k, last, impl="triton")
    assert (got - ref32).abs().max() <= 2 * (torch_low - ref32).abs().max() + 1e-5
