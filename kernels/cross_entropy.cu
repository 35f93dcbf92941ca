// CUDA fused softmax + cross-entropy: one block per row, reading the row from
// memory once and writing it once, the minimum. Pass 1 keeps an online
// (max, sum of exp) pair per thread in fp32 and combines the pairs across the
// block in a fixed tree; pass 2 overwrites the row with the gradient.
// Probabilities are never stored. Pass 2 re-reads the row from shared
// memory, where pass 1 left it, when the row fits twice per SM (16-bit GPT-2
// rows, 100 KB, do); otherwise from L2, with one 1024-thread block per SM
// so that little other traffic passes through L2 between the two reads.
//
// The arithmetic is kept to a few instructions per element, since at about
// 3 TB/s an H100 has only about ten fp32 instructions per bf16 logit: __expf
// (ex2.approx: within 2 + 1.2 |x| ulp, used on x - max <= 0), a per-vector
// max so that the running max is updated once per vector, and a product with
// 1 / sum instead of a division per element.

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cfloat>
#include <climits>
#include <cstdint>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/library_errors.h"
#include "kernels/cross_entropy_cuda.h"
#include "kernels/cuda_common.cuh"

namespace zt::kernels::internal {
namespace {

using cuda::Aligned16;
using cuda::FromF;
using cuda::LoadPack;
using cuda::Pack;
using cuda::StorePack;
using cuda::ToF;

// A running softmax denominator: sum of exp(x - max) over the values seen.
// The max starts at -FLT_MAX rather than -inf so that -inf logits add
// exp(-inf) = 0 instead of exp(-inf - -inf) = NaN.
struct MaxSum {
  float max;
  float sum;
};

__device__ __forceinline__ MaxSum Combine(MaxSum a, MaxSum b) {
  const float m = fmaxf(a.max, b.max);
  // With FMA contraction Combine(a, b) and Combine(b, a) may differ in the
  // last bit, so lanes can disagree after the butterfly; only lane 0's
  // result is used, and it is computed in a fixed order.
  return {m, a.sum * expf(a.max - m) + b.sum * expf(b.max - m)};
}

__device__ __forceinline__ MaxSum WarpCombine(MaxSum v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) {
    const MaxSum other{__shfl_xor_sync(0xffffffffu, v.max, offset),
                       __shfl_xor_sync(0xffffffffu, v.sum, offset)};
    v = Combine(v, other);
  }
  return v;
}

// ---------------------------------------------------------------------------
// Kernels

constexpr int kMaxThreads = 1024;
// Threads per block when the row is kept in shared memory: two blocks per SM.
constexpr int kSmemThreads = 512;
// Largest row kept in shared memory: two per SM on an H100 (228 KB).
constexpr size_t kMaxSmemRowBytes = 112 * 1024;
// Vectors a thread loads before using any: enough bytes in flight per SM to
// cover DRAM latency.
constexpr int kUnroll = 4;

// Adds one vector (all of whose elements are real logits) to a running pair.
template <typename T, int VW>
__device__ __forceinline__ void AddVector(MaxSum& acc, const Pack<T, VW>& p) {
  float vmax = ToF(p.v[0]);
#pragma unroll
  for (int k = 1; k < VW; ++k) vmax = fmaxf(vmax, ToF(p.v[k]));
  if (vmax > acc.max) {
    acc.sum *= __expf(acc.max - vmax);
    acc.max = vmax;
  }
#pragma unroll
  for (int k = 0; k < VW; ++k) acc.sum += __expf(ToF(p.v[k]) - acc.max);
}

// Reads the 16-byte (or smaller) vector at p for the last time: evict-first,
// so that the gradient rows going out do not push out rows still to be read.
template <typename T, int VW>
__device__ __forceinline__ Pack<T, VW> LoadLastUse(const T* p) {
  if constexpr (sizeof(Pack<T, VW>) == 16) {
    const uint4 u = __ldcs(reinterpret_cast<const uint4*>(p));
    Pack<T, VW> r;
    memcpy(&r, &u, 16);
    return r;
  } else {
    return LoadPack<T, VW>(p);
  }
}

template <typename T, int VW>
__device__ __forceinline__ void StoreStreaming(T* p, const Pack<T, VW>& v) {
  if constexpr (sizeof(Pack<T, VW>) == 16) {
    uint4 u;
    memcpy(&u, &v, 16);
    __stcs(reinterpret_cast<uint4*>(p), u);
  } else {
    StorePack<T, VW>(p, v);
  }
}

// Targets outside [0, V) (the ignore value -1 included) give loss 0 and, with
// compute_grad, an all-zero row: checking them would need a host sync.
// With kRowInSmem, dynamic shared memory holds the row's V / VW whole
// vectors between the passes.
template <typename T, int VW, bool kRowInSmem>
__global__ void __launch_bounds__(kRowInSmem ? kSmemThreads : kMaxThreads, kRowInSmem ? 2 : 1)
    SoftmaxCrossEntropyKernel(int64_t V, int64_t Vp, float dloss, bool compute_grad,
                              T* __restrict__ logits, const int32_t* __restrict__ targets,
                              float* __restrict__ losses) {
  extern __shared__ __align__(16) unsigned char dynamic_smem[];
  auto* row_smem = reinterpret_cast<Pack<T, VW>*>(dynamic_smem);
  __shared__ MaxSum warp_results[kMaxThreads / 32];
  __shared__ MaxSum row_result;
  const int64_t row = blockIdx.x;
  T* x = logits + row * Vp;
  const int64_t nv = Vp / VW;   // vectors in the row, padding included
  const int64_t full = V / VW;  // vectors holding only real logits
  const int64_t stride = blockDim.x;
  const int32_t t = targets[row];

  if (t < 0 || t >= V) {
    if (threadIdx.x == 0) losses[row] = 0.0f;
    if (compute_grad) {
      Pack<T, VW> zero;
#pragma unroll
      for (int k = 0; k < VW; ++k) zero.v[k] = FromF<T>(0.0f);
      for (int64_t v = threadIdx.x; v < nv; v += stride) StorePack<T, VW>(x + v * VW, zero);
    }
    return;
  }
  // Only thread 0 writes the loss; it reads the target's logit now, before
  // the barriers below, after which other threads overwrite the row.
  const float target_logit = threadIdx.x == 0 ? ToF(x[t]) : 0.0f;

  // Pass 1: whole vectors, kUnroll loads in flight, then the few logits of
  // the vector that straddles V one by one.
  MaxSum acc{-FLT_MAX, 0.0f};
  for (int64_t v0 = threadIdx.x; v0 < full; v0 += kUnroll * stride) {
    Pack<T, VW> p[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      if (v0 + u * stride < full) p[u] = LoadPack<T, VW>(x + (v0 + u * stride) * VW);
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      if (v0 + u * stride < full) {
        AddVector<T, VW>(acc, p[u]);
        if constexpr (kRowInSmem) row_smem[v0 + u * stride] = p[u];
      }
    }
  }
  for (int64_t c = full * VW + threadIdx.x; c < V; c += stride) {
    const float val = ToF(x[c]);
    if (val > acc.max) {
      acc.sum = acc.sum * __expf(acc.max - val) + 1.0f;
      acc.max = val;
    } else {
      acc.sum += __expf(val - acc.max);
    }
  }
  acc = WarpCombine(acc);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, warps = blockDim.x / 32;
  if (lane == 0) warp_results[warp] = acc;
  __syncthreads();
  if (warp == 0) {
    MaxSum w = lane < warps ? warp_results[lane] : MaxSum{-FLT_MAX, 0.0f};
    w = WarpCombine(w);
    if (lane == 0) row_result = w;
  }
  __syncthreads();
  const MaxSum total = row_result;
  if (threadIdx.x == 0) losses[row] = logf(total.sum) + (total.max - target_logit);
  if (!compute_grad) return;

  // Pass 2: dlogit = (prob - [c == t]) * dloss, prob = exp(x - max) / sum.
  // Vectors of real logits other than the target's take the short path.
  const float inv_sum = 1.0f / total.sum;
  const float scale = inv_sum * dloss;
  const int64_t target_vector = t / VW;
  for (int64_t v0 = threadIdx.x; v0 < nv; v0 += kUnroll * stride) {
    Pack<T, VW> p[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t v = v0 + u * stride;
      if (v >= nv) continue;
      if (kRowInSmem && v < full) {
        p[u] = row_smem[v];
      } else {
        p[u] = LoadLastUse<T, VW>(x + v * VW);
      }
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t v = v0 + u * stride;
      if (v >= nv) continue;
      if (v < full && v != target_vector) {
#pragma unroll
        for (int k = 0; k < VW; ++k)
          p[u].v[k] = FromF<T>(__expf(ToF(p[u].v[k]) - total.max) * scale);
      } else {
#pragma unroll
        for (int k = 0; k < VW; ++k) {
          const int64_t c = v * VW + k;
          float g = 0.0f;  // padding columns
          if (c < V) {
            const float prob = __expf(ToF(p[u].v[k]) - total.max) * inv_sum;
            g = (prob - (c == t ? 1.0f : 0.0f)) * dloss;
          }
          p[u].v[k] = FromF<T>(g);
        }
      }
      StoreStreaming<T, VW>(x + v * VW, p[u]);
    }
  }
}

// ---------------------------------------------------------------------------
// Launchers

template <typename T, int VW>
absl::Status Launch(cudaStream_t stream, int64_t rows, int64_t V, int64_t Vp, float dloss,
                    bool compute_grad, void* logits, const int32_t* targets, float* losses) {
  const size_t row_bytes = static_cast<size_t>(V / VW) * sizeof(Pack<T, VW>);
  const bool in_smem = row_bytes <= kMaxSmemRowBytes;
  auto kernel =
      in_smem ? SoftmaxCrossEntropyKernel<T, VW, true> : SoftmaxCrossEntropyKernel<T, VW, false>;
  const int max_threads = in_smem ? kSmemThreads : kMaxThreads;
  const size_t smem = in_smem ? row_bytes : 0;
  if (smem > 48 * 1024) {
    ZT_CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(
        kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
    ZT_CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(
        kernel, cudaFuncAttributePreferredSharedMemoryCarveout, cudaSharedmemCarveoutMaxShared));
  }
  // Enough whole warps to give each thread at least one vector, up to the
  // variant's block size.
  const int64_t vecs = Vp / VW;
  const int threads = static_cast<int>(vecs >= max_threads ? max_threads : (vecs + 31) / 32 * 32);
  kernel<<<static_cast<unsigned>(rows), threads, smem, stream>>>(
      V, Vp, dloss, compute_grad, static_cast<T*>(logits), targets, losses);
  ZT_CUDA_RETURN_IF_LAUNCH_ERROR("SoftmaxCrossEntropyKernel");
  return absl::OkStatus();
}

template <typename T>
absl::Status Typed(cudaStream_t stream, int64_t rows, int64_t V, int64_t Vp, float dloss,
                   bool compute_grad, void* logits, const int32_t* targets, float* losses) {
  constexpr int kVec = 16 / sizeof(T);
  if (Vp % kVec == 0 && Aligned16(logits)) {
    return Launch<T, kVec>(stream, rows, V, Vp, dloss, compute_grad, logits, targets, losses);
  }
  return Launch<T, 1>(stream, rows, V, Vp, dloss, compute_grad, logits, targets, losses);
}

}  // namespace

absl::Status SoftmaxCrossEntropyCuda(cudaStream_t stream, DType dtype, int64_t rows, int64_t V,
                                     int64_t Vp, float dloss, bool compute_grad, void* logits,
                                     const int32_t* targets, float* losses) {
  if (rows > INT_MAX) {
    return absl::InvalidArgumentError(
        absl::StrCat("SoftmaxCrossEntropy (CUDA): rows = ", rows, " exceeds one block per row"));
  }
  switch (dtype) {
    case DType::kFloat16:
      return Typed<__half>(stream, rows, V, Vp, dloss, compute_grad, logits, targets, losses);
    case DType::kBFloat16:
      return Typed<__nv_bfloat16>(stream, rows, V, Vp, dloss, compute_grad, logits, targets,
                                  losses);
    default:
      return Typed<float>(stream, rows, V, Vp, dloss, compute_grad, logits, targets, losses);
  }
}

}  // namespace zt::kernels::internal
