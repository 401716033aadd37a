// Probe row kernels on raw arrays (row-major, contiguous). Scalar = float or double; accumulation in double.
#pragma once
#include <cstdint>

namespace fixate {

// Row query_pos[b] of  Â_L ⋯ Â_1,  Â = rownorm(residual·I + (1 − residual)·mean_h A).
// attn [B, L, H, T, T] (H = 1 for head-averaged input), query_pos [B], out [B, T].
template <typename Scalar>
void rollout_row(const Scalar* attn, const int64_t* query_pos, Scalar* out, int64_t B, int64_t L, int64_t H,
                 int64_t T, double residual);

// FixATE AttnLRP from the answer rows: Σ_l w_l mean_h (A⊙∇A)[q,:] / r̃_h  + e_q.
// attn_row, grad_row [B, L, H, T]; out [B, T] (signed).
template <typename Scalar>
void attnlrp_row(const Scalar* attn_row, const Scalar* grad_row, const int64_t* query_pos, Scalar* out, int64_t B,
                 int64_t L, int64_t H, int64_t T);

// FixATE GLIMPSE row: (I + α_L E_L) ⋯ (I + α_1 E_1) read at row q, streamed layer by layer.
// attn, grad [B, L, H, T, T]; out [B, T].
template <typename Scalar>
void glimpse_row(const Scalar* attn, const Scalar* grad, const int64_t* query_pos, Scalar* out, int64_t B, int64_t L,
                 int64_t H, int64_t T);

}  // namespace fixate
