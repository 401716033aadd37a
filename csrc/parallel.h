// Who runs a kernel's parallel loops: OpenMP (the Python module) or the host runtime's own pool (ONNX Runtime's
// intra-op threads, for the custom ops: a second pool in the same process would fight it for the cores).
#pragma once
#include <cstdint>
#include <functional>

namespace fixate {

// Calls body(i) once for every i in [0, n), possibly on several threads, and returns when all calls have.
using ParallelFor = std::function<void(int64_t n, const std::function<void(int64_t)>& body)>;

// body(i) for i in [0, n) on `pool`, or on OpenMP's threads when `pool` is null (dynamic schedule: the items of
// the kernels here differ in cost).
template <typename Body>
void parallel_for(const ParallelFor* pool, int64_t n, const Body& body) {
  if (pool != nullptr && *pool) {
    (*pool)(n, std::function<void(int64_t)>(body));
    return;
  }
#if defined(FIXATE_RT_OPENMP)
#pragma omp parallel for schedule(dynamic, 1)
#endif
  for (int64_t i = 0; i < n; ++i) body(i);
}

}  // namespace fixate
