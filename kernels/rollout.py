"""Fused attention-rollout row from Q and K, never materialising H×T×T attention (Triton).

Per probed layer (deepest first) with the current row vector r [B, T]:
    u_j = Σ_i r_i · mean_h softmax_i(q_i·k_j·scale + mask)_j        (a weighted column sum of the softmax)
    r  ← residual·r + (1 − residual)·u                               (= r·Â, Â = rownorm(res·I + (1−res)·A))
Two kernels per layer: `_lse_kernel` computes each query row's log-sum-exp (flash-style online max/sum over
key blocks); `_colsum_kernel` owns one key block and walks the query blocks and heads, accumulating
r_i·exp(s_ij − lse_i) in fp32. When the forward's fused attention already returned the log-sum-exp
(`probes.capture.sdpa_with_lse`, what `simulate` uses), the first kernel is skipped: one pass over QKᵀ per layer.
GQA: query head h reads key head h // (Hq / Hkv). Masks: causal and key padding (attention_mask[b, j] = 0).
Memory: O(B·H·T) for the log-sum-exp, O(B·T) for the rows.
Set ``TRITON_INTERPRET=1`` before importing this module to run it on CPU tensors (tests do).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _lse_kernel(q_ptr, k_ptr, mask_ptr, lse_ptr, T, D, HQ, GROUP, scale,
                s_qb, s_qh, s_qt, s_kb, s_kh, s_kt, s_mb,
                BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    pid_bh = tl.program_id(0)
    pid_m = tl.program_id(1)
    b = pid_bh // HQ
    h = pid_bh % HQ
    kvh = h // GROUP
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    q = tl.load(q_ptr + b * s_qb + h * s_qh + offs_m[:, None] * s_qt + offs_d[None, :],
                mask=(offs_m[:, None] < T) & (offs_d[None, :] < D), other=0.0).to(tl.float32)
    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    for start in range(0, T, BLOCK_N):
        offs_n = start + tl.arange(0, BLOCK_N)
        k = tl.load(k_ptr + b * s_kb + kvh * s_kh + offs_n[:, None] * s_kt + offs_d[None, :],
                    mask=(offs_n[:, None] < T) & (offs_d[None, :] < D), other=0.0).to(tl.float32)
        valid_key = tl.load(mask_ptr + b * s_mb + offs_n, mask=offs_n < T, other=0) != 0
        s = tl.dot(q, tl.trans(k)) * scale
        keep = (offs_n[None, :] <= offs_m[:, None]) & valid_key[None, :] & (offs_n[None, :] < T)
        s = tl.where(keep, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        l_i = l_i * tl.exp(m_i - m_safe) + tl.sum(tl.exp(s - m_safe[:, None]), 1)
        m_i = m_new
    lse = tl.where(l_i > 0, m_i + tl.log(tl.maximum(l_i, 1e-30)), float("inf"))  # no key: contributes nothing
    tl.store(lse_ptr + pid_bh * T + offs_m, lse, mask=offs_m < T)


@triton.jit
def _colsum_kernel(q_ptr, k_ptr, mask_ptr, lse_ptr, r_ptr, u_ptr, T, D, HQ, GROUP, scale, inv_h,
                   s_qb, s_qh, s_qt, s_kb, s_kh, s_kt, s_mb,
                   BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    b = tl.program_id(0)
    pid_n = tl.program_id(1)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    valid_key = tl.load(mask_ptr + b * s_mb + offs_n, mask=offs_n < T, other=0) != 0
    acc = tl.zeros([BLOCK_N], tl.float32)
    for h in range(0, HQ):
        kvh = h // GROUP
        k = tl.load(k_ptr + b * s_kb + kvh * s_kh + offs_n[:, None] * s_kt + offs_d[None, :],
                    mask=(offs_n[:, None] < T) & (offs_d[None, :] < D), other=0.0).to(tl.float32)
        # Causal: only query rows at or after this key block can see it.
        for start in range((pid_n * BLOCK_N // BLOCK_M) * BLOCK_M, T, BLOCK_M):
            offs_m = start + tl.arange(0, BLOCK_M)
            q = tl.load(q_ptr + b * s_qb + h * s_qh + offs_m[:, None] * s_qt + offs_d[None, :],
                        mask=(offs_m[:, None] < T) & (offs_d[None, :] < D), other=0.0).to(tl.float32)
            lse = tl.load(lse_ptr + (b * HQ + h) * T + offs_m, mask=offs_m < T, other=float("inf"))
            r = tl.load(r_ptr + b * T + offs_m, mask=offs_m < T, other=0.0)
            s = tl.dot(q, tl.trans(k)) * scale
            keep = (offs_n[None, :] <= offs_m[:, None]) & valid_key[None, :] & (offs_m[:, None] < T)
            p = tl.where(keep, tl.exp(s - lse[:, None]), 0.0)
            acc += tl.sum(p * r[:, None], 0)
    tl.store(u_ptr + b * T + offs_n, acc * inv_h, mask=offs_n < T)


def _block(n: int, cap: int) -> int:
    return max(16, min(cap, triton.next_power_of_2(n)))


def rollout_row_qk_triton(q: torch.Tensor, k: torch.Tensor, query_pos: torch.Tensor,
                          attention_mask: torch.Tensor | None = None, *, scale: float | None = None,
                          residual: float = 0.5, lse: torch.Tensor | None = None) -> torch.Tensor:
    """q [B, L, Hq, T, d], k [B, L, Hkv, T, d] (probed layers, shallow → deep) -> rollout row [B, T] (fp32).

    ``lse`` [B, L, Hq, T] fp32: the forward's own log-sum-exp per query row; given, the first kernel is skipped
    and each layer costs one pass over QKᵀ.
    """
    B, L, HQ, T, D = q.shape
    HKV = k.shape[2]
    if HQ % HKV:
        raise ValueError(f"query heads {HQ} must be a multiple of key heads {HKV}")
    scale = D ** -0.5 if scale is None else scale
    mask = (torch.ones(B, T, device=q.device, dtype=torch.int32) if attention_mask is None
            else attention_mask.to(torch.int32).contiguous())
    r = torch.zeros(B, T, device=q.device, dtype=torch.float32)
    r[torch.arange(B, device=q.device), query_pos.to(q.device)] = 1.0
    BM, BN, BD = _block(T, 64), _block(T, 64), _block(D, 256)
    given_lse = lse
    lse = torch.empty(B * HQ, T, device=q.device, dtype=torch.float32)
    u = torch.empty(B, T, device=q.device, dtype=torch.float32)
    for layer in reversed(range(L)):
        ql, kl = q[:, layer].contiguous(), k[:, layer].contiguous()  # [B, H, T, d]
        strides = (ql.stride(0), ql.stride(1), ql.stride(2), kl.stride(0), kl.stride(1), kl.stride(2), mask.stride(0))
        if given_lse is None:
            _lse_kernel[(B * HQ, triton.cdiv(T, BM))](ql, kl, mask, lse, T, D, HQ, HQ // HKV, scale, *strides,
                                                      BLOCK_M=BM, BLOCK_N=BN, BLOCK_D=BD)
        else:
            lse = given_lse[:, layer].reshape(B * HQ, T).float().contiguous()
        _colsum_kernel[(B, triton.cdiv(T, BN))](ql, kl, mask, lse, r, u, T, D, HQ, HQ // HKV, scale, 1.0 / HQ,
                                                *strides, BLOCK_M=BM, BLOCK_N=BN, BLOCK_D=BD)
        r = residual * r + (1.0 - residual) * u
    return r
