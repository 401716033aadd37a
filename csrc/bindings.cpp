// The one pybind11 file: validates at the boundary (rank, sizes, dtype, index ranges), releases the GIL and
// calls the torch-free core. float32 input runs the float kernels, anything else is converted to float64.
// std::invalid_argument becomes ValueError with the message.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "causal_attention.h"
#include "metrics.h"
#include "probes.h"
#include "rollout_qk.h"
#include "slot_pool.h"

namespace py = pybind11;

namespace {

template <typename T>
using Arr = py::array_t<T, py::array::c_style | py::array::forcecast>;

[[noreturn]] void fail(const std::string& msg) { throw std::invalid_argument(msg); }

std::string shape_of(const py::array& a) {
  std::string s = "[";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(i));
  return s + "]";
}

void check_rank(const py::array& a, int rank, const char* name, const char* expected) {
  if (a.ndim() != rank) fail(std::string(name) + " must have shape " + expected + ", got " + shape_of(a));
}

bool is_float32(const py::array& a) { return a.dtype().is(py::dtype::of<float>()); }

void check_float(const py::array& a, const char* name) {
  if (a.dtype().kind() != 'f') fail(std::string(name) + " must be a float32 or float64 array, got dtype " +
                                     std::string(py::str(a.dtype())));
}

Arr<int64_t> index_vector(const py::array& idx, int64_t B, int64_t limit, const char* name) {
  Arr<int64_t> out = Arr<int64_t>::ensure(idx);
  if (!out || out.ndim() != 1 || out.shape(0) != B) fail(std::string(name) + " must be an integer vector of length " +
                                                         std::to_string(B));
  for (int64_t b = 0; b < B; ++b)
    if (out.at(b) < 0 || out.at(b) >= limit)
      fail(std::string(name) + "[" + std::to_string(b) + "] = " + std::to_string(out.at(b)) + " is outside 0.." +
           std::to_string(limit - 1));
  return out;
}

fixate::PoolMode parse_mode(const std::string& mode) {
  if (mode == "exclusive") return fixate::PoolMode::kExclusive;
  if (mode == "overlap") return fixate::PoolMode::kOverlap;
  if (mode == "area") return fixate::PoolMode::kArea;
  fail("mode must be one of exclusive, overlap, area; got '" + mode + "'");
}

// ------------------------------------------------------------------------------------------- rollout_row
template <typename T>
py::array rollout_impl(const py::array& attn_in, const Arr<int64_t>& q, int64_t B, int64_t L, int64_t H, int64_t Tn,
                       double residual) {
  Arr<T> attn = Arr<T>::ensure(attn_in);
  Arr<T> out({B, Tn});
  const T* a = attn.data();
  const int64_t* qp = q.data();
  T* o = out.mutable_data();
  {
    py::gil_scoped_release release;
    fixate::rollout_row<T>(a, qp, o, B, L, H, Tn, residual);
  }
  return out;
}

py::array rollout_row(const py::array& attn, const py::array& query_pos, double residual) {
  check_float(attn, "attn");
  if (attn.ndim() != 4 && attn.ndim() != 5) fail("attn must be [B, L, T, T] or [B, L, H, T, T], got " + shape_of(attn));
  const bool heads = attn.ndim() == 5;
  const int64_t B = attn.shape(0), L = attn.shape(1), H = heads ? attn.shape(2) : 1;
  const int64_t T = attn.shape(attn.ndim() - 1);
  if (attn.shape(attn.ndim() - 2) != T) fail("attn must be square in its last two dimensions, got " + shape_of(attn));
  if (residual < 0.0 || residual > 1.0) fail("residual must be in [0, 1], got " + std::to_string(residual));
  auto q = index_vector(query_pos, B, T, "query_pos");
  return is_float32(attn) ? rollout_impl<float>(attn, q, B, L, H, T, residual)
                          : rollout_impl<double>(attn, q, B, L, H, T, residual);
}

