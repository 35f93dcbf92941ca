#ifndef ZEROTRAIN_KERNELS_CUDA_COMMON_CUH_
#define ZEROTRAIN_KERNELS_CUDA_COMMON_CUH_

// Small device helpers shared by the kernels' .cu files: fp32 conversions of
// the storage types, vector packs, warp reductions and the DType -> CUDA type
// dispatch. Kept in one place so every kernel rounds and reduces alike.

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "core/dtype.h"

namespace zt::kernels::cuda {

__device__ __forceinline__ float ToF(float v) { return v; }
__device__ __forceinline__ float ToF(__half v) { return __half2float(v); }
// bf16 -> fp32 is exact: the bits shifted into the high half. Written out,
// it lets ptxas keep two bf16 values per register, which the intrinsic did
// not (the vector kernels then spilled).
__device__ __forceinline__ float ToF(__nv_bfloat16 v) {
  return __uint_as_float(static_cast<uint32_t>(__bfloat16_as_ushort(v)) << 16);
}

// Round to nearest even, as the host's zt::FromFloat.
template <typename T>
__device__ __forceinline__ T FromF(float v);
template <>
__device__ __forceinline__ float FromF<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ __half FromF<__half>(float v) {
  return __float2half_rn(v);
}
template <>
__device__ __forceinline__ __nv_bfloat16 FromF<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

// N consecutive elements moved as one (up to 16-byte) memory transaction.
template <typename T, int N>
struct alignas(sizeof(T) * N) Pack {
  T v[N];
};

template <typename T>
using Pack4 = Pack<T, 4>;

template <typename T, int N>
__device__ __forceinline__ Pack<T, N> LoadPack(const T* p) {
  return *reinterpret_cast<const Pack<T, N>*>(p);
}

template <typename T, int N>
__device__ __forceinline__ void StorePack(T* p, const Pack<T, N>& v) {
  *reinterpret_cast<Pack<T, N>*>(p) = v;
}

inline bool Aligned(const void* p, size_t bytes) {
  return reinterpret_cast<uintptr_t>(p) % bytes == 0;
}

inline bool Aligned16(const void* p) { return Aligned(p, 16); }

// Butterfly reductions: every lane ends with the same bits, since each step
// adds the same two values (in swapped order, and fp addition commutes).
__device__ __forceinline__ float WarpSum(float v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

__device__ __forceinline__ float WarpMax(float v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) {
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  }
  return v;
}

// Calls fn with a value of the CUDA type that stores `dtype` (fp32 for
// anything else).
template <typename Fn>
auto DispatchCudaType(DType dtype, Fn&& fn) {
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

#endif  // ZEROTRAIN_KERNELS_CUDA_COMMON_CUH_
