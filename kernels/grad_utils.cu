// CUDA halves of the gradient utilities. All three are memory-bound: each
// thread moves four elements per access (one 16- or 8-byte transaction) when
// the pointers allow it and falls back to scalar accesses otherwise.

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "core/library_errors.h"
#include "kernels/cuda_common.cuh"
#include "kernels/grad_utils.h"
#include "kernels/grad_utils_internal.h"

namespace zt::kernels::grad_utils_internal {
namespace {

using cuda::Aligned;
using cuda::DispatchCudaType;
using cuda::FromF;
using cuda::Pack4;
using cuda::ToF;

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 4096;

int64_t GridFor(int64_t work_items) {
  return std::max<int64_t>(1, std::min((work_items + kThreads - 1) / kThreads, kMaxBlocks));
}

// ------------------------------------------------------ ScaleAndCheckFinite

template <typename T>
__device__ __forceinline__ T ScaleOne(T x, float scale, bool& nonfinite) {
  const T y = FromF<T>(__fmul_rn(ToF(x), scale));
  // Test the stored value: a finite product can still overflow fp16.
  nonfinite |= !isfinite(ToF(y));
  return y;
}

// Elements [0, 4 * num_packs) go as packs of four when `vectorized`; the rest
// (and everything otherwise) one by one.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    ScaleAndCheckFiniteKernel(T* x, int64_t n, float scale, int32_t* found_nonfinite,
                              bool vectorized) {
  bool nonfinite = false;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kThreads;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  const int64_t num_packs = vectorized ? n / 4 : 0;
  Pack4<T>* packs = reinterpret_cast<Pack4<T>*>(x);
  for (int64_t i = tid; i < num_packs; i += stride) {
    Pack4<T> p = packs[i];
#pragma unroll
    for (int k = 0; k < 4; ++k) p.v[k] = ScaleOne(p.v[k], scale, nonfinite);
    packs[i] = p;
  }
  for (int64_t i = 4 * num_packs + tid; i < n; i += stride) {
    x[i] = ScaleOne(x[i], scale, nonfinite);
  }
  // One write per block at most; an integer OR keeps racing blocks well
  // defined and never clears a flag set earlier.
  if (__syncthreads_or(nonfinite) && threadIdx.x == 0) atomicOr(found_nonfinite, 1);
}

// -------------------------------------------------------------- SquaredNorm

struct NormTable {
  int num_tensors;
  int64_t chunk_begin[kNormMaxTensors + 1];
  const void* data[kNormMaxTensors];
  int64_t n[kNormMaxTensors];
  bool vectorized[kNormMaxTensors];
};

// Sums v over the block in a fixed tree; the result is valid in thread 0.
__device__ __forceinline__ float BlockSum(float v, float* shared) {
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < blockDim.x / 32 ? shared[lane] : 0.0f;
    for (int offset = 16; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
  }
  return v;
}

// Pass 1: block b sums chunks b, b + gridDim.x, ... (each thread keeps an
// fp32 running sum in a fixed element order) and writes partials[b].
template <typename T>
__global__ void __launch_bounds__(kThreads)
    SquaredNormPartialsKernel(const NormTable table, float* partials) {
  __shared__ float shared[kThreads / 32];
  float sum = 0.0f;
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
    const T* x = static_cast<const T*>(table.data[lo]);
    const int64_t begin = (chunk - table.chunk_begin[lo]) * kNormChunk;
    const int64_t end = min(begin + kNormChunk, table.n[lo]);
    if (table.vectorized[lo]) {
      for (int64_t i = begin + 4 * threadIdx.x; i < end; i += 4 * kThreads) {
        if (i + 4 <= end) {
          const Pack4<T> p = *reinterpret_cast<const Pack4<T>*>(x + i);
#pragma unroll
          for (int k = 0; k < 4; ++k) {
            const float f = ToF(p.v[k]);
            sum = __fmaf_rn(f, f, sum);
          }
        } else {
          for (int64_t j = i; j < end; ++j) {
            const float f = ToF(x[j]);
            sum = __fmaf_rn(f, f, sum);
          }
        }
      }
    } else {
      for (int64_t i = begin + threadIdx.x; i < end; i += kThreads) {
        const float f = ToF(x[i]);
        sum = __fmaf_rn(f, f, sum);
      }
    }
  }
  sum = BlockSum(sum, shared);
  if (threadIdx.x == 0) partials[blockIdx.x] = sum;
}

constexpr int kFinalThreads = 1024;

// Pass 2: one block; thread t sums partials t, t + 1024, ... in order, then a
// fixed tree. Writes 0 when there are no partials.
__global__ void __launch_bounds__(kFinalThreads)
    SquaredNormFinalKernel(const float* partials, int64_t count, float* out) {
  __shared__ float shared[kFinalThreads / 32];
  float sum = 0.0f;
  for (int64_t i = threadIdx.x; i < count; i += kFinalThreads) sum += partials[i];
  sum = BlockSum(sum, shared);
  if (threadIdx.x == 0) *out = sum;
}

