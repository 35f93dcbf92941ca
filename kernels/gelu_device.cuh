#ifndef ZEROTRAIN_KERNELS_GELU_DEVICE_CUH_
#define ZEROTRAIN_KERNELS_GELU_DEVICE_CUH_

// Device-side pieces shared by the GELU and matmul kernels: fp32 conversions
// of the storage types and GELU in fp32 (the same formula as gelu_ref.h, so
// the CPU reference differs only by tanhf's last bits).

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kernels/core/dtype.h"

namespace zt::kernels::cuda {

template <typename T>
__device__ __forceinline__ float ToF32(T v);
template <>
__device__ __forceinline__ float ToF32<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ float ToF32<__half>(__half v) {
  return __half2float(v);
}
template <>
__device__ __forceinline__ float ToF32<__nv_bfloat16>(__nv_bfloat16 v) {
  return __bfloat162float(v);
}

// Round to nearest even, as the host conversions in dtype.h.
template <typename T>
__device__ __forceinline__ T FromF32(float v);
template <>
__device__ __forceinline__ float FromF32<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ __half FromF32<__half>(float v) {
  return __float2half_rn(v);
}
template <>
__device__ __forceinline__ __nv_bfloat16 FromF32<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

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

// Calls fn(T{}) with T the device storage type of `dtype` (host code).
template <typename Fn>
inline auto DispatchCudaDType(DType dtype, Fn&& fn) {
  switch (dtype) {
    case DType::kFloat16:
      return fn(__half{});
    case DType::kBFloat16:
      return fn(__nv_bfloat16{});
    case DType::kFloat32:
    default:
      return fn(float{});
  }
}

}  // namespace zt::kernels::cuda

#endif  // ZEROTRAIN_KERNELS_GELU_DEVICE_CUH_
