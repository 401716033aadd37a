#include "causal_attention.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

// Compiled with -ffast-math so the exp loop vectorises: no infinities are used (masked keys are multiplied by 0,
// exponents clamped to ≤ 0). One work item is a tile of kRows queries of one head: its scores against every key it
// may see are one O(T) scratch row per query, so the softmax is exact in two passes and T × T never exists.

namespace fixate {
namespace {

constexpr int64_t kRows = 4;   // queries per tile: their scores share every key load
constexpr int64_t kKeys = 16;  // keys per packed block: two 8-float vectors

typedef float v8 __attribute__((vector_size(32)));

inline v8 load8(const float* p) {
  v8 v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
inline void store8(float* p, v8 v) { std::memcpy(p, &v, sizeof(v)); }

inline int64_t key_blocks(int64_t n) { return (n + kKeys - 1) / kKeys; }

// One head's K in key blocks, read contiguously by the score tile: kb[(jb · D + d) · kKeys + t] = k[jb · kKeys + t][d].
void pack_keys(const float* kh, int64_t T, int64_t D, float* kb) {
  std::fill(kb, kb + key_blocks(T) * D * kKeys, 0.f);
  for (int64_t j = 0; j < T; ++j)
    for (int64_t d = 0; d < D; ++d) kb[((j / kKeys) * D + d) * kKeys + j % kKeys] = kh[j * D + d];
}

// s[r · ld + j] = qs[r] · k_j for the kRows scaled queries qs [kRows, D] and the keys of blocks [b0, b1).
inline __attribute__((always_inline)) void score_tile(const float* qs, const float* kb, int64_t D, int64_t b0,
                                                      int64_t b1, float* s, int64_t ld) {
  for (int64_t jb = b0; jb < b1; ++jb) {
    const float* kp = kb + jb * D * kKeys;
    v8 a00 = {}, a01 = {}, a10 = {}, a11 = {}, a20 = {}, a21 = {}, a30 = {}, a31 = {};
    for (int64_t d = 0; d < D; ++d, kp += kKeys) {
      const v8 k0 = load8(kp), k1 = load8(kp + 8);
      const float q0 = qs[d], q1 = qs[D + d], q2 = qs[2 * D + d], q3 = qs[3 * D + d];
      a00 += q0 * k0;
      a01 += q0 * k1;
      a10 += q1 * k0;
      a11 += q1 * k1;
      a20 += q2 * k0;
      a21 += q2 * k1;
      a30 += q3 * k0;
      a31 += q3 * k1;
    }
    float* sp = s + jb * kKeys;
    store8(sp, a00);
    store8(sp + 8, a01);
    store8(sp + ld, a10);
    store8(sp + ld + 8, a11);
    store8(sp + 2 * ld, a20);
    store8(sp + 2 * ld + 8, a21);
    store8(sp + 3 * ld, a30);
    store8(sp + 3 * ld + 8, a31);
  }
}

// out_r = Σ_j p[r][j] · v_j · inv[r] over keys [j0, n), for the kRows rows of p (rows past `rows` are not written).
inline __attribute__((always_inline)) void weigh_values(const float* p, int64_t ld, const float* vh, int64_t j0,
                                                        int64_t n, int64_t D, const float* inv, int64_t rows,
                                                        float* out) {
  if (D % 16 == 0) {
    for (int64_t dc = 0; dc < D; dc += 16) {
      v8 a00 = {}, a01 = {}, a10 = {}, a11 = {}, a20 = {}, a21 = {}, a30 = {}, a31 = {};
      for (int64_t j = j0; j < n; ++j) {
        const float* vj = vh + j * D + dc;
        const v8 v0 = load8(vj), v1 = load8(vj + 8);
        const float p0 = p[j], p1 = p[ld + j], p2 = p[2 * ld + j], p3 = p[3 * ld + j];
        a00 += p0 * v0;
        a01 += p0 * v1;
        a10 += p1 * v0;
        a11 += p1 * v1;
        a20 += p2 * v0;
        a21 += p2 * v1;
        a30 += p3 * v0;
        a31 += p3 * v1;
      }
      const v8 acc[kRows][2] = {{a00, a01}, {a10, a11}, {a20, a21}, {a30, a31}};
      for (int64_t r = 0; r < rows; ++r) {
        store8(out + r * D + dc, acc[r][0] * inv[r]);
        store8(out + r * D + dc + 8, acc[r][1] * inv[r]);
      }
    }
    return;
  }
  for (int64_t r = 0; r < rows; ++r) {  // any other head size: plain loops
    float* o = out + r * D;
    std::fill(o, o + D, 0.f);
    for (int64_t j = j0; j < n; ++j)
      for (int64_t d = 0; d < D; ++d) o[d] += p[r * ld + j] * vh[j * D + d];
    for (int64_t d = 0; d < D; ++d) o[d] *= inv[r];
  }
}

// One tile: queries i0 .. i0 + kRows − 1 of one head. `ok` holds the row's keys as 0/1, `first` its first real key;
// s [kRows, ld] and qs [kRows, D] are the thread's scratch; out points at query i0's output row.
inline __attribute__((always_inline)) void attend_tile(const float* qh, const float* kb, const float* vh,
                                                       const float* ok, int64_t first, int64_t i0, int64_t T,
                                                       int64_t D, float scale, float* s, int64_t ld, float* qs,
                                                       float* out) {
  const int64_t rows = std::min(kRows, T - i0);
  const int64_t n = i0 + rows;  // causal: the tile's last query sees keys 0 .. n − 1
  if (first >= n) {             // every query of the tile is padding: zeros, never NaN
    std::fill(out, out + rows * D, 0.f);
    return;
  }
  for (int64_t r = 0; r < kRows; ++r)
    for (int64_t d = 0; d < D; ++d) qs[r * D + d] = r < rows ? qh[(i0 + r) * D + d] * scale : 0.f;
  const int64_t b0 = first / kKeys, j0 = b0 * kKeys;  // key blocks wholly before the first real key are skipped
  score_tile(qs, kb, D, b0, key_blocks(n), s, ld);
  float inv[kRows] = {0.f, 0.f, 0.f, 0.f};
  for (int64_t r = 0; r < kRows; ++r) {
    float* sr = s + r * ld;
    const int64_t i = i0 + r;
    if (r >= rows || first > i) {  // no real key for this query (or no query): weight 0 everywhere
      std::fill(sr + j0, sr + n, 0.f);
      continue;
    }
    float shift = -3.0e38f;  // the largest real score (branch-free, so the loop vectorises)
    for (int64_t j = first; j <= i; ++j) shift = std::max(shift, ok[j] != 0.f ? sr[j] : -3.0e38f);
    float sum = 0.f;
    for (int64_t j = j0; j <= i; ++j) {
      sr[j] = std::exp(std::min(sr[j] - shift, 0.f)) * ok[j];
      sum += sr[j];
    }
    std::fill(sr + i + 1, sr + n, 0.f);  // future keys of this query
    inv[r] = 1.f / sum;
  }
  weigh_values(s, ld, vh, j0, n, D, inv, rows, out);
}

using TilePass = void (*)(const float*, const float*, const float*, const float*, int64_t, int64_t, int64_t, int64_t,
                          float, float*, int64_t, float*, float*);

void tile_portable(const float* qh, const float* kb, const float* vh, const float* ok, int64_t first, int64_t i0,
                   int64_t T, int64_t D, float scale, float* s, int64_t ld, float* qs, float* out) {
  attend_tile(qh, kb, vh, ok, first, i0, T, D, scale, s, ld, qs, out);
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
// The same tile compiled for AVX2 + FMA (8-lane registers, the vector exp), chosen at run time so the build still
// runs on any x86-64. FIXATE_RT_CPU_PORTABLE=1 forces the portable variant (the tests compare the two).
__attribute__((target("avx2,fma"))) void tile_avx2(const float* qh, const float* kb, const float* vh, const float* ok,
                                                   int64_t first, int64_t i0, int64_t T, int64_t D, float scale,
                                                   float* s, int64_t ld, float* qs, float* out) {
  attend_tile(qh, kb, vh, ok, first, i0, T, D, scale, s, ld, qs, out);
}

TilePass best_tile() {
  static const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                           std::getenv("FIXATE_RT_CPU_PORTABLE") == nullptr;
  return avx2 ? tile_avx2 : tile_portable;
}
#else
TilePass best_tile() { return tile_portable; }
#endif

}  // namespace

void causal_attention(const float* q, const float* k, const float* v, const int64_t* key_ok, float* out, int64_t B,
                      int64_t Hq, int64_t Hkv, int64_t T, int64_t D, float scale) {
  if (B <= 0 || T <= 0) return;
  const TilePass tile = best_tile();
  const int64_t groups = Hq / Hkv, tiles = (T + kRows - 1) / kRows, ld = key_blocks(T) * kKeys;
  std::vector<float> ok(B * T);
  std::vector<int64_t> first(B, T);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t j = T - 1; j >= 0; --j) {
      ok[b * T + j] = key_ok == nullptr || key_ok[b * T + j] != 0 ? 1.f : 0.f;
      if (ok[b * T + j] != 0.f) first[b] = j;
    }
  std::vector<float> kb(B * Hkv * ld * D);  // every head's keys packed once, shared by its query heads
#if defined(FIXATE_RT_OPENMP)
#pragma omp parallel
#endif
  {
#if defined(FIXATE_RT_OPENMP)
#pragma omp for schedule(static)
#endif
    for (int64_t bh = 0; bh < B * Hkv; ++bh) pack_keys(k + bh * T * D, T, D, kb.data() + bh * ld * D);
    std::vector<float> s(kRows * ld), qs(kRows * D);
    // Heaviest tiles (the last queries see the most keys) first, so the dynamic schedule ends balanced.
#if defined(FIXATE_RT_OPENMP)
#pragma omp for schedule(dynamic, 4)
#endif
    for (int64_t item = 0; item < B * Hq * tiles; ++item) {
      const int64_t t = tiles - 1 - item / (B * Hq), bh = item % (B * Hq);
      const int64_t b = bh / Hq, h = bh % Hq, kvh = b * Hkv + h / groups, i0 = t * kRows;
      tile(q + bh * T * D, kb.data() + kvh * ld * D, v + kvh * T * D, ok.data() + b * T, first[b], i0, T, D, scale,
           s.data(), ld, qs.data(), out + (bh * T + i0) * D);
    }
  }
}

const char* causal_attention_variant() { return best_tile() == tile_portable ? "portable" : "avx2+fma"; }

}  // namespace fixate
