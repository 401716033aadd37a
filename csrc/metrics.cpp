#include "metrics.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "common.h"

namespace fixate {
namespace {

constexpr double kEps = kMetricEps;
constexpr int kMaxTopkJs = 64;
constexpr double kNssMinStd = 1e-12;  // metrics.NSS_MIN_STD

// x / Σx, or uniform when Σx < ε (metrics.normalise).
void normalise(const std::vector<double>& x, std::vector<double>& y) {
  double s = 0.0;
  for (double v : x) s += v;
  y.resize(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = s < kEps ? 1.0 / double(x.size()) : x[i] / s;
}

// Descending, ties to the lower index (or the higher one with higher_first): an insertion sort (rows are
// short, typically ≤ 20 slots).
void rank(const std::vector<double>& x, std::vector<int>& idx, bool higher_first) {
  const int n = int(x.size());
  idx.resize(n);
  for (int i = 0; i < n; ++i) {
    int j = i;
    // strict: equal values keep their lower-index-first order; with higher_first, equals move ahead too
    while (j > 0 && (x[idx[j - 1]] < x[i] || (higher_first && x[idx[j - 1]] == x[i]))) {
      idx[j] = idx[j - 1];
      --j;
    }
    idx[j] = i;
  }
}

// P(slot i is in the top-k) under the rule: 0/1 from the ranking, or clip((k − above)/(ties + 1), 0, 1).
void inclusion(const std::vector<double>& x, const std::vector<int>& ranked, int64_t k, TieRule rule,
               std::vector<double>& out) {
  const int64_t n = int64_t(x.size());
  out.assign(n, 0.0);
  if (rule != TieRule::kAverage) {
    for (int64_t i = 0; i < std::min(k, n); ++i) out[ranked[i]] = 1.0;
    return;
  }
  for (int64_t i = 0; i < n; ++i) {
    int64_t above = 0, tied = 0;
    for (int64_t j = 0; j < n; ++j) {
      above += x[j] > x[i];
      tied += (j != i) && x[j] == x[i];
    }
    out[i] = std::clamp(double(k - above) / double(tied + 1), 0.0, 1.0);
  }
}

// Jensen–Shannon divergence of the sum-normalised inputs, natural log, 0·log 0 = 0 (no allocation).
double js(const double* q_in, const double* p_in, int64_t n) {
  double sq = 0.0, sp = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    sq += q_in[i];
    sp += p_in[i];
  }
  double v = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const double qi = q_in[i] / sq, pi = p_in[i] / sp, m = 0.5 * (qi + pi);
    if (qi > 0) v += 0.5 * qi * std::log(qi / m);
    if (pi > 0) v += 0.5 * pi * std::log(pi / m);
  }
  return std::isnan(v) ? 1.0 : std::max(v, 0.0);
}

}  // namespace