// ---------------------------------------------------------------------------------------- rollout_row_qk
// Storage: the numpy element type; Kernel: what the core reads (bf16 travels as uint16 bit patterns).
template <typename Storage, typename Kernel = Storage>
py::array rollout_qk_impl(const py::array& q_in, const py::array& k_in, const py::object& key_ok_in,
                          const py::object& lse_in, const Arr<int64_t>& pos, int64_t B, int64_t L, int64_t Hq,
                          int64_t Hkv, int64_t Tn, int64_t D, double scale, double residual) {
  auto q = Arr<Storage>::ensure(q_in);
  auto k = Arr<Storage>::ensure(k_in);
  Arr<uint8_t> ok;
  Arr<float> lse;
  if (!key_ok_in.is_none()) {
    ok = Arr<uint8_t>::ensure(key_ok_in);
    if (!ok || ok.ndim() != 2 || ok.shape(0) != B || ok.shape(1) != Tn)
      fail("attention_mask must be [B, T] = [" + std::to_string(B) + ", " + std::to_string(Tn) + "]");
  }
  if (!lse_in.is_none()) {
    lse = Arr<float>::ensure(lse_in);
    if (!lse || lse.ndim() != 4 || lse.shape(0) != B || lse.shape(1) != L || lse.shape(2) != Hq || lse.shape(3) != Tn)
      fail("lse must be [B, L, Hq, T] = [" + std::to_string(B) + ", " + std::to_string(L) + ", " +
           std::to_string(Hq) + ", " + std::to_string(Tn) + "]");
  }
  Arr<float> out({B, Tn});
  const Kernel* qp = reinterpret_cast<const Kernel*>(q.data());
  const Kernel* kp = reinterpret_cast<const Kernel*>(k.data());
  const uint8_t* okp = key_ok_in.is_none() ? nullptr : ok.data();
  const float* lp = lse_in.is_none() ? nullptr : lse.data();
  float* o = out.mutable_data();
  {
    py::gil_scoped_release release;
    fixate::rollout_row_qk<Kernel>(qp, kp, okp, lp, pos.data(), o, B, L, Hq, Hkv, Tn, D, scale, residual);
  }
  return out;
}

py::array rollout_row_qk(const py::array& q, const py::array& k, const py::array& query_pos,
                         const py::object& attention_mask, const py::object& lse, double scale, double residual,
                         bool bf16) {
  check_rank(q, 5, "q", "[B, L, Hq, T, D]");
  check_rank(k, 5, "k", "[B, L, Hkv, T, D]");
  const int64_t B = q.shape(0), L = q.shape(1), Hq = q.shape(2), Tn = q.shape(3), D = q.shape(4);
  const int64_t Hkv = k.shape(2);
  if (k.shape(0) != B || k.shape(1) != L || k.shape(3) != Tn || k.shape(4) != D || Hkv < 1 || Hq % Hkv != 0)
    fail("k must be [B, L, Hkv, T, D] with Hq a multiple of Hkv; q is " + shape_of(q) + ", k is " + shape_of(k));
  if (!q.dtype().is(k.dtype())) fail("q and k must have the same dtype");
  if (residual < 0.0 || residual > 1.0) fail("residual must be in [0, 1], got " + std::to_string(residual));
  if (!(scale > 0.0)) fail("scale must be > 0");
  auto pos = index_vector(query_pos, B, Tn, "query_pos");
  if (bf16) {  // raw bfloat16 bit patterns (numpy has no bfloat16): uint16 arrays
    if (!q.dtype().is(py::dtype::of<uint16_t>())) fail("bf16 q/k must come as uint16 arrays of the raw bit patterns");
    static_assert(sizeof(fixate::BF16) == sizeof(uint16_t), "BF16 is a 16-bit pattern");
    return rollout_qk_impl<uint16_t, fixate::BF16>(q, k, attention_mask, lse, pos, B, L, Hq, Hkv, Tn, D, scale,
                                                   residual);
  }
  check_float(q, "q");
  return is_float32(q) ? rollout_qk_impl<float>(q, k, attention_mask, lse, pos, B, L, Hq, Hkv, Tn, D, scale, residual)
                       : rollout_qk_impl<double>(q, k, attention_mask, lse, pos, B, L, Hq, Hkv, Tn, D, scale, residual);
}

