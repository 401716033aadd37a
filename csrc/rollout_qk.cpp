#include "rollout_qk.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "common.h"
#include "vec8.h"

// This file is compiled with -ffast-math so the exp loop vectorises; masking therefore multiplies by 0/1 instead
// of using infinities, and exponents are clamped to ≤ 0 (a masked key's score may exceed the shift) so nothing
// overflows. The score micro-kernel is written with GCC/Clang vector types: the same source compiles to AVX2+FMA
// in the `avx2` variant (picked at run time where the CPU has it) and to SSE pairs in the portable one.

namespace fixate {
namespace {

using namespace vec;  // v8, load8, store8, kKeys, key_blocks

constexpr int64_t kRows = 4;  // query rows per block: their scores share every key load

inline float widen(float v) { return v; }
inline float widen(double v) { return static_cast<float>(v); }
inline float widen(BF16 v) {
  const uint32_t bits = static_cast<uint32_t>(v.bits) << 16;
  float out;
  std::memcpy(&out, &bits, sizeof(out));
  return out;
}

// One head's K in key blocks, so the score kernel reads it contiguously:
// kb[(jb · D + d) · kKeys + t] = k[jb · kKeys + t][d], zero past T.
template <typename Scalar>
inline void pack_keys(const Scalar* kh, int64_t T, int64_t D, float* kb) {
  std::fill(kb, kb + key_blocks(T) * D * kKeys, 0.f);
  for (int64_t j = 0; j < T; ++j)
    for (int64_t d = 0; d < D; ++d) kb[((j / kKeys) * D + d) * kKeys + j % kKeys] = widen(kh[j * D + d]);
}

// s[r · ld + j] = qs[r] · k_j for kRows pre-scaled query rows qs [kRows, D] and the keys of blocks [0, blocks):
// eight accumulators of 8 lanes stay in registers across the D loop (a 4 × 16 tile per key block).
inline __attribute__((always_inline)) void score_tile(const float* qs, const float* kb, int64_t D, int64_t blocks,
                                                      float* s, int64_t ld) {
  for (int64_t jb = 0; jb < blocks; ++jb) {
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

// u[j] += weight · softmax_j(s) over the real keys j < n (key_ok 0/1); `shift` is the forward's log-sum-exp when
// `have_lse` (then the probabilities are exp(s − lse), no normalising pass), else computed here.
inline __attribute__((always_inline)) void accumulate_row(float* s, const float* key_ok, int64_t n, bool have_lse,
                                                          float shift, double weight, float* u) {
  if (!have_lse) {
    shift = -3.0e38f;
    for (int64_t j = 0; j < n; ++j)
      if (key_ok[j] != 0.f && s[j] > shift) shift = s[j];
  }
  for (int64_t j = 0; j < n; ++j) s[j] = std::exp(std::min(s[j] - shift, 0.f)) * key_ok[j];
  double norm = 1.0;
  if (!have_lse) {
    norm = 0.0;
    for (int64_t j = 0; j < n; ++j) norm += s[j];
  }
  const float w = float(weight / norm);
  for (int64_t j = 0; j < n; ++j) u[j] += w * s[j];
}

// Per-thread scratch, all O(T): the packed keys, kRows score rows, the head's u, key_ok as 0/1 and its prefix sum.
struct Scratch {
  std::vector<float> kb, s, u, ok, qs;
  std::vector<int64_t> real_upto;  // real_upto[i] = number of real keys j ≤ i
  Scratch(int64_t T, int64_t D) {
    const int64_t padded = key_blocks(T) * kKeys;
    kb.resize(padded * D);
    s.resize(kRows * padded);
    u.resize(T);
    ok.resize(T);
    qs.resize(kRows * D);
    real_upto.resize(T);
  }
};

// One (batch row, head) of one layer: uh = Σ_i r[i] · softmax_i(q_i Kᵀ · scale), rows of r that are 0 skipped.
template <typename Scalar>
inline __attribute__((always_inline)) void head_pass(const Scalar* qh, const Scalar* kh, const uint8_t* key_ok_b,
                                                     const float* lh, const double* rb, int64_t T, int64_t D,
                                                     float scale, Scratch& w) {
  const int64_t ld = key_blocks(T) * kKeys;  // one score row, as Scratch sized it
  int64_t real = 0;
  for (int64_t j = 0; j < T; ++j) {
    w.ok[j] = key_ok_b == nullptr || key_ok_b[j] ? 1.f : 0.f;
    real += w.ok[j] != 0.f;
    w.real_upto[j] = real;
  }
  std::fill(w.u.begin(), w.u.end(), 0.f);
  pack_keys(kh, T, D, w.kb.data());
  for (int64_t i0 = 0; i0 < T; i0 += kRows) {
    const int64_t rows = std::min(kRows, T - i0);
    bool reached = false;
    for (int64_t r = 0; r < rows; ++r) reached |= rb[i0 + r] != 0.0 && w.real_upto[i0 + r] > 0;
    if (!reached) continue;  // rows the vector has not reached (or padded rows with no key) cost nothing
    for (int64_t r = 0; r < kRows; ++r)
      for (int64_t d = 0; d < D; ++d) w.qs[r * D + d] = r < rows ? widen(qh[(i0 + r) * D + d]) * scale : 0.f;
    const int64_t n_max = i0 + rows;  // causal: the block's last row sees keys 0..i0+rows-1
    score_tile(w.qs.data(), w.kb.data(), D, key_blocks(n_max), w.s.data(), ld);
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t i = i0 + r;
      if (rb[i] == 0.0 || w.real_upto[i] == 0) continue;
      accumulate_row(w.s.data() + r * ld, w.ok.data(), i + 1, lh != nullptr, lh != nullptr ? lh[i] : 0.f, rb[i],
                     w.u.data());
    }
  }
}

template <typename Scalar>
using HeadPass = void (*)(const Scalar*, const Scalar*, const uint8_t*, const float*, const double*, int64_t, int64_t,
                          float, Scratch&);

template <typename Scalar>
void head_pass_portable(const Scalar* qh, const Scalar* kh, const uint8_t* key_ok_b, const float* lh, const double* rb,
                        int64_t T, int64_t D, float scale, Scratch& w) {
  head_pass(qh, kh, key_ok_b, lh, rb, T, D, scale, w);
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
// The same pass compiled for AVX2 + FMA: the vector types become single 256-bit registers and the exp loop calls
// the 8-lane vector exp. Chosen at run time, so the wheel still runs on any x86-64.
template <typename Scalar>
__attribute__((target("avx2,fma"))) void head_pass_avx2(const Scalar* qh, const Scalar* kh, const uint8_t* key_ok_b,
                                                        const float* lh, const double* rb, int64_t T, int64_t D,
                                                        float scale, Scratch& w) {
  head_pass(qh, kh, key_ok_b, lh, rb, T, D, scale, w);
}

// FIXATE_RT_CPU_PORTABLE=1 forces the portable variant (the tests compare the two).
template <typename Scalar>
HeadPass<Scalar> best_head_pass() {
  static const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                           std::getenv("FIXATE_RT_CPU_PORTABLE") == nullptr;
  return avx2 ? head_pass_avx2<Scalar> : head_pass_portable<Scalar>;
}
#else
template <typename Scalar>
HeadPass<Scalar> best_head_pass() {
  return head_pass_portable<Scalar>;
}
#endif

}  // namespace

template <typename Scalar>
void rollout_row_qk(const Scalar* q, const Scalar* k, const uint8_t* key_ok, const float* lse,
                    const int64_t* query_pos, float* out, int64_t B, int64_t L, int64_t Hq, int64_t Hkv, int64_t T,
                    int64_t D, double scale, double residual) {
  const HeadPass<Scalar> pass = best_head_pass<Scalar>();
  const int64_t groups = Hq / Hkv;
  std::vector<double> r(B * T, 0.0);
  for (int64_t b = 0; b < B; ++b) r[b * T + query_pos[b]] = 1.0;
  std::vector<double> u(B * Hq * T);
  for (int64_t l = L - 1; l >= 0; --l) {  // deepest layer first
    // Every (row, head) pair is independent: each thread writes its own u slice, then heads are averaged.
#if defined(FIXATE_RT_OPENMP)
#pragma omp parallel
#endif
    {
      Scratch w(T, D);
#if defined(FIXATE_RT_OPENMP)
#pragma omp for schedule(dynamic, 1)
#endif
      for (int64_t bh = 0; bh < B * Hq; ++bh) {
        const int64_t b = bh / Hq, h = bh % Hq;
        pass(q + (((b * L + l) * Hq + h) * T) * D, k + (((b * L + l) * Hkv + h / groups) * T) * D,
             key_ok != nullptr ? key_ok + b * T : nullptr, lse != nullptr ? lse + ((b * L + l) * Hq + h) * T : nullptr,
             r.data() + b * T, T, D, float(scale), w);
        for (int64_t j = 0; j < T; ++j) u[bh * T + j] = w.u[j];
      }
    }
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t j = 0; j < T; ++j) {
        double mean = 0.0;
        for (int64_t h = 0; h < Hq; ++h) mean += u[(b * Hq + h) * T + j];
        r[b * T + j] = residual * r[b * T + j] + (1.0 - residual) * mean / double(Hq);
      }
    }
  }
  for (int64_t i = 0; i < B * T; ++i) out[i] = float(r[i]);
}

const char* rollout_qk_variant() {
  return best_head_pass<float>() == head_pass_portable<float> ? "portable" : "avx2+fma";
}

template void rollout_row_qk<float>(const float*, const float*, const uint8_t*, const float*, const int64_t*, float*,
                                    int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, double, double);
template void rollout_row_qk<double>(const double*, const double*, const uint8_t*, const float*, const int64_t*,
                                     float*, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, double, double);
template void rollout_row_qk<BF16>(const BF16*, const BF16*, const uint8_t*, const float*, const int64_t*, float*,
                                   int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, double, double);

}  // namespace fixate