template <typename Scalar>
void batch_metrics(const Scalar* a_ptr, const Scalar* g_ptr, const Scalar* pi_ptr, const int64_t* clicked,
                   const int64_t* n_cand, double* out, int64_t R, int64_t S, TieRule tie_rule, int topk_js_k) {
  const bool higher_first = tie_rule == TieRule::kReference;
#if defined(FIXATE_RT_OPENMP)
#pragma omp parallel
#endif
  {
  // Per-thread scratch, reused for every row (no allocation inside the row loop once warmed up).
  std::vector<double> a, g, pi, p, q, pin, in_p, in_q, in_pi;
  std::vector<int> rp, rq, rpi;
#if defined(FIXATE_RT_OPENMP)
#pragma omp for schedule(static)
#endif
  for (int64_t r = 0; r < R; ++r) {
    const int64_t n = n_cand[r];
    const int64_t c = clicked[r];
    a.resize(n);
    g.resize(n);
    pi.resize(n);
    for (int64_t k = 0; k < n; ++k) {
      a[k] = double(a_ptr[r * S + k]);
      g[k] = double(g_ptr[r * S + k]);
      pi[k] = double(pi_ptr[r * S + k]);
    }
    normalise(a, p);
    normalise(g, q);
    normalise(pi, pin);
    rank(p, rp, higher_first);
    rank(q, rq, higher_first);
    rank(pi, rpi, higher_first);
    double* o = out + r * kNumMetrics;
    // kl, js, cosine
    double kl = 0.0, dot = 0.0, nq = 0.0, np_ = 0.0;
    for (int64_t k = 0; k < n; ++k) {
      kl += q[k] * std::log((q[k] + kEps) / (p[k] + kEps));
      dot += q[k] * p[k];
      nq += q[k] * q[k];
      np_ += p[k] * p[k];
    }
    o[0] = kl;
    o[1] = js(q.data(), p.data(), n);
    o[2] = dot / (std::sqrt(nq) * std::sqrt(np_) + kEps);
    // csh@1,3,5 and tgo@1,3,5
    const int ks[3] = {1, 3, 5};
    for (int t = 0; t < 3; ++t) {
      const int64_t k = std::min<int64_t>(ks[t], n);
      inclusion(p, rp, k, tie_rule, in_p);
      inclusion(q, rq, k, tie_rule, in_q);
      o[3 + t] = in_p[c];
      double overlap = 0.0;  // E|top-k(p) ∩ top-k(q)| = Σ_i P(i ∈ top-k(p)) P(i ∈ top-k(q)) (independent ties)
      for (int64_t i = 0; i < n; ++i) overlap += in_p[i] * in_q[i];
      o[6 + t] = overlap / double(k);
    }
    // topk_js over the top-k slots of q (deterministic order) plus a "rest" bin
    {
      const int64_t k = std::min<int64_t>(std::min(topk_js_k, kMaxTopkJs), n);
      double qa[kMaxTopkJs + 1], pa[kMaxTopkJs + 1];
      double sq = 0.0, sp = 0.0;
      for (int64_t i = 0; i < k; ++i) {
        qa[i] = q[rq[i]];
        pa[i] = p[rq[i]];
        sq += qa[i];
        sp += pa[i];
      }
      qa[k] = std::max(0.0, 1.0 - sq);
      pa[k] = std::max(0.0, 1.0 - sp);
      double tq = 0.0, tp = 0.0;
      for (int64_t i = 0; i <= k; ++i) {
        tq += qa[i];
        tp += pa[i];
      }
      o[9] = (tq <= 0 || tp <= 0) ? 1.0 : js(qa, pa, k + 1);
    }
    // cc, sim, nss
    double mq = 0.0, mp = 0.0;
    for (int64_t k = 0; k < n; ++k) {
      mq += q[k];
      mp += p[k];
    }
    mq /= double(n);
    mp /= double(n);
    double sqq = 0.0, spp = 0.0, sqp = 0.0, sim = 0.0;
    for (int64_t k = 0; k < n; ++k) {
      sqq += (q[k] - mq) * (q[k] - mq);
      spp += (p[k] - mp) * (p[k] - mp);
      sqp += (q[k] - mq) * (p[k] - mp);
      sim += std::min(q[k], p[k]);
    }
    const double denom = std::sqrt(sqq * spp);
    o[10] = denom > 0 ? sqp / denom : 0.0;
    o[11] = sim;
    const double sd = n > 1 ? std::sqrt(spp / double(n - 1)) : 0.0;
    double nss = 0.0;
    if (sd > kNssMinStd)
      for (int64_t k = 0; k < n; ++k) nss += q[k] * (p[k] - mp) / sd;
    o[12] = nss;
    // logloss, auc, correct (over the click probabilities)
    o[13] = -std::log(std::max(pin[c], kEps));
    if (n < 2) {
      o[14] = std::numeric_limits<double>::quiet_NaN();
    } else {
      double below = 0.0, tied = 0.0;
      for (int64_t k = 0; k < n; ++k) {
        if (k == c) continue;
        below += pi[k] < pi[c];
        tied += pi[k] == pi[c];
      }
      o[14] = (below + 0.5 * tied) / double(n - 1);
    }
    inclusion(pi, rpi, 1, tie_rule, in_pi);
    o[15] = in_pi[c];
  }
  }
}

template void batch_metrics<float>(const float*, const float*, const float*, const int64_t*, const int64_t*, double*,
                                   int64_t, int64_t, TieRule, int);
template void batch_metrics<double>(const double*, const double*, const double*, const int64_t*, const int64_t*,
                                    double*, int64_t, int64_t, TieRule, int);

}  // namespace fixate
