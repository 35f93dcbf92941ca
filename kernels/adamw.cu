// Multi-tensor AdamW: one launch updates up to kMaxTensors tensors. The
// tensors' pointers and sizes travel in the kernel's parameter block, so no
// host-to-device copy (and no synchronization) precedes the launch. Each
// tensor is cut into kChunk-element chunks numbered across all tensors; a
// block takes chunks in grid-stride order and finds the owning tensor by
// binary search over the chunk prefix sums.

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "kernels/adamw.h"
#include "kernels/adamw_internal.h"
#include "core/library_errors.h"
#include "kernels/cuda_common.cuh"

namespace zt::kernels::adamw_internal {
namespace {

using cuda::Aligned;
using cuda::DispatchCudaType;
using cuda::FromF;
using cuda::Pack4;
using cuda::ToF;

// 256 tensors cover GPT-2's ~150 parameter tensors in one launch; the table
// is ~15 KB, within the 32 KB kernel-parameter limit of CUDA >= 12.1 on
// sm_70+ (a longer list is split into several launches).
constexpr int kMaxTensors = 256;
constexpr int kThreads = 256;
// 16 elements per thread per chunk: enough work per binary search, small
// enough that the last chunk of a tensor wastes little.
constexpr int64_t kChunk = 4096;
// Grid-stride beyond this; plenty to fill an H100 (132 SMs x 8 blocks).
constexpr int64_t kMaxBlocks = 4096;

enum : uint8_t { kDecay = 1, kVectorized = 2 };

struct TensorTable {
  int num_tensors;
  int64_t chunk_begin[kMaxTensors + 1];  // prefix sums of chunk counts
  float* master[kMaxTensors];
  float* m[kMaxTensors];
  float* v[kMaxTensors];
  const void* grad[kMaxTensors];
  void* param[kMaxTensors];  // may be null
  int64_t n[kMaxTensors];
  uint8_t flags[kMaxTensors];
};

// ---------------------------------------------------------------- kernels

__device__ __forceinline__ uint32_t Bits16(__half x) { return __half_as_ushort(x); }
__device__ __forceinline__ uint32_t Bits16(__nv_bfloat16 x) { return __bfloat16_as_ushort(x); }

// Rounds four floats to T and writes them with one vector store. A plain
// assignment through a float4*/uint2* gets split into element stores here
// (seen in the PTX); the __stcg intrinsic keeps the vector store.
__device__ __forceinline__ void StoreParam4(float* p, const float4& v) {
  __stcg(reinterpret_cast<float4*>(p), v);
}
template <typename T>
__device__ __forceinline__ void StoreParam4(T* p, const float4& v) {
  uint2 u;
  u.x = Bits16(FromF<T>(v.x)) | (Bits16(FromF<T>(v.y)) << 16);
  u.y = Bits16(FromF<T>(v.z)) | (Bits16(FromF<T>(v.w)) << 16);
  __stcg(reinterpret_cast<uint2*>(p), u);
}

template <typename GradT, typename ParamT>
__global__ void __launch_bounds__(kThreads)
    AdamWKernel(const TensorTable table, const AdamWScalars s) {
  const int64_t total_chunks = table.chunk_begin[table.num_tensors];
  for (int64_t chunk = blockIdx.x; chunk < total_chunks; chunk += gridDim.x) {
    int lo = 0, hi = table.num_tensors - 1;
    while (lo < hi) {
      const int mid = (lo + hi + 1) / 2;
      if (table.chunk_begin[mid] <= chunk) {
        lo = mid;
      } else {
        hi = mid - 1;
      }
    }
    const int t = lo;
    float* master = table.master[t];
    float* m = table.m[t];
    float* v = table.v[t];
    const GradT* grad = static_cast<const GradT*>(table.grad[t]);
    ParamT* param = static_cast<ParamT*>(table.param[t]);
    const bool decay = table.flags[t] & kDecay;
    const int64_t begin = (chunk - table.chunk_begin[t]) * kChunk;
    const int64_t end = min(begin + kChunk, table.n[t]);

    if (table.flags[t] & kVectorized) {
      // begin is a multiple of 4 and the bases are aligned, so every
      // full group of four is aligned too.
      for (int64_t i = begin + 4 * threadIdx.x; i < end; i += 4 * kThreads) {
        if (i + 4 <= end) {
          float4 mw = *reinterpret_cast<const float4*>(master + i);
          float4 mm = *reinterpret_cast<const float4*>(m + i);
          float4 vv = *reinterpret_cast<const float4*>(v + i);
          const Pack4<GradT> g = *reinterpret_cast<const Pack4<GradT>*>(grad + i);
          AdamWElement(s, decay, ToF(g.v[0]), mw.x, mm.x, vv.x);
          AdamWElement(s, decay, ToF(g.v[1]), mw.y, mm.y, vv.y);
          AdamWElement(s, decay, ToF(g.v[2]), mw.z, mm.z, vv.z);
          AdamWElement(s, decay, ToF(g.v[3]), mw.w, mm.w, vv.w);
          *reinterpret_cast<float4*>(master + i) = mw;
          *reinterpret_cast<float4*>(m + i) = mm;
          *reinterpret_cast<float4*>(v + i) = vv;
          if (param != nullptr) StoreParam4(param + i, mw);
        } else {
          for (int64_t j = i; j < end; ++j) {
            AdamWElement(s, decay, ToF(grad[j]), master[j], m[j], v[j]);
            if (param != nullptr) param[j] = FromF<ParamT>(master[j]);
          }
        }
      }
    } else {
      for (int64_t i = begin + threadIdx.x; i < end; i += kThreads) {
        AdamWElement(s, decay, ToF(grad[i]), master[i], m[i], v[i]);
        if (param != nullptr) param[i] = FromF<ParamT>(master[i]);
      }
    }
  }
}

// -------------------------------------------------------------- launchers

template <typename GradT, typename ParamT>
absl::Status LaunchTyped(cudaStream_t stream, const AdamWScalars& s,
                         absl::Span<const AdamWTensor> tensors) {
  size_t next = 0;
  while (next < tensors.size()) {
    TensorTable table;
    table.num_tensors = 0;
    table.chunk_begin[0] = 0;
    for (; next < tensors.size() && table.num_tensors < kMaxTensors; ++next) {
      const AdamWTensor& t = tensors[next];
      if (t.n == 0) continue;
      const int k = table.num_tensors++;
      table.master[k] = t.master;
      table.m[k] = t.m;
      table.v[k] = t.v;
      table.grad[k] = t.grad;
      table.param[k] = t.param;
      table.n[k] = t.n;
      const bool vectorized = Aligned(t.master, 16) && Aligned(t.m, 16) && Aligned(t.v, 16) &&
                              Aligned(t.grad, 4 * sizeof(GradT)) &&
                              (t.param == nullptr || Aligned(t.param, 4 * sizeof(ParamT)));
      table.flags[k] = (t.decay ? kDecay : 0) | (vectorized ? kVectorized : 0);
      table.chunk_begin[k + 1] = table.chunk_begin[k] + (t.n + kChunk - 1) / kChunk;
    }
    if (table.num_tensors == 0) break;
    const int64_t blocks = std::min(table.chunk_begin[table.num_tensors], kMaxBlocks);
    AdamWKernel<GradT, ParamT><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(table, s);
    ZT_CUDA_RETURN_IF_LAUNCH_ERROR("AdamWKernel");
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status LaunchAdamW(cudaStream_t stream, DType grad_dtype, DType param_dtype,
                         const AdamWScalars& scalars, absl::Span<const AdamWTensor> tensors) {
  return DispatchCudaType(grad_dtype, [&](auto grad_tag) {
    return DispatchCudaType(param_dtype, [&](auto param_tag) {
      return LaunchTyped<decltype(grad_tag), decltype(param_tag)>(stream, scalars, tensors);
    });
  });
}

}  // namespace zt::kernels::adamw_internal
