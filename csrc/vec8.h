// What the CPU attention kernels (rollout_qk.cpp, causal_attention.cpp) share: 8-float vectors written with the
// GCC/Clang vector extension (one AVX register in a target("avx2") function, two SSE registers elsewhere) and the
// packed key blocks their score tiles read.
#pragma once
#include <cstdint>
#include <cstring>

namespace fixate {
namespace vec {

typedef float v8 __attribute__((vector_size(32)));

inline v8 load8(const float* p) {
  v8 v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
inline void store8(float* p, v8 v) { std::memcpy(p, &v, sizeof(v)); }

constexpr int64_t kKeys = 16;  // keys per packed block: two 8-float vectors

// Key blocks covering keys [0, n): score rows are laid out for whole blocks (n rounded up to kKeys).
inline int64_t key_blocks(int64_t n) { return (n + kKeys - 1) / kKeys; }

}  // namespace vec
}  // namespace fixate
