// Shared helpers of the torch-free C++ core.
#pragma once
#include <cstdint>

// FIXATE_PARALLEL_FOR: few heavy rows (probe rows, B ≈ 8..64) -> dynamic schedule.
// FIXATE_PARALLEL_FOR_STATIC: many light rows (pooling, metrics over 1M rows) -> static schedule.
#if defined(FIXATE_RT_OPENMP)
#define FIXATE_PARALLEL_FOR _Pragma("omp parallel for schedule(dynamic, 1)")
#define FIXATE_PARALLEL_FOR_STATIC _Pragma("omp parallel for schedule(static)")
#else
#define FIXATE_PARALLEL_FOR
#define FIXATE_PARALLEL_FOR_STATIC
#endif

namespace fixate {
// Mirrors fixate_rt/probes/reference.py.
constexpr double kRolloutEps = 1e-12;
constexpr double kAttnLrpEps = 1e-4;
constexpr double kGlimpseEps = 1e-4;  // the reference's ε in head weights, row normalisation and α
constexpr double kGlimpseHeadTemp = 0.5;
constexpr double kGlimpseDepthTemp = 0.2;
// Mirrors fixate_rt/metrics.py.
constexpr double kMetricEps = 1e-8;
}  // namespace fixate
