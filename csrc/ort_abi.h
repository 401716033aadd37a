// The slice of ONNX Runtime's C ABI that a custom-op library uses, declared here because the onnxruntime wheel
// ships no headers. ONNX Runtime's C API is append-only: `OrtApi` is a table of function pointers whose slots never
// move, and `OrtApiBase::GetApi(version)` hands out a table at least that long. The slot numbers below are those
// of API version 1 (every ONNX Runtime 1.x) unless noted; tests/test_ort_attention.py checks several of them against the
// installed runtime through its exported `OrtGetApiBase`, and every op test runs through them.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>

extern "C" {
struct OrtStatus;
struct OrtSessionOptions;
struct OrtCustomOpDomain;
struct OrtKernelInfo;
struct OrtKernelContext;
struct OrtValue;
struct OrtTensorTypeAndShapeInfo;
struct OrtApi;  // used only through fixate::ort::slot

// Enumerations travel as C ints; only the values used here are named.
constexpr int kOrtFail = 1;                 // OrtErrorCode ORT_FAIL
constexpr int kOrtElementFloat = 1;         // ONNXTensorElementDataType FLOAT
constexpr int kOrtElementInt64 = 7;         // ONNXTensorElementDataType INT64
constexpr int kOrtInputOutputRequired = 0;  // OrtCustomOpInputOutputCharacteristic
constexpr int kOrtMemTypeDefault = 0;       // OrtMemType

struct OrtApiBase {
  const OrtApi* (*GetApi)(uint32_t version);
  const char* (*GetVersionString)();
};

// A custom op's schema and kernel callbacks, in the layout of custom-op version 13: ONNX Runtime reads the fields
// a version declares and no more.
struct OrtCustomOp {
  uint32_t version;
  void* (*CreateKernel)(const OrtCustomOp* op, const OrtApi* api, const OrtKernelInfo* info);
  const char* (*GetName)(const OrtCustomOp* op);
  const char* (*GetExecutionProviderType)(const OrtCustomOp* op);
  int (*GetInputType)(const OrtCustomOp* op, size_t index);
  size_t (*GetInputTypeCount)(const OrtCustomOp* op);
  int (*GetOutputType)(const OrtCustomOp* op, size_t index);
  size_t (*GetOutputTypeCount)(const OrtCustomOp* op);
  void (*KernelCompute)(void* kernel, OrtKernelContext* context);
  void (*KernelDestroy)(void* kernel);
  int (*GetInputCharacteristic)(const OrtCustomOp* op, size_t index);
  int (*GetOutputCharacteristic)(const OrtCustomOp* op, size_t index);
  int (*GetInputMemoryType)(const OrtCustomOp* op, size_t index);
};
constexpr uint32_t kCustomOpVersion = 13;
}

namespace fixate {
namespace ort {

// Slot numbers in OrtApi (API version 1 onwards).
enum Slot : size_t {
  kCreateStatus = 0,
  kGetErrorCode = 1,
  kGetErrorMessage = 2,
  kCreateCustomOpDomain = 26,
  kCustomOpDomainAdd = 27,
  kAddCustomOpDomain = 28,
  kGetTensorMutableData = 51,
  kGetTensorElementType = 60,
  kGetDimensionsCount = 61,
  kGetDimensions = 62,
  kGetTensorTypeAndShape = 65,
  kKernelInfoGetAttributeFloat = 85,
  kKernelContextGetInput = 90,
  kKernelContextGetOutput = 91,
  kReleaseStatus = 93,
  kReleaseTensorTypeAndShapeInfo = 99,
  kKernelContextParallelFor = 274,  // API version 18 onwards (ONNX Runtime 1.18, the oldest fixate-rt supports)
};

using CreateStatusFn = OrtStatus* (*)(int code, const char* msg);
using GetErrorCodeFn = int (*)(const OrtStatus*);
using GetErrorMessageFn = const char* (*)(const OrtStatus*);
using CreateCustomOpDomainFn = OrtStatus* (*)(const char* domain, OrtCustomOpDomain** out);
using CustomOpDomainAddFn = OrtStatus* (*)(OrtCustomOpDomain* domain, const OrtCustomOp* op);
using AddCustomOpDomainFn = OrtStatus* (*)(OrtSessionOptions* options, OrtCustomOpDomain* domain);
using GetTensorMutableDataFn = OrtStatus* (*)(OrtValue* value, void** out);
using GetTensorElementTypeFn = OrtStatus* (*)(const OrtTensorTypeAndShapeInfo* info, int* out);
using GetDimensionsCountFn = OrtStatus* (*)(const OrtTensorTypeAndShapeInfo* info, size_t* out);
using GetDimensionsFn = OrtStatus* (*)(const OrtTensorTypeAndShapeInfo* info, int64_t* dims, size_t count);
using GetTensorTypeAndShapeFn = OrtStatus* (*)(const OrtValue* value, OrtTensorTypeAndShapeInfo** out);
using KernelInfoGetAttributeFloatFn = OrtStatus* (*)(const OrtKernelInfo* info, const char* name, float* out);
using KernelContextGetInputFn = OrtStatus* (*)(const OrtKernelContext* context, size_t index, const OrtValue** out);
using KernelContextGetOutputFn = OrtStatus* (*)(OrtKernelContext* context, size_t index, const int64_t* dims,
                                                size_t count, OrtValue** out);
using KernelContextParallelForFn = OrtStatus* (*)(const OrtKernelContext* context, void (*fn)(void*, size_t),
                                                  size_t total, size_t num_batch, void* user_data);
using ReleaseStatusFn = void (*)(OrtStatus*);
using ReleaseTensorTypeAndShapeInfoFn = void (*)(OrtTensorTypeAndShapeInfo*);

// The function in slot `index` of the table `api`.
template <typename Fn>
Fn slot(const OrtApi* api, Slot index) {
  void* entry;
  std::memcpy(&entry, reinterpret_cast<const char*>(api) + index * sizeof(void*), sizeof(entry));
  return reinterpret_cast<Fn>(entry);
}

}  // namespace ort
}  // namespace fixate
