#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "kernels/accumulate.h"
#include "kernels/core/library_errors.h"

namespace zt::kernels {
namespace {

// ---- kernels ----

__device__ __forceinline__ float ToF(float x) { return x; }
__device__ __forceinline__ float ToF(__half x) { return __half2float(x); }
__device__ __forceinline__ float ToF(__nv_bfloat16 x) { return __bfloat162float(x); }
template <typename T>
__device__ __forceinline__ T FromF(float x);
template <>
__device__ __forceinline__ float FromF<float>(float x) { return x; }
template <>
__device__ __forceinline__ __half FromF<__half>(float x) { return __float2half_rn(x); }
template <>
__device__ __forceinline__ __nv_bfloat16 FromF<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}

template <typename T>
__global__ void AccumulateKernel(T* dst, const T* src, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    dst[i] = FromF<T>(ToF(dst[i]) + ToF(src[i]));
  }
}

template <typename T>
absl::Status Launch(const OpContext& ctx, void* dst, const void* src, int64_t n) {
  const int threads = 256;
  const int64_t blocks = std::min<int64_t>((n + threads - 1) / threads, 65536);
  AccumulateKernel<T><<<static_cast<int>(blocks), threads, 0, ctx.stream>>>(
      static_cast<T*>(dst), static_cast<const T*>(src), n);
  ZT_CUDA_RETURN_IF_LAUNCH_ERROR("AccumulateKernel");
  return absl::OkStatus();
}

}  // namespace

// ---- launchers ----

absl::Status AccumulateCuda(const OpContext& ctx, DType dtype, void* dst, const void* src,
                            int64_t n) {
  switch (dtype) {
    case DType::kFloat16:
      return Launch<__half>(ctx, dst, src, n);
    case DType::kBFloat16:
      return Launch<__nv_bfloat16>(ctx, dst, src, n);
    default:
      return Launch<float>(ctx, dst, src, n);
  }
}

}  // namespace zt::kernels
