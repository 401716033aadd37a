// Batched per-row alignment and click metrics (mirrors fixate_rt/metrics.py, same tie rules).
#pragma once
#include <cstdint>

namespace fixate {

// Output columns, in fixate_rt.metrics.METRIC_NAMES order.
constexpr int kNumMetrics = 16;

// fixate_rt.config.TieRule: expected value under random tie-breaking, lower index first, higher index first.
enum class TieRule : int { kAverage = 0, kLowerIndex = 1, kReference = 2 };

// relevance a, gaze target g, click probabilities pi: [R, S]; clicked [R]; n_cand [R] (1..S): only the first
// n_cand[r] slots of row r are used; topk_js_k: q's top-k for top-k JS. out [R, 16] (double).
template <typename Scalar>
void batch_metrics(const Scalar* a, const Scalar* g, const Scalar* pi, const int64_t* clicked, const int64_t* n_cand,
                   double* out, int64_t R, int64_t S, TieRule tie_rule, int topk_js_k);

}  // namespace fixate
