// libfixate_ort_ops: ONNX Runtime custom ops of fixate-rt, loaded with SessionOptions.register_custom_ops_library.
//
// fixate_rt.CausalAttention(Q [B, Hq, T, D], K [B, Hkv, T, D], V [B, Hkv, T, D], attention_mask [B, T] int64)
//   -> Y [B, Hq, T, D], LSE [B, Hq, T] (log-sum-exp of each query's scaled real scores, 0 for a query with no real
//   key), attribute `scale` (float). The rollout row of a probed layer reads LSE instead of recomputing it.
// It stands in for the opset-23 `Attention` nodes of an exported decoder whose mask is "causal and real key"
// (fixate_rt.backends.ort_attention rewrites the graph when the session is created): ONNX Runtime's own CPU
// kernels for causal attention build the T × T scores per head and run 2–3.5× slower than PyTorch's SDPA.
//
// fixate_rt.RMSNorm(X [..., D], scale [D]) -> Y [..., D], attribute `epsilon` (float): ONNX's RMSNormalization over
// the last axis (fp32 maths). It stands in for those nodes of the same decoders: ONNX Runtime's kernel runs the
// per-head query/key norms (rows of 16) about 3× slower on two threads than on one.
#include <cstdlib>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "causal_attention.h"
#include "ort_abi.h"
#include "rms_norm.h"

