// The one pybind11 file: validates at the boundary, releases the GIL, calls the torch-free core.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <stdexcept>
#include <string>

#include "slot_pool.h"

namespace py = pybind11;
using FloatArray = py::array_t<float, py::array::c_style | py::array::forcecast>;

namespace {

void check_rank(const FloatArray& a, int rank, const char* name, const char* shape) {
  if (a.ndim() != rank) {
    throw std::invalid_argument(std::string(name) + " must have shape " + shape + ", got rank " +
                                std::to_string(a.ndim()));
  }
}

fixate::PoolMode parse_mode(const std::string& mode) {
  if (mode == "exclusive") return fixate::PoolMode::kExclusive;
  if (mode == "overlap") return fixate::PoolMode::kOverlap;
  if (mode == "area") return fixate::PoolMode::kArea;
  throw std::invalid_argument("mode must be one of exclusive, overlap, area; got '" + mode + "'");
}

FloatArray slot_pool(FloatArray relevance, FloatArray token_boxes, FloatArray slot_boxes, const std::string& mode) {
  check_rank(relevance, 2, "token_relevance", "[B, P]");
  check_rank(token_boxes, 2, "token_boxes", "[P, 4]");
  check_rank(slot_boxes, 3, "slot_boxes", "[B, S, 4]");
  const auto B = relevance.shape(0), P = relevance.shape(1), S = slot_boxes.shape(1);
  if (token_boxes.shape(0) != P || token_boxes.shape(1) != 4) {
    throw std::invalid_argument("token_boxes must be [P, 4] with P = " + std::to_string(P));
  }
  if (slot_boxes.shape(0) != B || slot_boxes.shape(2) != 4) {
    throw std::invalid_argument("slot_boxes must be [B, S, 4] with B = " + std::to_string(B));
  }
  const auto pool_mode = parse_mode(mode);
  FloatArray out({B, S});
  const float* r = relevance.data();
  const float* tb = token_boxes.data();
  const float* sb = slot_boxes.data();
  float* o = out.mutable_data();
  {
    py::gil_scoped_release release;
    fixate::slot_pool(r, tb, sb, o, B, P, S, pool_mode);
  }
  return out;
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "fixate-rt C++ CPU ops (torch-free core)";
  m.def("slot_pool", &slot_pool, py::arg("token_relevance"), py::arg("token_boxes"), py::arg("slot_boxes"),
        py::arg("mode") = "exclusive",
        "Pool token relevance [B,P] into slots [B,S] (rows sum to 1 over valid slots).");
#if defined(FIXATE_RT_OPENMP)
  m.attr("has_openmp") = true;
#else
  m.attr("has_openmp") = false;
#endif
}
