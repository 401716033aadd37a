// RMS normalisation over the last axis, for the exported decoders (ONNX Runtime custom op) and tests.
#pragma once
#include <cstdint>

#include "parallel.h"

namespace fixate {

// y[r, :] = x[r, :] / sqrt(mean(x[r, :]²) + eps) · scale, every row r of x [rows, D] (fp32 maths, as ONNX's
// RMSNormalization with stash_type 1 and transformers' RMSNorm). Rows run in parallel (on `pool`, nullptr: OpenMP)
// in items of about 65k elements, so a small input stays on one thread: ONNX Runtime's own kernel runs the
// decoders' per-head norms (rows of 16) about 3× slower on two threads than on one.
void rms_norm(const float* x, const float* scale, float* y, int64_t rows, int64_t D, float eps,
              const ParallelFor* pool = nullptr);

}  // namespace fixate
