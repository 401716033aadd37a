// Rollout row from post-RoPE Q and K of the probed layers, blockwise over keys, never materialising T×T.
#pragma once
#include <cstdint>

namespace fixate {

// bf16 values travel as their raw 16-bit patterns (numpy has no bfloat16); they are widened to float on load.
struct BF16 {
  uint16_t bits;
};

// Per layer, deepest first: u = Σ_i r[i] · mean_h softmax_i(q_i Kᵀ · scale) over the keys j ≤ i with
// key_ok[b, j]; then r ← residual·r + (1 − residual)·u.  Same contract as the Triton kernel.
// q [B, L, Hq, T, D], k [B, L, Hkv, T, D] (Hq a multiple of Hkv), key_ok [B, T] (nullptr: all keys real),
// lse [B, L, Hq, T] fp32 log-sum-exp of the scaled masked scores (nullptr: computed here), query_pos [B],
// out [B, T] fp32. Rows of the query that r has not reached cost nothing; each thread holds O(T) scratch.
template <typename Scalar>
void rollout_row_qk(const Scalar* q, const Scalar* k, const uint8_t* key_ok, const float* lse,
                    const int64_t* query_pos, float* out, int64_t B, int64_t L, int64_t Hq, int64_t Hkv, int64_t T,
                    int64_t D, double scale, double residual);

// Which compiled variant rollout_row_qk runs on this CPU: "avx2+fma" or "portable" (FIXATE_RT_CPU_PORTABLE=1
// forces the latter).
const char* rollout_qk_variant();

}  // namespace fixate
