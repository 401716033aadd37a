#include "rollout_qk.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "common.h"

namespace fixate {
namespace {

inline float widen(float v) { return v; }
inline float widen(double v) { return static_cast<float>(v); }
inline float widen(BF16 v) {
  const uint32_t bits = static_cast<uint32_t>(v.bits) << 16;
  float out;
  std::memcpy(&out, &bits, sizeof(out));
  return out;
}

// One query row i of one head: u[j] += weight · softmax_j(q_i·k_j·scale) over the real keys j ≤ i.
// `scores` (T floats) is the only scratch: never T×T. This file is compiled with -ffast-math so the exp loop
// vectorises; masking therefore uses multiplications by 0/1 instead of infinities, and exponents are clamped
// to ≤ 0 (a masked key's score may exceed the shift) so nothing overflows.
template <typename Scalar>
void accumulate_row(const Scalar* qi, const Scalar* kh, const float* key_ok, const float* lse_row, int64_t i,
                    int64_t D, float scale, double weight, std::vector<float>& qbuf, std::vector<float>& scores,
                    std::vector<float>& u) {
  const int64_t n = i + 1;  // causal: keys 0..i
  float real = 0.f;
  for (int64_t j = 0; j < n; ++j) real += key_ok[j];
  if (real == 0.f) return;  // no key to attend (a padded row)
  for (int64_t d = 0; d < D; ++d) qbuf[d] = widen(qi[d]) * scale;
  float* s = scores.data();
  for (int64_t j = 0; j < n; ++j) {
    const Scalar* kj = kh + j * D;
    float acc = 0.f;
    for (int64_t d = 0; d < D; ++d) acc += qbuf[d] * widen(kj[d]);
    s[j] = acc;
  }
  float shift;
  if (lse_row != nullptr) {
    shift = *lse_row;  // the forward's log-sum-exp: the probabilities are exp(s − lse), no normalising pass
  } else {
    shift = -3.0e38f;
    for (int64_t j = 0; j < n; ++j)
      if (key_ok[j] != 0.f && s[j] > shift) shift = s[j];
  }
  for (int64_t j = 0; j < n; ++j) s[j] = std::exp(std::min(s[j] - shift, 0.f)) * key_ok[j];
  double norm = 1.0;
  if (lse_row == nullptr) {
    norm = 0.0;
    for (int64_t j = 0; j < n; ++j) norm += s[j];
  }
  const float w = float(weight / norm);
  float* uj = u.data();
  for (int64_t j = 0; j < n; ++j) uj[j] += w * s[j];
}

}  // namespace

template <typename Scalar>
void rollout_row_qk(const Scalar* q, const Scalar* k, const uint8_t* key_ok, const float* lse,
                    const int64_t* query_pos, float* out, int64_t B, int64_t L, int64_t Hq, int64_t Hkv, int64_t T,
                    int64_t D, double scale, double residual) {
  const int64_t groups = Hq / Hkv;
  std::vector<double> r(B * T, 0.0);
  for (int64_t b = 0; b < B; ++b) r[b * T + query_pos[b]] = 1.0;
  std::vector<double> u(B * Hq * T);
  for (int64_t l = L - 1; l >= 0; --l) {  // deepest layer first
    std::fill(u.begin(), u.end(), 0.0);
    // Every (row, head) pair is independent: each thread writes its own u slice, then heads are averaged.
    FIXATE_PARALLEL_FOR
    for (int64_t bh = 0; bh < B * Hq; ++bh) {
      const int64_t b = bh / Hq, h = bh % Hq;
      std::vector<float> qbuf(D), scores(T), uh(T, 0.f), ok(T, 1.f);
      const Scalar* qh = q + (((b * L + l) * Hq + h) * T) * D;
      const Scalar* kh = k + (((b * L + l) * Hkv + h / groups) * T) * D;
      if (key_ok != nullptr)
        for (int64_t j = 0; j < T; ++j) ok[j] = key_ok[b * T + j] ? 1.f : 0.f;
      const float* lh = lse != nullptr ? lse + ((b * L + l) * Hq + h) * T : nullptr;
      for (int64_t i = 0; i < T; ++i) {
        const double ri = r[b * T + i];
        if (ri == 0.0) continue;  // rows the vector has not reached cost nothing
        accumulate_row(qh + i * D, kh, ok.data(), lh != nullptr ? lh + i : nullptr, i, D, float(scale), ri, qbuf,
                       scores, uh);
      }
      for (int64_t j = 0; j < T; ++j) u[bh * T + j] = uh[j];
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

template void rollout_row_qk<float>(const float*, const float*, const uint8_t*, const float*, const int64_t*, float*,
                                    int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, double, double);
template void rollout_row_qk<double>(const double*, const double*, const uint8_t*, const float*, const int64_t*,
                                     float*, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, double, double);
template void rollout_row_qk<BF16>(const BF16*, const BF16*, const uint8_t*, const float*, const int64_t*, float*,
                                   int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, double, double);

}  // namespace fixate
