// A hand-written model in the shape of Inferon's generated code (used by
// tests/test_runtime_kernels.py): inputs data[2,3,4,5], bias[5]; outputs
//   sum[2,3,4,5] = relu(data + bias)
//   mm[24,7]     = (data + bias).reshape(24, 5) @ W + b   (W = weights[0:35] as 5x7, b = weights[35:42])
//   isa[1]       = the ISA level the kernels see (inferon_kernels_get_isa)
#include "inferon/kernels.hpp"
#include "inferon/model_abi.h"

namespace {
const int64_t kDataShape[4] = {2, 3, 4, 5};
const int64_t kBiasShape[1] = {5};
const int64_t kMmShape[2] = {24, 7};
const int64_t kIsaShape[1] = {1};
const inferon_tensor_info kInputs[2] = {
    {"data", INFERON_FLOAT32, 4, kDataShape},
    {"bias", INFERON_FLOAT32, 1, kBiasShape},
};
const inferon_tensor_info kOutputs[3] = {
    {"sum", INFERON_FLOAT32, 4, kDataShape},
    {"mm", INFERON_FLOAT32, 2, kMmShape},
    {"isa", INFERON_FLOAT32, 1, kIsaShape},
};

void run(float* arena, const float* const* in, float* const* out, int num_threads, double*) {
  float* t = arena;  // 120 floats
  const int64_t shape[2] = {24, 5};
  const int64_t a_strides[2] = {5, 1};
  const int64_t b_strides[2] = {0, 1};
  inferon::binary(inferon::BIN_ADD, 2, shape, in[0], a_strides, in[1], b_strides, t, num_threads);
  inferon::unary(inferon::UN_RELU, 120, t, out[0], 0.f, 0.f, num_threads);
  inferon::Epilogue ep;
  ep.bias = inferon_weights + 35;
  ep.bias_axis = 1;
  inferon::gemm(1, 24, 7, 5, t, 5, 0, inferon_weights, 7, 0, out[1], 7, 0, ep, inferon::GemmTiles(),
                num_threads);
  out[2][0] = static_cast<float>(inferon_kernels_get_isa());
}

const inferon_model_desc kDesc = {2, 3, kInputs, kOutputs, 120 * sizeof(float), run, 0, nullptr, 2};
}  // namespace

extern "C" const inferon_model_desc* inferon_model_descriptor(void) { return &kDesc; }
