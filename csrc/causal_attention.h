// Causal self-attention with a key-padding mask, for the exported decoders (ONNX Runtime custom op) and tests.
#pragma once
#include <cstdint>

#include "parallel.h"

namespace fixate {

// out[b, h, i] = Σ_j softmax_j(scale · q[b, h, i] · k[b, h / (Hq / Hkv), j]) · v[b, h / (Hq / Hkv), j] over the keys
// j ≤ i with key_ok[b, j] ≠ 0 (key_ok == nullptr: every key is real). A query with no such key (a padded row) gets
// zeros, so nothing non-finite leaves the kernel. lse (nullptr: not wanted) [B, Hq, T] receives each query's
// log-sum-exp of its scaled real scores (0 for a query with no key).
// Shapes (contiguous): q, out [B, Hq, T, D]; k, v [B, Hkv, T, D]; key_ok [B, T]. Hq must be a multiple of Hkv.
// Memory: the packed keys (the size of k) plus O(T · D) per thread; the T × T scores never exist.
// pool: whose threads run it (nullptr: OpenMP's).
void causal_attention(const float* q, const float* k, const float* v, const int64_t* key_ok, float* out, float* lse,
                      int64_t B, int64_t Hq, int64_t Hkv, int64_t T, int64_t D, float scale,
                      const ParallelFor* pool = nullptr);

// The compiled variant causal_attention runs on this CPU: "avx2+fma" or "portable".
const char* causal_attention_variant();

}  // namespace fixate
