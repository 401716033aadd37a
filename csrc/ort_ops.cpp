// libfixate_ort_ops: ONNX Runtime custom ops of fixate-rt, loaded with SessionOptions.register_custom_ops_library.
//
// fixate_rt.CausalAttention(Q [B, Hq, T, D], K [B, Hkv, T, D], V [B, Hkv, T, D], attention_mask [B, T] int64)
//   -> Y [B, Hq, T, D], LSE [B, Hq, T] (log-sum-exp of each query's scaled real scores, 0 for a query with no real
//   key), attribute `scale` (float). The rollout row of a probed layer reads LSE instead of recomputing it.
// It stands in for the opset-23 `Attention` nodes of an exported decoder whose mask is "causal and real key"
// (fixate_rt.backends.ort_attention rewrites the graph when the session is created): ONNX Runtime's own CPU
// kernels for causal attention build the T × T scores per head and run 2–3.5× slower than PyTorch's SDPA.
#include <stdexcept>
#include <string>
#include <vector>

#include "causal_attention.h"
#include "ort_abi.h"

namespace {

using namespace fixate::ort;

constexpr const char* kDomain = "fixate_rt";

// Throws with ONNX Runtime's message when a call fails; ONNX Runtime turns the exception into the Run's error.
void check(const OrtApi* api, OrtStatus* status) {
  if (status == nullptr) return;
  const std::string msg = slot<GetErrorMessageFn>(api, kGetErrorMessage)(status);
  slot<ReleaseStatusFn>(api, kReleaseStatus)(status);
  throw std::runtime_error("fixate_rt.CausalAttention: " + msg);
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

struct Kernel {
  const OrtApi* api;
  float scale;
};

std::string dims(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

void compute(void* state, OrtKernelContext* context) {
  const Kernel& kernel = *static_cast<Kernel*>(state);
  const OrtApi* api = kernel.api;
  Tensor in[4];
  for (size_t i = 0; i < 4; ++i) {
    const OrtValue* value = nullptr;
    check(api, slot<KernelContextGetInputFn>(api, kKernelContextGetInput)(context, i, &value));
    in[i] = describe(api, value);
  }
  const Tensor &q = in[0], &k = in[1], &v = in[2], &mask = in[3];
  if (q.shape.size() != 4 || k.shape != v.shape || k.shape.size() != 4 || mask.shape.size() != 2 ||
      k.shape[0] != q.shape[0] || k.shape[2] != q.shape[2] || k.shape[3] != q.shape[3] || k.shape[1] < 1 ||
      q.shape[1] % k.shape[1] != 0 || mask.shape[0] != q.shape[0] || mask.shape[1] != q.shape[2])
    throw std::runtime_error("fixate_rt.CausalAttention: expected Q [B, Hq, T, D], K and V [B, Hkv, T, D] and "
                             "attention_mask [B, T]; got Q " + dims(q.shape) + ", K " + dims(k.shape) + ", V " +
                             dims(v.shape) + ", attention_mask " + dims(mask.shape));
  OrtValue *out_value = nullptr, *lse_value = nullptr;
  check(api, slot<KernelContextGetOutputFn>(api, kKernelContextGetOutput)(context, 0, q.shape.data(), 4, &out_value));
  check(api, slot<KernelContextGetOutputFn>(api, kKernelContextGetOutput)(context, 1, q.shape.data(), 3, &lse_value));
  const Tensor out = describe(api, out_value), lse = describe(api, lse_value);
  fixate::causal_attention(static_cast<const float*>(q.data), static_cast<const float*>(k.data),
                           static_cast<const float*>(v.data), static_cast<const int64_t*>(mask.data),
                           static_cast<float*>(out.data), static_cast<float*>(lse.data), q.shape[0], q.shape[1],
                           k.shape[1], q.shape[2], q.shape[3], kernel.scale);
}

void* create_kernel(const OrtCustomOp*, const OrtApi* api, const OrtKernelInfo* info) {
  float scale = 0.f;
  check(api, slot<KernelInfoGetAttributeFloatFn>(api, kKernelInfoGetAttributeFloat)(info, "scale", &scale));
  if (!(scale > 0.f)) throw std::runtime_error("fixate_rt.CausalAttention: attribute scale must be > 0");
  return new Kernel{api, scale};
}

OrtCustomOp make_op() {
  OrtCustomOp op{};
  op.version = kCustomOpVersion;
  op.CreateKernel = create_kernel;
  op.GetName = [](const OrtCustomOp*) { return "CausalAttention"; };
  op.GetExecutionProviderType = [](const OrtCustomOp*) -> const char* { return nullptr; };  // the CPU provider
  op.GetInputType = [](const OrtCustomOp*, size_t i) { return i == 3 ? kOrtElementInt64 : kOrtElementFloat; };
  op.GetInputTypeCount = [](const OrtCustomOp*) -> size_t { return 4; };
  op.GetOutputType = [](const OrtCustomOp*, size_t) { return kOrtElementFloat; };
  op.GetOutputTypeCount = [](const OrtCustomOp*) -> size_t { return 2; };
  op.KernelCompute = compute;
  op.KernelDestroy = [](void* state) { delete static_cast<Kernel*>(state); };
  op.GetInputCharacteristic = [](const OrtCustomOp*, size_t) { return kOrtInputOutputRequired; };
  op.GetOutputCharacteristic = [](const OrtCustomOp*, size_t) { return kOrtInputOutputRequired; };
  op.GetInputMemoryType = [](const OrtCustomOp*, size_t) { return kOrtMemTypeDefault; };
  return op;
}

const OrtCustomOp kCausalAttention = make_op();

}  // namespace

extern "C" __attribute__((visibility("default"))) OrtStatus* RegisterCustomOps(OrtSessionOptions* options,
                                                                               const OrtApiBase* base) {
  const OrtApi* api = base->GetApi(1);  // every slot used here exists since API version 1
  if (api == nullptr) return nullptr;   // cannot happen with ONNX Runtime 1.x; nothing registered
  // One domain for the process: ONNX Runtime keeps the pointer for as long as sessions use it.
  static OrtCustomOpDomain* domain = nullptr;
  if (domain == nullptr) {
    if (OrtStatus* status = slot<CreateCustomOpDomainFn>(api, kCreateCustomOpDomain)(kDomain, &domain)) return status;
    if (OrtStatus* status = slot<CustomOpDomainAddFn>(api, kCustomOpDomainAdd)(domain, &kCausalAttention))
      return status;
  }
  return slot<AddCustomOpDomainFn>(api, kAddCustomOpDomain)(options, domain);
}
