// Torch-free slot pooling: image-token relevance -> per-slot relevance.
// Raw pointers + sizes so the same core can serve torch, numpy and ONNX Runtime callers.
#pragma once
#include <cstdint>

namespace fixate {

enum class PoolMode : int { kExclusive = 0, kOverlap = 1, kArea = 2 };

// relevance   [B, P]    float or double, token relevance in sequence order (already non-negative)
// token_boxes [P, 4]    float, pixel rectangle [x0, y0, x1, y1] of every image token
// slot_boxes  [B, S, 4] float, slot rectangles; a degenerate box (x1 <= x0 or y1 <= y0) is padding
// out         [B, S]    float, each row sums to 1 over the valid slots (uniform when the mass is ~0)
template <typename Scalar>
void slot_pool(const Scalar* relevance, const float* token_boxes, const float* slot_boxes, Scalar* out,
               int64_t B, int64_t P, int64_t S, PoolMode mode);

}  // namespace fixate
