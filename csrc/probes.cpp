#include "probes.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "common.h"

namespace fixate {

template <typename Scalar>
void rollout_row(const Scalar* attn, const int64_t* query_pos, Scalar* out, int64_t B, int64_t L, int64_t H,
                 int64_t T, double residual) {
  const int64_t layer_stride = H * T * T;
  FIXATE_PARALLEL_FOR
  for (int64_t b = 0; b < B; ++b) {
    std::vector<double> r(T, 0.0), u(T), row(T);
    r[query_pos[b]] = 1.0;
    for (int64_t l = L - 1; l >= 0; --l) {  // deepest layer first: r ← r·Â_l
      const Scalar* A = attn + (b * L + l) * layer_stride;
      std::fill(u.begin(), u.end(), 0.0);
      for (int64_t i = 0; i < T; ++i) {
        if (r[i] == 0.0) continue;  // only rows the vector already reaches matter
        std::fill(row.begin(), row.end(), 0.0);
        for (int64_t h = 0; h < H; ++h) {
          const Scalar* Ah = A + (h * T + i) * T;
          for (int64_t j = 0; j < T; ++j) row[j] += double(Ah[j]);
        }
        double sum = 0.0;
        for (int64_t j = 0; j < T; ++j) {
          row[j] /= double(H);
          sum += row[j];
        }
        // rownorm(residual·I + (1 − residual)·A)[i, :]
        const double coef = r[i] / (residual + (1.0 - residual) * sum + kRolloutEps);
        const double off = coef * (1.0 - residual);
        for (int64_t j = 0; j < T; ++j) u[j] += off * row[j];
        u[i] += coef * residual;
      }
      r.swap(u);
    }
    for (int64_t j = 0; j < T; ++j) out[b * T + j] = Scalar(r[j]);
  }
}

namespace {
inline double stabilise(double r) {
  const double sign = (r > 0) - (r < 0);
  const double rt = r + kAttnLrpEps * sign;
  return std::fabs(rt) < kAttnLrpEps ? kAttnLrpEps : rt;
}
}  // namespace

template <typename Scalar>
void attnlrp_row(const Scalar* attn_row, const Scalar* grad_row, const int64_t* query_pos, Scalar* out, int64_t B,
                 int64_t L, int64_t H, int64_t T) {
  const double wsum = double(L) * double(L + 1) / 2.0;
  FIXATE_PARALLEL_FOR
  for (int64_t b = 0; b < B; ++b) {
    std::vector<double> acc(T, 0.0);
    for (int64_t l = 0; l < L; ++l) {
      const double w = double(l + 1) / wsum;  // deepest layer weighs most
      for (int64_t h = 0; h < H; ++h) {
        const Scalar* a = attn_row + ((b * L + l) * H + h) * T;
        const Scalar* g = grad_row + ((b * L + l) * H + h) * T;
        double r = 0.0;
        for (int64_t j = 0; j < T; ++j) r += double(a[j]) * double(g[j]);
        const double scale = w / (double(H) * stabilise(r));
        for (int64_t j = 0; j < T; ++j) acc[j] += scale * double(a[j]) * double(g[j]);
      }
    }
    acc[query_pos[b]] += 1.0;  // the identity term of R = I + Σ w_l E_l
    for (int64_t j = 0; j < T; ++j) out[b * T + j] = Scalar(acc[j]);
  }
}

template <typename Scalar>
void glimpse_row(const Scalar* attn, const Scalar* grad, const int64_t* query_pos, Scalar* out, int64_t B, int64_t L,
                 int64_t H, int64_t T) {
  const int64_t head_stride = T * T, layer_stride = H * head_stride;
  FIXATE_PARALLEL_FOR
  for (int64_t b = 0; b < B; ++b) {
    // Pass 1: per layer, head weights w_h = softmax(σ_h / τ_head) and gradient mass γ_l.
    std::vector<double> w(L * H), gamma(L), colsum(T);
    for (int64_t l = 0; l < L; ++l) {
      const Scalar* A = attn + (b * L + l) * layer_stride;
      const Scalar* G = grad + (b * L + l) * layer_stride;
      double gmass = 0.0;
      std::vector<double> hsum(T * T, 0.0);  // Σ_h ∇A, for γ (heads summed before |.|)
      double sigma_max = -1e300;
      for (int64_t h = 0; h < H; ++h) {
        double num = 0.0, den = 0.0;
        for (int64_t k = 0; k < head_stride; ++k) {
          const double g = double(G[h * head_stride + k]);
          const double x = g * double(A[h * head_stride + k]);
          if (x > 0) num += x;
          if (g > 0) den += g;
          hsum[k] += g;
        }
        w[l * H + h] = num / (den + kGlimpseEps) / kGlimpseHeadTemp;
        sigma_max = std::max(sigma_max, w[l * H + h]);
      }
      double z = 0.0;
      for (int64_t h = 0; h < H; ++h) z += (w[l * H + h] = std::exp(w[l * H + h] - sigma_max));
      for (int64_t h = 0; h < H; ++h) w[l * H + h] /= z;
      for (int64_t k = 0; k < head_stride; ++k) gmass += std::fabs(hsum[k]);
      gamma[l] = gmass;
    }
    // α_l = γ_l s_l / (Σ γ s + ε), s = softmax(τ_depth · l), l = 1..L.
    std::vector<double> alpha(L);
    double smax = kGlimpseDepthTemp * double(L), sz = 0.0, norm = 0.0;
    for (int64_t l = 0; l < L; ++l) sz += std::exp(kGlimpseDepthTemp * double(l + 1) - smax);
    for (int64_t l = 0; l < L; ++l) {
      alpha[l] = gamma[l] * std::exp(kGlimpseDepthTemp * double(l + 1) - smax) / sz;
      norm += alpha[l];
    }
    for (int64_t l = 0; l < L; ++l) alpha[l] /= (norm + kGlimpseEps);
    // Pass 2: deepest first, r ← r + α_l · r E_l with E_l rows built on the fly.
    std::vector<double> r(T, 0.0), u(T), e(T);
    r[query_pos[b]] = 1.0;
    for (int64_t l = L - 1; l >= 0; --l) {
      const Scalar* A = attn + (b * L + l) * layer_stride;
      const Scalar* G = grad + (b * L + l) * layer_stride;
      std::fill(u.begin(), u.end(), 0.0);
      for (int64_t i = 0; i < T; ++i) {
        if (r[i] == 0.0) continue;
        std::fill(e.begin(), e.end(), 0.0);
        for (int64_t h = 0; h < H; ++h) {
          const double wh = w[l * H + h];
          const Scalar* Ah = A + h * head_stride + i * T;
          const Scalar* Gh = G + h * head_stride + i * T;
          for (int64_t j = 0; j < T; ++j) {
            const double x = double(Gh[j]) * double(Ah[j]);
            if (x > 0) e[j] += wh * x;
          }
        }
        double s = 0.0;
        for (int64_t j = 0; j < T; ++j) s += e[j];
        const double coef = r[i] / (s + kGlimpseEps);
        for (int64_t j = 0; j < T; ++j) u[j] += coef * e[j];
      }
      for (int64_t j = 0; j < T; ++j) r[j] += alpha[l] * u[j];
    }
    for (int64_t j = 0; j < T; ++j) out[b * T + j] = Scalar(r[j]);
  }
}

template void rollout_row<float>(const float*, const int64_t*, float*, int64_t, int64_t, int64_t, int64_t, double);
template void rollout_row<double>(const double*, const int64_t*, double*, int64_t, int64_t, int64_t, int64_t, double);
template void attnlrp_row<float>(const float*, const float*, const int64_t*, float*, int64_t, int64_t, int64_t, int64_t);
template void attnlrp_row<double>(const double*, const double*, const int64_t*, double*, int64_t, int64_t, int64_t,
                                  int64_t);
template void glimpse_row<float>(const float*, const float*, const int64_t*, float*, int64_t, int64_t, int64_t, int64_t);
template void glimpse_row<double>(const double*, const double*, const int64_t*, double*, int64_t, int64_t, int64_t,
                                  int64_t);

}  // namespace fixate