// ------------------------------------------------------------------------------------------- causal_attention
py::object causal_attention(const py::array& q_in, const py::array& k_in, const py::array& v_in,
                            const py::object& key_ok_in, double scale, bool return_lse) {
  check_rank(q_in, 4, "q", "[B, Hq, T, D]");
  check_rank(k_in, 4, "k", "[B, Hkv, T, D]");
  check_rank(v_in, 4, "v", "[B, Hkv, T, D]");
  auto q = Arr<float>::ensure(q_in), k = Arr<float>::ensure(k_in), v = Arr<float>::ensure(v_in);
  const int64_t B = q.shape(0), Hq = q.shape(1), Tn = q.shape(2), D = q.shape(3), Hkv = k.shape(1);
  for (const auto* a : {&k, &v})
    if (a->shape(0) != B || a->shape(1) != Hkv || a->shape(2) != Tn || a->shape(3) != D)
      fail("k and v must be [B, Hkv, T, D] with q [B, Hq, T, D]; q is " + shape_of(q_in) + ", k is " +
           shape_of(k_in) + ", v is " + shape_of(v_in));
  if (Hkv < 1 || Hq % Hkv != 0) fail("Hq must be a multiple of Hkv; q is " + shape_of(q_in) + ", k is " + shape_of(k_in));
  if (!(scale > 0.0)) fail("scale must be > 0");
  Arr<int64_t> ok;
  if (!key_ok_in.is_none()) {
    ok = Arr<int64_t>::ensure(key_ok_in);
    if (!ok || ok.ndim() != 2 || ok.shape(0) != B || ok.shape(1) != Tn)
      fail("attention_mask must be [B, T] = [" + std::to_string(B) + ", " + std::to_string(Tn) + "]");
  }
  Arr<float> out({B, Hq, Tn, D});
  Arr<float> lse(return_lse ? std::vector<int64_t>{B, Hq, Tn} : std::vector<int64_t>{0});
  const int64_t* okp = key_ok_in.is_none() ? nullptr : ok.data();
  float* o = out.mutable_data();
  float* lp = return_lse ? lse.mutable_data() : nullptr;
  {
    py::gil_scoped_release release;
    fixate::causal_attention(q.data(), k.data(), v.data(), okp, o, lp, B, Hq, Hkv, Tn, D, float(scale));
  }
  if (return_lse) return py::make_tuple(out, lse);
  return out;
}

// --------------------------------------------------------------------------------------- AttnLRP / GLIMPSE
template <typename T, bool Rows>
py::array attribution_impl(const py::array& a_in, const py::array& g_in, const Arr<int64_t>& q, int64_t B, int64_t L,
                           int64_t H, int64_t Tn) {
  Arr<T> a = Arr<T>::ensure(a_in), g = Arr<T>::ensure(g_in);
  Arr<T> out({B, Tn});
  const T* ap = a.data();
  const T* gp = g.data();
  const int64_t* qp = q.data();
  T* o = out.mutable_data();
  {
    py::gil_scoped_release release;
    if constexpr (Rows) fixate::attnlrp_row<T>(ap, gp, qp, o, B, L, H, Tn);
    else fixate::glimpse_row<T>(ap, gp, qp, o, B, L, H, Tn);
  }
  return out;
}

template <bool Rows>
py::array attribution(const py::array& attn, const py::array& grad, const py::array& query_pos) {
  check_float(attn, "attn");
  check_float(grad, "grad");
  const int rank = Rows ? 4 : 5;
  check_rank(attn, rank, "attn", Rows ? "[B, L, H, T]" : "[B, L, H, T, T]");
  if (shape_of(attn) != shape_of(grad)) fail("grad must have the shape of attn " + shape_of(attn) + ", got " +
                                             shape_of(grad));
  const int64_t B = attn.shape(0), L = attn.shape(1), H = attn.shape(2), T = attn.shape(3);
  if (!Rows && attn.shape(4) != T) fail("attn must be square in its last two dimensions, got " + shape_of(attn));
  auto q = index_vector(query_pos, B, T, "query_pos");
  const bool f32 = is_float32(attn) && is_float32(grad);
  return f32 ? attribution_impl<float, Rows>(attn, grad, q, B, L, H, T)
             : attribution_impl<double, Rows>(attn, grad, q, B, L, H, T);
}

