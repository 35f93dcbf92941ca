// CUDA LayerNorm. Forward: one warp per row, fp32 statistics, optionally
// fused with the residual add before it. Backward: one warp per row for
// dinp; dweight and dbias go through per-warp shared-memory accumulators,
// per-block partial sums in the workspace, and a second kernel that adds the
// partials in block order. No float atomics, so the bits never change.

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <climits>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "kernels/core/library_errors.h"
#include "kernels/layernorm.h"
#include "kernels/layernorm_cuda.h"

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

// Butterfly sum: every lane ends with the same value, in a fixed order.
__device__ __forceinline__ float WarpSum(float v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// ---------------------------------------------------------------------------
// Kernels

constexpr int kForwardWarps = 8;

// Warp per row; lane l owns the vectors l, l + 32, ... of the row. The row is
// read three times (mean, centred variance, output); the re-reads hit L1.
// With kResidual, the first pass writes residual rounded to T and the later
// passes re-read it, so the statistics are those of the stored residual.
template <typename T, int VW, bool kResidual>
__global__ void __launch_bounds__(kForwardWarps * 32)
    LayerNormForwardKernel(int64_t rows, int64_t C, const T* inp1, const T* inp2,
                           const T* __restrict__ weight, const T* __restrict__ bias, T* residual,
                           T* __restrict__ out, float* __restrict__ mean,
                           float* __restrict__ rstd) {
  const int lane = threadIdx.x % 32;
  const int64_t row = blockIdx.x * static_cast<int64_t>(kForwardWarps) + threadIdx.x / 32;
  if (row >= rows) return;
  const int64_t nv = C / VW;
  const T* x = (kResidual ? residual : inp1) + row * C;

  float sum = 0.0f;
  for (int64_t v = lane; v < nv; v += 32) {
    Pack<T, VW> p;
    if constexpr (kResidual) {
      const Pack<T, VW> a = LoadPack<T, VW>(inp1 + row * C + v * VW);
      const Pack<T, VW> b = LoadPack<T, VW>(inp2 + row * C + v * VW);
#pragma unroll
      for (int k = 0; k < VW; ++k) p.v[k] = FromF<T>(ToF(a.v[k]) + ToF(b.v[k]));
      StorePack<T, VW>(residual + row * C + v * VW, p);
    } else {
      p = LoadPack<T, VW>(x + v * VW);
    }
#pragma unroll
    for (int k = 0; k < VW; ++k) sum += ToF(p.v[k]);
  }
  const float m = WarpSum(sum) / C;

  float sq = 0.0f;
  for (int64_t v = lane; v < nv; v += 32) {
    const Pack<T, VW> p = LoadPack<T, VW>(x + v * VW);
#pragma unroll
    for (int k = 0; k < VW; ++k) {
      const float d = ToF(p.v[k]) - m;
      sq += d * d;
    }
  }
  // IEEE sqrt and division (nvcc's defaults), not rsqrtf, to track the CPU
  // reference closely.
  const float s = 1.0f / sqrtf(WarpSum(sq) / C + kLayerNormEps);

  for (int64_t v = lane; v < nv; v += 32) {
    const Pack<T, VW> p = LoadPack<T, VW>(x + v * VW);
    const Pack<T, VW> w = LoadPack<T, VW>(weight + v * VW);
    const Pack<T, VW> b = LoadPack<T, VW>(bias + v * VW);
    Pack<T, VW> o;
#pragma unroll
    for (int k = 0; k < VW; ++k)
      o.v[k] = FromF<T>((ToF(p.v[k]) - m) * s * ToF(w.v[k]) + ToF(b.v[k]));
    StorePack<T, VW>(out + row * C + v * VW, o);
  }
  if (lane == 0) {
    mean[row] = m;
    rstd[row] = s;
  }
}

// Warp per row (rows strided over the grid). Shared memory holds each warp's
// fp32 accumulators, [warp][dweight | dbias][C], with channel c at
// (c % VW) * nv + c / VW so that a warp's 32 lanes hit 32 different banks.
// At the end the block adds its warps' accumulators in warp order and writes
// one partial row of 2 * C floats to `partials`.
template <typename T, int VW>
__global__ void LayerNormBackwardKernel(int64_t rows, int64_t C, const T* __restrict__ dout,
                                        const T* __restrict__ inp, const T* __restrict__ weight,
                                        const float* __restrict__ mean,
                                        const float* __restrict__ rstd, T* __restrict__ dinp,
                                        float* __restrict__ partials) {
  extern __shared__ float smem[];
  const int warps = blockDim.x / 32;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int64_t nv = C / VW;
  float* acc_w = smem + warp * 2 * C;
  float* acc_b = acc_w + C;
  for (int64_t i = lane; i < 2 * C; i += 32) acc_w[i] = 0.0f;
  __syncwarp();

  for (int64_t row = blockIdx.x * static_cast<int64_t>(warps) + warp; row < rows;
       row += static_cast<int64_t>(gridDim.x) * warps) {
    const float m = mean[row], s = rstd[row];
    const T* dy = dout + row * C;
    const T* x = inp + row * C;
    float g_sum = 0.0f, gx_sum = 0.0f;
    for (int64_t v = lane; v < nv; v += 32) {
      const Pack<T, VW> d = LoadPack<T, VW>(dy + v * VW);
      const Pack<T, VW> p = LoadPack<T, VW>(x + v * VW);
      const Pack<T, VW> w = LoadPack<T, VW>(weight + v * VW);
#pragma unroll
      for (int k = 0; k < VW; ++k) {
        const float xhat = (ToF(p.v[k]) - m) * s;
        const float g = ToF(d.v[k]) * ToF(w.v[k]);
        g_sum += g;
        gx_sum += g * xhat;
      }
    }
    const float g_mean = WarpSum(g_sum) / C;
    const float gx_mean = WarpSum(gx_sum) / C;
    for (int64_t v = lane; v < nv; v += 32) {
      const Pack<T, VW> d = LoadPack<T, VW>(dy + v * VW);
      const Pack<T, VW> p = LoadPack<T, VW>(x + v * VW);
      const Pack<T, VW> w = LoadPack<T, VW>(weight + v * VW);
      Pack<T, VW> dx = LoadPack<T, VW>(dinp + row * C + v * VW);
#pragma unroll
      for (int k = 0; k < VW; ++k) {
        const float xhat = (ToF(p.v[k]) - m) * s;
        const float dyk = ToF(d.v[k]);
        const float g = dyk * ToF(w.v[k]);
        acc_w[k * nv + v] += dyk * xhat;
        acc_b[k * nv + v] += dyk;
        dx.v[k] = FromF<T>(ToF(dx.v[k]) + (g - g_mean - xhat * gx_mean) * s);
      }
      StorePack<T, VW>(dinp + row * C + v * VW, dx);
    }
  }
  __syncthreads();

  float* part = partials + blockIdx.x * 2 * C;
  for (int64_t i = threadIdx.x; i < 2 * C; i += blockDim.x) {
    const int64_t half = i / C, c = i % C;
    const int64_t slot = half * C + (c % VW) * nv + c / VW;
    float total = 0.0f;
    for (int w = 0; w < warps; ++w) total += smem[w * 2 * C + slot];
    part[i] = total;
  }
}

constexpr int kParamCols = 32, kParamRows = 8;

// Column i of the partials ([blocks][2 * C]): thread row y adds blocks
// y, y + 8, ... in order, then row 0 adds the 8 sums in order and updates
// dweight (i < C) or dbias.
template <typename T>
__global__ void __launch_bounds__(kParamCols* kParamRows)
    LayerNormParamGradKernel(int blocks, int64_t C, const float* __restrict__ partials,
                             T* __restrict__ dweight, T* __restrict__ dbias) {
  __shared__ float sums[kParamRows][kParamCols + 1];
  const int64_t i = blockIdx.x * static_cast<int64_t>(kParamCols) + threadIdx.x;
  float total = 0.0f;
  if (i < 2 * C) {
    for (int b = threadIdx.y; b < blocks; b += kParamRows) total += partials[b * 2 * C + i];
  }
  sums[threadIdx.y][threadIdx.x] = total;
  __syncthreads();
  if (threadIdx.y != 0 || i >= 2 * C) return;
  float sum = 0.0f;
#pragma unroll
  for (int y = 0; y < kParamRows; ++y) sum += sums[y][threadIdx.x];
  T* dst = i < C ? dweight + i : dbias + (i - C);
  *dst = FromF<T>(ToF(*dst) + sum);
}

// ---------------------------------------------------------------------------
// Launchers

template <typename T, int VW>
absl::Status LaunchForward(cudaStream_t stream, int64_t rows, int64_t C, const void* inp1,
                           const void* inp2, const void* weight, const void* bias, void* residual,
                           void* out, float* mean, float* rstd) {
  const int64_t blocks = (rows + kForwardWarps - 1) / kForwardWarps;
  if (blocks > INT_MAX)
    return absl::InvalidArgumentError(absl::StrCat("LayerNorm: too many rows: ", rows));
  auto kernel =
      inp2 != nullptr ? LayerNormForwardKernel<T, VW, true> : LayerNormForwardKernel<T, VW, false>;
  kernel<<<static_cast<unsigned>(blocks), kForwardWarps * 32, 0, stream>>>(
      rows, C, static_cast<const T*>(inp1), static_cast<const T*>(inp2),
      static_cast<const T*>(weight), static_cast<const T*>(bias), static_cast<T*>(residual),
      static_cast<T*>(out), mean, rstd);
  ZT_CUDA_RETURN_IF_LAUNCH_ERROR("LayerNormForwardKernel");
  return absl::OkStatus();
}

template <typename T>
absl::Status ForwardTyped(cudaStream_t stream, int64_t rows, int64_t C, const void* inp1,
                          const void* inp2, const void* weight, const void* bias, void* residual,
                          void* out, float* mean, float* rstd) {
  constexpr int kVec = 16 / sizeof(T);
  const bool residual_aligned = inp2 == nullptr || (Aligned16(inp2) && Aligned16(residual));
  if (C % kVec == 0 && Aligned16(inp1) && residual_aligned && Aligned16(weight) &&
      Aligned16(bias) && Aligned16(out)) {
    return LaunchForward<T, kVec>(stream, rows, C, inp1, inp2, weight, bias, residual, out, mean,
                                  rstd);
  }
  return LaunchForward<T, 1>(stream, rows, C, inp1, inp2, weight, bias, residual, out, mean, rstd);
}

template <typename T, int VW>
absl::Status LaunchBackward(cudaStream_t stream, float* partials, int64_t rows, int64_t C,
                            const void* dout, const void* inp, const void* weight,
                            const float* mean, const float* rstd, void* dinp, void* dweight,
                            void* dbias) {
  const int warps = LayerNormBackwardWarps(C);
  const int blocks = static_cast<int>(LayerNormBackwardBlocks(rows, C));
  const size_t smem = static_cast<size_t>(warps) * 2 * C * sizeof(float);
  auto kernel = LayerNormBackwardKernel<T, VW>;
  if (smem > 48 * 1024) {
    ZT_CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(
        kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
  }
  kernel<<<blocks, warps * 32, smem, stream>>>(
      rows, C, static_cast<const T*>(dout), static_cast<const T*>(inp),
      static_cast<const T*>(weight), mean, rstd, static_cast<T*>(dinp), partials);
  ZT_CUDA_RETURN_IF_LAUNCH_ERROR("LayerNormBackwardKernel");
  const unsigned col_blocks = static_cast<unsigned>((2 * C + kParamCols - 1) / kParamCols);
  LayerNormParamGradKernel<T><<<col_blocks, dim3(kParamCols, kParamRows), 0, stream>>>(
      blocks, C, partials, static_cast<T*>(dweight), static_cast<T*>(dbias));
  ZT_CUDA_RETURN_IF_LAUNCH_ERROR("LayerNormParamGradKernel");
  return absl::OkStatus();
}

template <typename T>
absl::Status BackwardTyped(cudaStream_t stream, float* partials, int64_t rows, int64_t C,
                           const void* dout, const void* inp, const void* weight, const float* mean,
                           const float* rstd, void* dinp, void* dweight, void* dbias) {
  constexpr int kVec = 16 / sizeof(T);
  if (C % kVec == 0 && Aligned16(dout) && Aligned16(inp) && Aligned16(weight) && Aligned16(dinp)) {
    return LaunchBackward<T, kVec>(stream, partials, rows, C, dout, inp, weight, mean, rstd, dinp,
                                   dweight, dbias);
  }
  return LaunchBackward<T, 1>(stream, partials, rows, C, dout, inp, weight, mean, rstd, dinp,
                              dweight, dbias);
}

}  // namespace

absl::Status LayerNormForwardCuda(cudaStream_t stream, DType dtype, int64_t rows, int64_t C,
                                  const void* inp1, const void* inp2, const void* weight,
                                  const void* bias, void* residual, void* out, float* mean,
                                  float* rstd) {
  switch (dtype) {
    case DType::kFloat16:
      return ForwardTyped<__half>(stream, rows, C, inp1, inp2, weight, bias, residual, out, mean,
                                  rstd);
    case DType::kBFloat16:
      return ForwardTyped<__nv_bfloat16>(stream, rows, C, inp1, inp2, weight, bias, residual, out,
                                         mean, rstd);
    default:
      return ForwardTyped<float>(stream, rows, C, inp1, inp2, weight, bias, residual, out, mean,
                                 rstd);
  }
}

absl::Status LayerNormBackwardCuda(cudaStream_t stream, void* workspace, size_t workspace_bytes,
                                   DType dtype, int64_t rows, int64_t C, const void* dout,
                                   const void* inp, const void* weight, const float* mean,
                                   const float* rstd, void* dinp, void* dweight, void* dbias) {
  const size_t needed = LayerNormBackwardCudaWorkspaceBytes(rows, C);
  if (workspace == nullptr || workspace_bytes < needed) {
    return absl::ResourceExhaustedError(
        absl::StrCat("LayerNormBackward: needs ", needed, " workspace bytes, OpContext has ",
                     workspace == nullptr ? size_t{0} : workspace_bytes));
  }
  float* partials = static_cast<float*>(workspace);
  switch (dtype) {
    case DType::kFloat16:
      return BackwardTyped<__half>(stream, partials, rows, C, dout, inp, weight, mean, rstd, dinp,
                                   dweight, dbias);
    case DType::kBFloat16:
      return BackwardTyped<__nv_bfloat16>(stream, partials, rows, C, dout, inp, weight, mean, rstd,
                                          dinp, dweight, dbias);
    default:
      return BackwardTyped<float>(stream, partials, rows, C, dout, inp, weight, mean, rstd, dinp,
                                  dweight, dbias);
  }
}

}  // namespace zt::kernels::internal
