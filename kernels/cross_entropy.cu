// CUDA fused softmax + cross-entropy: one block per row. Pass 1 keeps an
// online (max, sum of exp) pair per thread in fp32 and combines the pairs
// across the block in a fixed tree; pass 2 re-reads the row (L2-resident)
// and overwrites it with the gradient. Probabilities are never stored.

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cfloat>
#include <climits>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "kernels/core/library_errors.h"
#include "kernels/cross_entropy_cuda.h"

namespace zt::kernels::internal {
namespace {

// ---------------------------------------------------------------------------
// Helpers

__device__ __forceinline__ float ToF(float v) { return v; }
__device__ __forceinline__ float ToF(__half v) { return __half2float(v); }
__device__ __forceinline__ float ToF(__nv_bfloat16 v) { return __bfloat162float(v); }

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

template <typename T, int N>
__device__ __forceinline__ Pack<T, N> LoadPack(const T* p) {
  return *reinterpret_cast<const Pack<T, N>*>(p);
}

template <typename T, int N>
__device__ __forceinline__ void StorePack(T* p, const Pack<T, N>& v) {
  *reinterpret_cast<Pack<T, N>*>(p) = v;
}

bool Aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

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

constexpr int kMaxThreads = 512;

// Targets outside [0, V) (the ignore value -1 included) give loss 0 and, with
// compute_grad, an all-zero row: checking them would need a host sync.
template <typename T, int VW>
__global__ void __launch_bounds__(kMaxThreads)
    SoftmaxCrossEntropyKernel(int64_t V, int64_t Vp, float dloss, bool compute_grad,
                              T* __restrict__ logits, const int32_t* __restrict__ targets,
                              float* __restrict__ losses) {
  __shared__ MaxSum warp_results[kMaxThreads / 32];
  __shared__ MaxSum row_result;
  const int64_t row = blockIdx.x;
  T* x = logits + row * Vp;
  const int64_t nv = Vp / VW;
  const int32_t t = targets[row];

  if (t < 0 || t >= V) {
    if (threadIdx.x == 0) losses[row] = 0.0f;
    if (compute_grad) {
      Pack<T, VW> zero;
#pragma unroll
      for (int k = 0; k < VW; ++k) zero.v[k] = FromF<T>(0.0f);
      for (int64_t v = threadIdx.x; v < nv; v += blockDim.x) StorePack<T, VW>(x + v * VW, zero);
    }
    return;
  }
  // Only thread 0 writes the loss; it reads the target's logit now, before
  // the barriers below, after which other threads overwrite the row.
  const float target_logit = threadIdx.x == 0 ? ToF(x[t]) : 0.0f;

  MaxSum acc{-FLT_MAX, 0.0f};
  for (int64_t v = threadIdx.x; v < nv; v += blockDim.x) {
    const Pack<T, VW> p = LoadPack<T, VW>(x + v * VW);
#pragma unroll
    for (int k = 0; k < VW; ++k) {
      if (v * VW + k < V) {
        const float val = ToF(p.v[k]);
        if (val > acc.max) {
          acc.sum = acc.sum * expf(acc.max - val) + 1.0f;
          acc.max = val;
        } else {
          acc.sum += expf(val - acc.max);
        }
      }
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

  for (int64_t v = threadIdx.x; v < nv; v += blockDim.x) {
    Pack<T, VW> p = LoadPack<T, VW>(x + v * VW);
#pragma unroll
    for (int k = 0; k < VW; ++k) {
      const int64_t c = v * VW + k;
      float g = 0.0f;  // padding columns
      if (c < V) {
        const float prob = expf(ToF(p.v[k]) - total.max) / total.sum;
        g = (prob - (c == t ? 1.0f : 0.0f)) * dloss;
      }
      p.v[k] = FromF<T>(g);
    }
    StorePack<T, VW>(x + v * VW, p);
  }
}

// ---------------------------------------------------------------------------
// Launchers

template <typename T, int VW>
absl::Status Launch(cudaStream_t stream, int64_t rows, int64_t V, int64_t Vp, float dloss,
                    bool compute_grad, void* logits, const int32_t* targets, float* losses) {
  // Enough whole warps to give each thread at least one vector, up to 512.
  const int64_t vecs = Vp / VW;
  const int threads = static_cast<int>(vecs >= kMaxThreads ? kMaxThreads : (vecs + 31) / 32 * 32);
  SoftmaxCrossEntropyKernel<T, VW><<<static_cast<unsigned>(rows), threads, 0, stream>>>(
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
