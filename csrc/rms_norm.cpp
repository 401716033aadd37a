#include "rms_norm.h"

#include <algorithm>
#include <cmath>

namespace fixate {

namespace {

// One row; 8 partial sums so the squares vectorise without reassociation flags.
inline void norm_row(const float* x, const float* scale, float* y, int64_t D, float eps) {
  float part[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
  int64_t d = 0;
  for (; d + 8 <= D; d += 8)
    for (int l = 0; l < 8; ++l) part[l] += x[d + l] * x[d + l];
  float sum = ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
  for (; d < D; ++d) sum += x[d] * x[d];
  const float inv = 1.f / std::sqrt(sum / float(D) + eps);
  for (d = 0; d < D; ++d) y[d] = x[d] * inv * scale[d];
}

constexpr int64_t kChunk = int64_t(1) << 16;  // elements per parallel item; smaller inputs run on one thread

}  // namespace

void rms_norm(const float* x, const float* scale, float* y, int64_t rows, int64_t D, float eps,
              const ParallelFor* pool) {
  if (rows <= 0 || D <= 0) return;
  const int64_t per_item = std::max<int64_t>(1, kChunk / D), items = (rows + per_item - 1) / per_item;
  const auto rows_of = [&](int64_t item) {
    for (int64_t r = item * per_item; r < std::min(rows, (item + 1) * per_item); ++r)
      norm_row(x + r * D, scale, y + r * D, D, eps);
  };
  if (items == 1) return rows_of(0);
  parallel_for(pool, items, rows_of);
}

}  // namespace fixate