// --------------------------------------------------------------------------------------------- slot_pool
template <typename T>
py::array pool_impl(const py::array& rel_in, const Arr<float>& tb, const Arr<float>& sb, int64_t B, int64_t P,
                    int64_t S, fixate::PoolMode mode) {
  Arr<T> rel = Arr<T>::ensure(rel_in);
  Arr<T> out({B, S});
  const T* r = rel.data();
  T* o = out.mutable_data();
  {
    py::gil_scoped_release release;
    fixate::slot_pool<T>(r, tb.data(), sb.data(), o, B, P, S, mode);
  }
  return out;
}

py::array slot_pool(const py::array& relevance, const py::array& token_boxes_in, const py::array& slot_boxes_in,
                    const std::string& mode) {
  check_float(relevance, "token_relevance");
  check_rank(relevance, 2, "token_relevance", "[B, P]");
  Arr<float> token_boxes = Arr<float>::ensure(token_boxes_in), slot_boxes = Arr<float>::ensure(slot_boxes_in);
  if (!token_boxes || !slot_boxes) fail("token_boxes and slot_boxes must be numeric arrays");
  check_rank(token_boxes, 2, "token_boxes", "[P, 4]");
  check_rank(slot_boxes, 3, "slot_boxes", "[B, S, 4]");
  const int64_t B = relevance.shape(0), P = relevance.shape(1), S = slot_boxes.shape(1);
  if (token_boxes.shape(0) != P || token_boxes.shape(1) != 4)
    fail("token_boxes must be [P, 4] with P = " + std::to_string(P) + ", got " + shape_of(token_boxes));
  if (slot_boxes.shape(0) != B || slot_boxes.shape(2) != 4)
    fail("slot_boxes must be [B, S, 4] with B = " + std::to_string(B) + ", got " + shape_of(slot_boxes));
  const auto pool_mode = parse_mode(mode);
  return is_float32(relevance) ? pool_impl<float>(relevance, token_boxes, slot_boxes, B, P, S, pool_mode)
                               : pool_impl<double>(relevance, token_boxes, slot_boxes, B, P, S, pool_mode);
}

// --------------------------------------------------------------------------------------------- metrics
template <typename T>
py::array metrics_impl(const py::array& a_in, const py::array& g_in, const py::array& p_in, const Arr<int64_t>& c,
                       const Arr<int64_t>& n, int64_t R, int64_t S, fixate::TieRule rule, int topk_js_k) {
  Arr<T> a = Arr<T>::ensure(a_in), g = Arr<T>::ensure(g_in), p = Arr<T>::ensure(p_in);
  Arr<double> out({R, int64_t(fixate::kNumMetrics)});
  const T *ap = a.data(), *gp = g.data(), *pp = p.data();
  const int64_t *cp = c.data(), *np_ = n.data();
  double* o = out.mutable_data();
  {
    py::gil_scoped_release release;
    fixate::batch_metrics<T>(ap, gp, pp, cp, np_, o, R, S, rule, topk_js_k);
  }
  return out;
}