// --------------------------------------------------------------------- Cast

template <typename Src, typename Dst>
__global__ void __launch_bounds__(kThreads)
    CastKernel(const Src* src, Dst* dst, int64_t n, bool vectorized) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kThreads;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  const int64_t num_packs = vectorized ? n / 4 : 0;
  const Pack4<Src>* in = reinterpret_cast<const Pack4<Src>*>(src);
  Pack4<Dst>* out = reinterpret_cast<Pack4<Dst>*>(dst);
  for (int64_t i = tid; i < num_packs; i += stride) {
    const Pack4<Src> p = in[i];
    Pack4<Dst> q;
#pragma unroll
    for (int k = 0; k < 4; ++k) q.v[k] = FromF<Dst>(ToF(p.v[k]));
    out[i] = q;
  }
  for (int64_t i = 4 * num_packs + tid; i < n; i += stride) dst[i] = FromF<Dst>(ToF(src[i]));
}

}  // namespace

// --------------------------------------------------------------- launchers

absl::Status LaunchScaleAndCheckFinite(cudaStream_t stream, DType dtype, void* x, int64_t n,
                                       float scale, int32_t* found_nonfinite) {
  return DispatchCudaType(dtype, [&](auto tag) {
    using T = decltype(tag);
    const bool vectorized = Aligned(x, 4 * sizeof(T));
    const int64_t grid = GridFor(vectorized ? (n + 3) / 4 : n);
    ScaleAndCheckFiniteKernel<T><<<static_cast<unsigned>(grid), kThreads, 0, stream>>>(
        static_cast<T*>(x), n, scale, found_nonfinite, vectorized);
    ZT_CUDA_RETURN_IF_LAUNCH_ERROR("ScaleAndCheckFiniteKernel");
    return absl::OkStatus();
  });
}

absl::Status LaunchSquaredNorm(cudaStream_t stream, DType dtype,
                               absl::Span<const ConstTensorRef> tensors, float* partials,
                               float* out) {
  const std::vector<NormLaunch> plan = PlanSquaredNorm(tensors);
  for (const NormLaunch& launch : plan) {
    absl::Status status = DispatchCudaType(dtype, [&](auto tag) {
      using T = decltype(tag);
      NormTable table;
      table.num_tensors = 0;
      table.chunk_begin[0] = 0;
      for (size_t i = launch.first; i < launch.end; ++i) {
        const ConstTensorRef& t = tensors[i];
        if (t.n <= 0) continue;
        const int k = table.num_tensors++;
        table.data[k] = t.data;
        table.n[k] = t.n;
        table.vectorized[k] = Aligned(t.data, 4 * sizeof(T));
        table.chunk_begin[k + 1] = table.chunk_begin[k] + (t.n + kNormChunk - 1) / kNormChunk;
      }
      SquaredNormPartialsKernel<T><<<static_cast<unsigned>(launch.blocks), kThreads, 0, stream>>>(
          table, partials + launch.partial_offset);
      ZT_CUDA_RETURN_IF_LAUNCH_ERROR("SquaredNormPartialsKernel");
      return absl::OkStatus();
    });
    if (!status.ok()) return status;
  }
  SquaredNormFinalKernel<<<1, kFinalThreads, 0, stream>>>(partials, NumPartials(plan), out);
  ZT_CUDA_RETURN_IF_LAUNCH_ERROR("SquaredNormFinalKernel");
  return absl::OkStatus();
}

absl::Status LaunchCast(cudaStream_t stream, const void* src, DType src_dtype, void* dst,
                        DType dst_dtype, int64_t n) {
  return DispatchCudaType(src_dtype, [&](auto src_tag) {
    return DispatchCudaType(dst_dtype, [&](auto dst_tag) {
      using Src = decltype(src_tag);
      using Dst = decltype(dst_tag);
      const bool vectorized = Aligned(src, 4 * sizeof(Src)) && Aligned(dst, 4 * sizeof(Dst));
      const int64_t grid = GridFor(vectorized ? (n + 3) / 4 : n);
      CastKernel<Src, Dst><<<static_cast<unsigned>(grid), kThreads, 0, stream>>>(
          static_cast<const Src*>(src), static_cast<Dst*>(dst), n, vectorized);
      ZT_CUDA_RETURN_IF_LAUNCH_ERROR("CastKernel");
      return absl::OkStatus();
    });
  });
}

absl::Status LaunchCopy(cudaStream_t stream, void* dst, const void* src, size_t bytes) {
  ZT_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream));
  return absl::OkStatus();
}

}  // namespace zt::kernels::grad_utils_internal
