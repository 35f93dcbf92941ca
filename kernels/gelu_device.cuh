#ifndef ZEROTRAIN_KERNELS_GELU_DEVICE_CUH_
#define ZEROTRAIN_KERNELS_GELU_DEVICE_CUH_

// Device-side GELU in fp32, shared by the GELU and matmul kernels. The tanh
// form here and the sigmoid form of gelu_ref.h are the same function; they
// differ only in fp32 rounding.

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "core/dtype.h"
#include "kernels/cuda_common.cuh"

namespace zt::kernels::cuda {

// tanhf rather than the tanh.approx instruction: the approximation's ~2^-11
// relative error would be visible in fp32 results.
__device__ __forceinline__ float GeluF32(float x) {
  const float u = 0.7978845608028654f * (x + 0.044715f * x * x * x);
  return 0.5f * x * (1.0f + tanhf(u));
}

__device__ __forceinline__ float GeluGradF32(float x) {
  const float s = 0.7978845608028654f;
  const float c = 0.044715f;
  const float t = tanhf(s * (x + c * x * x * x));
  const float du_dx = s * (1.0f + 3.0f * c * x * x);
  return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * du_dx;
}

}  // namespace zt::kernels::cuda

#endif  // ZEROTRAIN_KERNELS_GELU_DEVICE_CUH_
