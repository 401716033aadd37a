#include "causal_attention.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "vec8.h"

// Compiled with -ffast-math so the exp loop vectorises: no infinities are used (masked keys are multiplied by 0,
// exponents clamped to ≤ 0). One work item is kTile queries of one head: their scores against every key they may
// see are one O(T) scratch row per query, so the softmax is exact in two passes and T × T never exists; each key
// block and value chunk is read from L1 by all of the item's register tiles.

namespace fixate {
namespace {

using namespace vec;  // v8, load8, store8, kKeys, key_blocks

constexpr int64_t kRows = 6;                  // queries per register tile: their scores share every key load
constexpr int64_t kGroups = 4;                // register tiles per work item, sharing each key block from L1
constexpr int64_t kTile = kRows * kGroups;    // queries per work item
constexpr int64_t kValueChunk = 64;           // keys whose values stay in L1 while every group weighs them

// One head's K in key blocks, read contiguously by the score tile: kb[(jb · D + d) · kKeys + t] = k[jb · kKeys + t][d].
void pack_keys(const float* kh, int64_t T, int64_t D, float* kb) {
  std::fill(kb, kb + key_blocks(T) * D * kKeys, 0.f);
  for (int64_t j = 0; j < T; ++j)
    for (int64_t d = 0; d < D; ++d) kb[((j / kKeys) * D + d) * kKeys + j % kKeys] = kh[j * D + d];
}

// s[r · ld + j] = qs[r] · k_j for the kRows scaled queries qs [kRows, D] and the kKeys keys of block jb: kRows × 2
// accumulators of 8 lanes stay in registers across the D loop.
inline __attribute__((always_inline)) void score_block(const float* qs, const float* kb, int64_t D, int64_t jb,
                                                       float* s, int64_t ld) {
  const float* kp = kb + jb * D * kKeys;
  v8 a[kRows][2] = {};
  for (int64_t d = 0; d < D; ++d, kp += kKeys) {
    const v8 k0 = load8(kp), k1 = load8(kp + 8);
#pragma GCC unroll 8
    for (int64_t r = 0; r < kRows; ++r) {
      const float qr = qs[r * D + d];
      a[r][0] += qr * k0;
      a[r][1] += qr * k1;
    }
  }
  float* sp = s + jb * kKeys;
#pragma GCC unroll 8
  for (int64_t r = 0; r < kRows; ++r) {
    store8(sp + r * ld, a[r][0]);
    store8(sp + r * ld + 8, a[r][1]);
  }
}

// acc[r] += Σ_j p[r][j] · v_j over keys [j0, j1) for the kRows rows of p and acc [kRows, D] (D a multiple of 16).
inline __attribute__((always_inline)) void weigh_chunk(const float* p, int64_t ld, const float* vh, int64_t j0,
                                                       int64_t j1, int64_t D, float* acc) {
  for (int64_t dc = 0; dc < D; dc += 16) {
    v8 a[kRows][2];
#pragma GCC unroll 8
    for (int64_t r = 0; r < kRows; ++r) {
      a[r][0] = load8(acc + r * D + dc);
      a[r][1] = load8(acc + r * D + dc + 8);
    }
    for (int64_t j = j0; j < j1; ++j) {
      const float* vj = vh + j * D + dc;
      const v8 v0 = load8(vj), v1 = load8(vj + 8);
#pragma GCC unroll 8
      for (int64_t r = 0; r < kRows; ++r) {
        const float pr = p[r * ld + j];
        a[r][0] += pr * v0;
        a[r][1] += pr * v1;
      }
    }
#pragma GCC unroll 8
    for (int64_t r = 0; r < kRows; ++r) {
      store8(acc + r * D + dc, a[r][0]);
      store8(acc + r * D + dc + 8, a[r][1]);
    }
  }
}

typedef int32_t v8i __attribute__((vector_size(32)));

// e^x for x ≤ 0, 8 lanes inline (the library's vector exp is a call per 8 values, a sixth of the tile's time at
// T = 775): x = n · ln 2 + r with |r| ≤ ln 2 / 2, e^r by Cephes' degree-7 expf polynomial, 2^n in the exponent bits.
// Relative error ~1e-7; inputs below −87 give 2^−126 · e^r, never a denormal or 0/0.
inline __attribute__((always_inline)) v8 exp8(v8 x) {
  const v8 lo = v8{} - 87.0f;
  x = x < lo ? lo : x;
  const v8i n = __builtin_convertvector(x * 1.44269504088896341f - 0.5f, v8i);  // ⌈x·log2 e − ½⌉ (x ≤ 0)
  const v8 nf = __builtin_convertvector(n, v8);
  const v8 r = x - nf * 0.693359375f + nf * 2.12194440e-4f;  // x − n · ln 2 in two parts
  v8 p = v8{} + 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const v8i bits = (n + 127) << 23;
  v8 scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}

// One work item: queries i0 .. i0 + kTile − 1 of one head. `ok` holds the row's keys as 0/1, `first` its first real
// key; s [kTile, ld], qs and acc [kTile, D] are the thread's scratch; out points at query i0's output row, lse (or
// nullptr) at its log-sum-exp.
inline __attribute__((always_inline)) void attend_tile(const float* qh, const float* kb, const float* vh,
                                                       const float* ok, int64_t first, int64_t i0, int64_t T,
                                                       int64_t D, float scale, float* s, int64_t ld, float* qs,
                                                       float* acc, float* out, float* lse) {
  const int64_t rows = std::min(kTile, T - i0);
  const int64_t n = i0 + rows;  // causal: the item's last query sees keys 0 .. n − 1
  if (first >= n) {             // every query of the item is padding: zeros, never NaN
    std::fill(out, out + rows * D, 0.f);
    if (lse != nullptr) std::fill(lse, lse + rows, 0.f);
    return;
  }
  for (int64_t r = 0; r < kTile; ++r)
    for (int64_t d = 0; d < D; ++d) qs[r * D + d] = r < rows ? qh[(i0 + r) * D + d] * scale : 0.f;
  const int64_t b0 = first / kKeys, j0 = b0 * kKeys;  // key blocks wholly before the first real key are skipped
  const int64_t groups = (rows + kRows - 1) / kRows;
  for (int64_t jb = b0; jb < key_blocks(n); ++jb)
    for (int64_t g = 0; g < groups; ++g) {
      if (jb * kKeys > i0 + (g + 1) * kRows - 1) continue;  // the whole block is in this group's future
      score_block(qs + g * kRows * D, kb, D, jb, s + g * kRows * ld, ld);
    }
  float inv[kTile];
  for (int64_t r = 0; r < kTile; ++r) {
    float* sr = s + r * ld;
    const int64_t i = i0 + r;
    inv[r] = 0.f;
    if (r >= rows || first > i) {  // no real key for this query (or no query): weight 0 everywhere
      std::fill(sr + j0, sr + n, 0.f);
      if (lse != nullptr && r < rows) lse[r] = 0.f;
      continue;
    }
    float shift = -3.0e38f;  // the largest real score (branch-free, so the loop vectorises)
    for (int64_t j = first; j <= i; ++j) shift = std::max(shift, ok[j] != 0.f ? sr[j] : -3.0e38f);
    v8 sum8 = {};
    int64_t j = j0;
    for (; j + 8 <= i + 1; j += 8) {
      const v8 p = exp8(load8(sr + j) - shift) * load8(ok + j);
      store8(sr + j, p);
      sum8 += p;
    }
    float sum = 0.f;
    for (int64_t lane = 0; lane < 8; ++lane) sum += sum8[lane];
    for (; j <= i; ++j) {
      sr[j] = std::exp(std::min(sr[j] - shift, 0.f)) * ok[j];
      sum += sr[j];
    }
    std::fill(sr + i + 1, sr + n, 0.f);  // future keys of this query
    inv[r] = 1.f / sum;
    if (lse != nullptr) lse[r] = shift + std::log(sum);
  }
  if (D % 16 == 0) {
    std::fill(acc, acc + kTile * D, 0.f);
    for (int64_t c0 = j0; c0 < n; c0 += kValueChunk)  // a chunk of values, weighed by every group while in L1
      for (int64_t g = 0; g < groups; ++g) {
        const int64_t last = std::min(n, i0 + (g + 1) * kRows);  // keys past the group's last query weigh 0
        if (c0 < last) weigh_chunk(s + g * kRows * ld, ld, vh, c0, std::min(c0 + kValueChunk, last), D,
                                   acc + g * kRows * D);
      }
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t d = 0; d < D; ++d) out[r * D + d] = acc[r * D + d] * inv[r];
    return;
  }
  for (int64_t r = 0; r < rows; ++r) {  // any other head size: plain loops
    float* o = out + r * D;
    std::fill(o, o + D, 0.f);
    for (int64_t j = j0; j <= std::min(n - 1, i0 + r); ++j)
      for (int64_t d = 0; d < D; ++d) o[d] += s[r * ld + j] * vh[j * D + d];
    for (int64_t d = 0; d < D; ++d) o[d] *= inv[r];
  }
}

using TilePass = void (*)(const float*, const float*, const float*, const float*, int64_t, int64_t, int64_t, int64_t,
                          float, float*, int64_t, float*, float*, float*, float*);

void tile_portable(const float* qh, const float* kb, const float* vh, const float* ok, int64_t first, int64_t i0,
                   int64_t T, int64_t D, float scale, float* s, int64_t ld, float* qs, float* acc, float* out,
                   float* lse) {
  attend_tile(qh, kb, vh, ok, first, i0, T, D, scale, s, ld, qs, acc, out, lse);
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
// The same tile compiled for AVX2 + FMA (8-lane registers, the vector exp), chosen at run time so the build still
// runs on any x86-64. FIXATE_RT_CPU_PORTABLE=1 forces the portable variant (the tests compare the two).
__attribute__((target("avx2,fma"))) void tile_avx2(const float* qh, const float* kb, const float* vh, const float* ok,
                                                   int64_t first, int64_t i0, int64_t T, int64_t D, float scale,
                                                   float* s, int64_t ld, float* qs, float* acc, float* out,
                                                   float* lse) {
  attend_tile(qh, kb, vh, ok, first, i0, T, D, scale, s, ld, qs, acc, out, lse);
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

void causal_attention(const float* q, const float* k, const float* v, const int64_t* key_ok, float* out, float* lse,
                      int64_t B, int64_t Hq, int64_t Hkv, int64_t T, int64_t D, float scale, const ParallelFor* pool) {
  if (B <= 0 || T <= 0) return;
  const TilePass tile = best_tile();
  const int64_t groups = Hq / Hkv, tiles = (T + kTile - 1) / kTile, ld = key_blocks(T) * kKeys;
  std::vector<float> ok(B * T);
  std::vector<int64_t> first(B, T);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t j = T - 1; j >= 0; --j) {
      ok[b * T + j] = key_ok == nullptr || key_ok[b * T + j] != 0 ? 1.f : 0.f;
      if (ok[b * T + j] != 0.f) first[b] = j;
    }
  std::vector<float> kb(B * Hkv * ld * D);  // every head's keys packed once, shared by its query heads
  parallel_for(pool, B * Hkv, [&](int64_t bh) { pack_keys(k + bh * T * D, T, D, kb.data() + bh * ld * D); });
  // Heaviest tiles (the last queries see the most keys) first, so the dynamic schedule ends balanced.
  parallel_for(pool, B * Hq * tiles, [&](int64_t item) {
    thread_local std::vector<float> s, qs, acc;  // the thread's scratch, kept across calls
    if (s.size() < size_t(kTile * ld)) s.resize(kTile * ld);
    if (qs.size() < size_t(kTile * D)) qs.resize(kTile * D), acc.resize(kTile * D);
    const int64_t t = tiles - 1 - item / (B * Hq), bh = item % (B * Hq);
    const int64_t b = bh / Hq, h = bh % Hq, kvh = b * Hkv + h / groups, i0 = t * kTile;
    tile(q + bh * T * D, kb.data() + kvh * ld * D, v + kvh * T * D, ok.data() + b * T, first[b], i0, T, D, scale,
         s.data(), ld, qs.data(), acc.data(), out + (bh * T + i0) * D, lse != nullptr ? lse + bh * T + i0 : nullptr);
  });
}

const char* causal_attention_variant() { return best_tile() == tile_portable ? "portable" : "avx2+fma"; }

}  // namespace fixate
