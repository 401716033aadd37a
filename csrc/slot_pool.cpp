#include "slot_pool.h"

#include <algorithm>
#include <vector>

#include "common.h"

namespace fixate {
namespace {

// Mass below this is treated as "the probe saw nothing here": the row falls back to uniform.
constexpr double kMinMass = 1e-9;

inline bool valid_box(const float* b) { return b[2] > b[0] && b[3] > b[1]; }

inline bool holds_centre(const float* box, double cx, double cy) {
  // Half-open on the far edges so that a centre on a shared border belongs to one box only.
  return box[0] <= cx && cx < box[2] && box[1] <= cy && cy < box[3];
}

inline double overlap_fraction(const float* tok, const float* box) {
  const double w = std::min<double>(tok[2], box[2]) - std::max<double>(tok[0], box[0]);
  const double h = std::min<double>(tok[3], box[3]) - std::max<double>(tok[1], box[1]);
  const double area = (double(tok[2]) - tok[0]) * (double(tok[3]) - tok[1]);
  if (w <= 0.0 || h <= 0.0 || area <= 0.0) return 0.0;
  return (w * h) / area;
}

template <typename Scalar>
void pool_row(const Scalar* rel, const float* token_boxes, const float* boxes, Scalar* out, int64_t P,
              int64_t S, PoolMode mode) {
  std::vector<double> score(S, 0.0);
  for (int64_t p = 0; p < P; ++p) {
    const float* tok = token_boxes + 4 * p;
    const double r = rel[p];
    const double cx = 0.5 * (double(tok[0]) + tok[2]);
    const double cy = 0.5 * (double(tok[1]) + tok[3]);
    for (int64_t s = 0; s < S; ++s) {
      const float* box = boxes + 4 * s;
      if (!valid_box(box)) continue;
      if (mode == PoolMode::kArea) {
        score[s] += r * overlap_fraction(tok, box);
      } else if (holds_centre(box, cx, cy)) {
        score[s] += r;
        if (mode == PoolMode::kExclusive) break;  // first match in slot order wins
      }
    }
  }
  double total = 0.0;
  int64_t n_valid = 0;
  for (int64_t s = 0; s < S; ++s) {
    if (valid_box(boxes + 4 * s)) {
      total += score[s];
      ++n_valid;
    }
  }
  for (int64_t s = 0; s < S; ++s) {
    if (!valid_box(boxes + 4 * s)) {
      out[s] = Scalar(0);
    } else if (total > kMinMass) {
      out[s] = Scalar(score[s] / total);
    } else {
      out[s] = Scalar(1.0 / double(n_valid));
    }
  }
}

}  // namespace

template <typename Scalar>
void slot_pool(const Scalar* relevance, const float* token_boxes, const float* slot_boxes, Scalar* out,
               int64_t B, int64_t P, int64_t S, PoolMode mode) {
  FIXATE_PARALLEL_FOR_STATIC
  for (int64_t b = 0; b < B; ++b) {
    pool_row(relevance + b * P, token_boxes, slot_boxes + b * S * 4, out + b * S, P, S, mode);
  }
}

template void slot_pool<float>(const float*, const float*, const float*, float*, int64_t, int64_t, int64_t, PoolMode);
template void slot_pool<double>(const double*, const float*, const float*, double*, int64_t, int64_t, int64_t,
                                PoolMode);

}  // namespace fixate