py::array batch_metrics(const py::array& relevance, const py::array& gaze, const py::array& p_click,
                        const py::array& clicked, const py::array& n_cand, const std::string& tie_rule,
                        int topk_js_k) {
  fixate::TieRule rule;
  if (tie_rule == "average") rule = fixate::TieRule::kAverage;
  else if (tie_rule == "lower-index") rule = fixate::TieRule::kLowerIndex;
  else if (tie_rule == "reference") rule = fixate::TieRule::kReference;
  else fail("tie_rule must be average, lower-index or reference; got '" + tie_rule + "'");
  if (topk_js_k < 1 || topk_js_k > 64) fail("topk_js_k must be in 1..64; got " + std::to_string(topk_js_k));
  for (auto* pair : {&relevance, &gaze, &p_click}) check_float(*pair, "relevance, gaze and p_click");
  check_rank(relevance, 2, "relevance", "[R, S]");
  if (shape_of(gaze) != shape_of(relevance) || shape_of(p_click) != shape_of(relevance))
    fail("relevance, gaze and p_click must share one shape [R, S]; got " + shape_of(relevance) + ", " +
         shape_of(gaze) + ", " + shape_of(p_click));
  const int64_t R = relevance.shape(0), S = relevance.shape(1);
  auto n = index_vector(n_cand, R, S + 1, "n_cand");
  for (int64_t r = 0; r < R; ++r)
    if (n.at(r) < 1) fail("n_cand[" + std::to_string(r) + "] must be at least 1");
  Arr<int64_t> c = Arr<int64_t>::ensure(clicked);
  if (!c || c.ndim() != 1 || c.shape(0) != R) fail("clicked must be an integer vector of length " + std::to_string(R));
  for (int64_t r = 0; r < R; ++r)
    if (c.at(r) < 0 || c.at(r) >= n.at(r))
      fail("clicked[" + std::to_string(r) + "] = " + std::to_string(c.at(r)) + " is outside 0.." +
           std::to_string(n.at(r) - 1) + " (n_cand)");
  const bool f32 = is_float32(relevance) && is_float32(gaze) && is_float32(p_click);
  return f32 ? metrics_impl<float>(relevance, gaze, p_click, c, n, R, S, rule, topk_js_k)
             : metrics_impl<double>(relevance, gaze, p_click, c, n, R, S, rule, topk_js_k);
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "fixate-rt C++ CPU ops (torch-free core; OpenMP over rows when available)";
  m.def("rollout_row", &rollout_row, py::arg("attn"), py::arg("query_pos"), py::arg("residual") = 0.5,
        "Rollout row [B, T] from head-averaged attn [B, L, T, T] or per-head attn [B, L, H, T, T].");
  m.def("rollout_qk_variant", &fixate::rollout_qk_variant,
        "the compiled variant rollout_row_qk runs on this CPU: 'avx2+fma' or 'portable'");
  m.def("rollout_row_qk", &rollout_row_qk, py::arg("q"), py::arg("k"), py::arg("query_pos"),
        py::arg("attention_mask") = py::none(), py::arg("lse") = py::none(), py::arg("scale") = 0.0,
        py::arg("residual") = 0.5, py::arg("bf16") = false,
        "Rollout row [B, T] fp32 from post-RoPE q [B, L, Hq, T, D] and k [B, L, Hkv, T, D]; no T x T attention.");
  m.def("causal_attention", &causal_attention, py::arg("q"), py::arg("k"), py::arg("v"),
        py::arg("attention_mask") = py::none(), py::arg("scale"), py::arg("return_lse") = false,
        "Causal attention out [B, Hq, T, D] fp32 from q [B, Hq, T, D], k and v [B, Hkv, T, D] and a key mask [B, T] "
        "(with return_lse: (out, log-sum-exp [B, Hq, T])); O(T) scratch, padded queries get zeros (lse 0). The "
        "kernel of the exported decoders' ONNX Runtime op and of the CPU probe's padded batches.");
  m.def("causal_attention_variant", &fixate::causal_attention_variant,
        "the compiled variant causal_attention runs on this CPU: 'avx2+fma' or 'portable'");
  m.def("attnlrp_row", &attribution<true>, py::arg("attn_row"), py::arg("grad_row"), py::arg("query_pos"),
        "FixATE AttnLRP row [B, T] from answer rows of A and dA, each [B, L, H, T].");
  m.def("glimpse_row", &attribution<false>, py::arg("attn"), py::arg("grad"), py::arg("query_pos"),
        "FixATE GLIMPSE row [B, T] from per-head A and dA, each [B, L, H, T, T].");
  m.def("slot_pool", &slot_pool, py::arg("token_relevance"), py::arg("token_boxes"), py::arg("slot_boxes"),
        py::arg("mode") = "exclusive", "Pool token relevance [B, P] into slots [B, S] (rows sum to 1).");
  m.def("batch_metrics", &batch_metrics, py::arg("relevance"), py::arg("gaze"), py::arg("p_click"),
        py::arg("clicked"), py::arg("n_cand"), py::arg("tie_rule") = "average", py::arg("topk_js_k") = 5,
        "Per-row metrics [R, 16] in fixate_rt.metrics.METRIC_NAMES order (tie_rule: average, lower-index or "
        "reference).");
#if defined(FIXATE_RT_OPENMP)
  m.attr("has_openmp") = true;
#else
  m.attr("has_openmp") = false;
#endif
}
