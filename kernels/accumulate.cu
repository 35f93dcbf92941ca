// CUDA dst += src in the storage dtype: 16-byte packs when both pointers are
// 16-byte aligned (2-byte element loads reach only about 2/3 of the copy
// bandwidth), element by element otherwise.

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "kernels/accumulate.h"
#include "core/library_errors.h"
#include "kernels/cuda_common.cuh"

namespace zt::kernels {
namespace {

using cuda::Aligned16;
using cuda::FromF;
using cuda::Pack;
using cuda::ToF;

// ---- kernels ----

// Pack p covers elements [p * kVec, p * kVec + kVec); the last, partial pack
// is added element by element. With kVec = 1 this is the plain loop.
template <typename T, int kVec>
__global__ void AccumulateKernel(T* dst, const T* src, int64_t n) {
  const int64_t packs = (n + kVec - 1) / kVec;
  for (int64_t p = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; p < packs;
       p += int64_t{gridDim.x} * blockDim.x) {
    if ((p + 1) * kVec <= n) {
      Pack<T, kVec> d = reinterpret_cast<const Pack<T, kVec>*>(dst)[p];
      const Pack<T, kVec> s = reinterpret_cast<const Pack<T, kVec>*>(src)[p];
#pragma unroll
      for (int k = 0; k < kVec; ++k) d.v[k] = FromF<T>(ToF(d.v[k]) + ToF(s.v[k]));
      reinterpret_cast<Pack<T, kVec>*>(dst)[p] = d;
    } else {
      for (int64_t i = p * kVec; i < n; ++i) dst[i] = FromF<T>(ToF(dst[i]) + ToF(src[i]));
    }
  }
}

template <typename T, int kVec>
absl::Status LaunchVec(const OpContext& ctx, void* dst, const void* src, int64_t n) {
  const int threads = 256;
  const int64_t packs = (n + kVec - 1) / kVec;
  // Past this many blocks the grid-stride loop takes over.
  const int64_t blocks = std::min<int64_t>((packs + threads - 1) / threads, 65536);
  AccumulateKernel<T, kVec><<<static_cast<int>(blocks), threads, 0, ctx.stream>>>(
      static_cast<T*>(dst), static_cast<const T*>(src), n);
  ZT_CUDA_RETURN_IF_LAUNCH_ERROR("AccumulateKernel");
  return absl::OkStatus();
}

template <typename T>
absl::Status Launch(const OpContext& ctx, void* dst, const void* src, int64_t n) {
  if (Aligned16(dst) && Aligned16(src)) return LaunchVec<T, 16 / sizeof(T)>(ctx, dst, src, n);
  return LaunchVec<T, 1>(ctx, dst, src, n);
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