namespace {

using namespace fixate::ort;

constexpr const char* kDomain = "fixate_rt";

// Throws with ONNX Runtime's message when a call fails; ONNX Runtime turns the exception into the Run's error.
void check(const OrtApi* api, OrtStatus* status) {
  if (status == nullptr) return;
  const std::string msg = slot<GetErrorMessageFn>(api, kGetErrorMessage)(status);
  slot<ReleaseStatusFn>(api, kReleaseStatus)(status);
  throw std::runtime_error("fixate_rt: " + msg);
}

// A tensor input or output: its element type, shape and data.
struct Tensor {
  int type = 0;
  std::vector<int64_t> shape;
  void* data = nullptr;
};

Tensor describe(const OrtApi* api, const OrtValue* value) {
  Tensor t;
  OrtTensorTypeAndShapeInfo* info = nullptr;
  check(api, slot<GetTensorTypeAndShapeFn>(api, kGetTensorTypeAndShape)(value, &info));
  size_t rank = 0;
  OrtStatus* status = slot<GetTensorElementTypeFn>(api, kGetTensorElementType)(info, &t.type);
  if (status == nullptr) status = slot<GetDimensionsCountFn>(api, kGetDimensionsCount)(info, &rank);
  if (status == nullptr) {
    t.shape.resize(rank);
    status = slot<GetDimensionsFn>(api, kGetDimensions)(info, t.shape.data(), rank);
  }
  slot<ReleaseTensorTypeAndShapeInfoFn>(api, kReleaseTensorTypeAndShapeInfo)(info);
  check(api, status);
  check(api, slot<GetTensorMutableDataFn>(api, kGetTensorMutableData)(const_cast<OrtValue*>(value), &t.data));
  return t;
}

// ONNX Runtime's table with KernelContext_ParallelFor (API version 18), or nullptr: then the kernels run on OpenMP.
// Running them on the session's own intra-op pool keeps one pool in the process: OpenMP's threads, spinning after
// each kernel, took the cores ONNX Runtime's next nodes wanted (tiny decoder: about 15 ms of 45 per batch).
// FIXATE_RT_ORT_OPS_THREADS=openmp keeps OpenMP (for A/B measurements).
const OrtApi* g_pool_api = nullptr;

void run_body(void* body, size_t i) { (*static_cast<const std::function<void(int64_t)>*>(body))(int64_t(i)); }

// The session's intra-op pool as a fixate::ParallelFor (empty without it: OpenMP).
fixate::ParallelFor session_pool(OrtKernelContext* context) {
  if (g_pool_api == nullptr) return {};
  return [context](int64_t n, const std::function<void(int64_t)>& body) {
    const auto parallel_for = slot<KernelContextParallelForFn>(g_pool_api, kKernelContextParallelFor);
    check(g_pool_api, parallel_for(context, run_body, size_t(n), 0, const_cast<std::function<void(int64_t)>*>(&body)));
  };
}

// A kernel's state: the API table and its one float attribute (CausalAttention's scale, RMSNorm's epsilon).
struct Kernel {
  const OrtApi* api;
  float attribute;
};

Tensor input(const OrtApi* api, OrtKernelContext* context, size_t index) {
  const OrtValue* value = nullptr;
  check(api, slot<KernelContextGetInputFn>(api, kKernelContextGetInput)(context, index, &value));
  return describe(api, value);
}

Tensor output(const OrtApi* api, OrtKernelContext* context, size_t index, const std::vector<int64_t>& shape) {
  OrtValue* value = nullptr;
  check(api, slot<KernelContextGetOutputFn>(api, kKernelContextGetOutput)(context, index, shape.data(), shape.size(),
                                                                          &value));
  return describe(api, value);
}

std::string dims(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

void causal_attention(void* state, OrtKernelContext* context) {
  const Kernel& kernel = *static_cast<Kernel*>(state);
  const OrtApi* api = kernel.api;
  const Tensor q = input(api, context, 0), k = input(api, context, 1), v = input(api, context, 2),
               mask = input(api, context, 3);
  if (q.shape.size() != 4 || k.shape != v.shape || k.shape.size() != 4 || mask.shape.size() != 2 ||
      k.shape[0] != q.shape[0] || k.shape[2] != q.shape[2] || k.shape[3] != q.shape[3] || k.shape[1] < 1 ||
      q.shape[1] % k.shape[1] != 0 || mask.shape[0] != q.shape[0] || mask.shape[1] != q.shape[2])
    throw std::runtime_error("fixate_rt.CausalAttention: expected Q [B, Hq, T, D], K and V [B, Hkv, T, D] and "
                             "attention_mask [B, T]; got Q " + dims(q.shape) + ", K " + dims(k.shape) + ", V " +
                             dims(v.shape) + ", attention_mask " + dims(mask.shape));
  const Tensor out = output(api, context, 0, q.shape);
  const Tensor lse = output(api, context, 1, {q.shape[0], q.shape[1], q.shape[2]});
  const fixate::ParallelFor pool = session_pool(context);
  fixate::causal_attention(static_cast<const float*>(q.data), static_cast<const float*>(k.data),
                           static_cast<const float*>(v.data), static_cast<const int64_t*>(mask.data),
                           static_cast<float*>(out.data), static_cast<float*>(lse.data), q.shape[0], q.shape[1],
                           k.shape[1], q.shape[2], q.shape[3], kernel.attribute, &pool);
}

void rms_norm(void* state, OrtKernelContext* context) {
  const Kernel& kernel = *static_cast<Kernel*>(state);
  const OrtApi* api = kernel.api;
  const Tensor x = input(api, context, 0), scale = input(api, context, 1);
  if (x.shape.empty() || scale.shape.size() != 1 || scale.shape[0] != x.shape.back())
    throw std::runtime_error("fixate_rt.RMSNorm: expected X [..., D] and scale [D]; got X " + dims(x.shape) +
                             ", scale " + dims(scale.shape));
  int64_t rows = 1;
  for (size_t i = 0; i + 1 < x.shape.size(); ++i) rows *= x.shape[i];
  const Tensor y = output(api, context, 0, x.shape);
  const fixate::ParallelFor pool = session_pool(context);
  fixate::rms_norm(static_cast<const float*>(x.data), static_cast<const float*>(scale.data),
                   static_cast<float*>(y.data), rows, x.shape.back(), kernel.attribute, &pool);
}

// The float attribute `name` a kernel reads when it is created; it must be > 0 (`positive`) or ≥ 0.
template <const char* name, bool positive>
void* create_kernel(const OrtCustomOp*, const OrtApi* api, const OrtKernelInfo* info) {
  float value = 0.f;
  check(api, slot<KernelInfoGetAttributeFloatFn>(api, kKernelInfoGetAttributeFloat)(info, name, &value));
  if (positive ? !(value > 0.f) : !(value >= 0.f))
    throw std::runtime_error(std::string("fixate_rt: attribute ") + name + (positive ? " must be > 0" : " must be >= 0"));
  return new Kernel{api, value};
}

constexpr char kScale[] = "scale", kEpsilon[] = "epsilon";

// An op with float inputs and outputs, except the inputs listed as int64 in `int64_input` (-1: none).
template <const char* (*name)(const OrtCustomOp*), size_t inputs, size_t outputs, int int64_input,
          void* (*create)(const OrtCustomOp*, const OrtApi*, const OrtKernelInfo*),
          void (*compute)(void*, OrtKernelContext*)>
OrtCustomOp make_op() {
  OrtCustomOp op{};
  op.version = kCustomOpVersion;
  op.CreateKernel = create;
  op.GetName = name;
  op.GetExecutionProviderType = [](const OrtCustomOp*) -> const char* { return nullptr; };  // the CPU provider
  op.GetInputType = [](const OrtCustomOp*, size_t i) {
    return int(i) == int64_input ? kOrtElementInt64 : kOrtElementFloat;
  };
  op.GetInputTypeCount = [](const OrtCustomOp*) -> size_t { return inputs; };
  op.GetOutputType = [](const OrtCustomOp*, size_t) { return kOrtElementFloat; };
  op.GetOutputTypeCount = [](const OrtCustomOp*) -> size_t { return outputs; };
  op.KernelCompute = compute;
  op.KernelDestroy = [](void* state) { delete static_cast<Kernel*>(state); };
  op.GetInputCharacteristic = [](const OrtCustomOp*, size_t) { return kOrtInputOutputRequired; };
  op.GetOutputCharacteristic = [](const OrtCustomOp*, size_t) { return kOrtInputOutputRequired; };
  op.GetInputMemoryType = [](const OrtCustomOp*, size_t) { return kOrtMemTypeDefault; };
  return op;
}

const char* causal_attention_name(const OrtCustomOp*) { return "CausalAttention"; }
const char* rms_norm_name(const OrtCustomOp*) { return "RMSNorm"; }

const OrtCustomOp kCausalAttention =
    make_op<causal_attention_name, 4, 2, 3, create_kernel<kScale, true>, causal_attention>();
const OrtCustomOp kRMSNorm = make_op<rms_norm_name, 2, 1, -1, create_kernel<kEpsilon, false>, rms_norm>();

}  // namespace

extern "C" __attribute__((visibility("default"))) OrtStatus* RegisterCustomOps(OrtSessionOptions* options,
                                                                               const OrtApiBase* base) {
  const OrtApi* api = base->GetApi(1);  // every slot used here exists since API version 1, but ParallelFor
  if (api == nullptr) return nullptr;   // cannot happen with ONNX Runtime 1.x; nothing registered
  const char* threads = std::getenv("FIXATE_RT_ORT_OPS_THREADS");
  if (threads == nullptr || std::string(threads) != "openmp") g_pool_api = base->GetApi(18);
  // One domain for the process: ONNX Runtime keeps the pointer for as long as sessions use it.
  static OrtCustomOpDomain* domain = nullptr;
  if (domain == nullptr) {
    if (OrtStatus* status = slot<CreateCustomOpDomainFn>(api, kCreateCustomOpDomain)(kDomain, &domain)) return status;
    for (const OrtCustomOp* op : {&kCausalAttention, &kRMSNorm})
      if (OrtStatus* status = slot<CustomOpDomainAddFn>(api, kCustomOpDomainAdd)(domain, op)) return status;
  }
  return slot<AddCustomOpDomainFn>(api, kAddCustomOpDomain)(options, domain);
}
