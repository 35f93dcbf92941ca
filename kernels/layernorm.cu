// CUDA LayerNorm. Forward: one warp per row, fp32 statistics, optionally
// fused with the residual add before it. Backward: one warp per row for
// dinp; dweight and dbias are summed per block, written as per-block partial
// sums to the workspace, and a second kernel adds the partials in block
// order. No float atomics, so the bits never change.
//
// Two variants of each kernel. The common one (16-byte aligned, C a multiple
// of the 16-byte vector, rows of up to 256 vectors: C <= 2048 in 16-bit
// types) keeps the row in registers, so every input byte is read from memory
// once and all of a lane's loads are in flight together; in the backward each
// lane also keeps its channels' dweight/dbias sums, across all its rows, in
// its own slice of shared memory. The generic one handles any C and
// alignment by re-reading the row.

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <initializer_list>
#include <type_traits>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/library_errors.h"
#include "kernels/cuda_common.cuh"
#include "kernels/layernorm.h"
#include "kernels/layernorm_cuda.h"

namespace zt::kernels::internal {
namespace {

using cuda::Aligned16;
using cuda::FromF;
using cuda::LoadPack;
using cuda::Pack;
using cuda::StorePack;
using cuda::ToF;
using cuda::WarpSum;

// ---------------------------------------------------------------------------
// Kernels

constexpr int kForwardWarps = 8;

// 16 bytes of T as four 32-bit words, the form in which the register
// kernels hold their rows: ptxas may give each element of a Pack of eight
// 16-bit structs a register of its own, which doubled the register use of
// the bf16 kernels and made them spill.
struct Words {
  uint32_t w[4];
};

__device__ __forceinline__ Words LoadWords(const void* p) {
  const uint4 u = *static_cast<const uint4*>(p);
  return {{u.x, u.y, u.z, u.w}};
}

__device__ __forceinline__ void StoreWords(void* p, const Words& v) {
  *static_cast<uint4*>(p) = make_uint4(v.w[0], v.w[1], v.w[2], v.w[3]);
}

// Element k of a 16-byte vector of T, as fp32 (k a constant after unrolling).
template <typename T>
__device__ __forceinline__ float Elem(const Words& v, int k);
template <>
__device__ __forceinline__ float Elem<float>(const Words& v, int k) {
  return __uint_as_float(v.w[k]);
}
template <>
__device__ __forceinline__ float Elem<__nv_bfloat16>(const Words& v, int k) {
  const uint32_t w = v.w[k / 2];
  return __uint_as_float(k % 2 == 0 ? w << 16 : w & 0xffff0000u);
}
template <>
__device__ __forceinline__ float Elem<__half>(const Words& v, int k) {
  const uint32_t w = v.w[k / 2];
  return __half2float(__ushort_as_half(static_cast<unsigned short>(k % 2 == 0 ? w : w >> 16)));
}

// 16 / sizeof(T) fp32 values rounded to T (as FromF), as a 16-byte vector.
template <typename T>
__device__ __forceinline__ Words ToWords(const float* f) {
  Words v;
  if constexpr (sizeof(T) == 4) {
#pragma unroll
    for (int j = 0; j < 4; ++j) v.w[j] = __float_as_uint(f[j]);
  } else {
    auto bits = [](float x) -> uint32_t {
      const T h = FromF<T>(x);
      return *reinterpret_cast<const unsigned short*>(&h);
    };
#pragma unroll
    for (int j = 0; j < 4; ++j) v.w[j] = bits(f[2 * j]) | (bits(f[2 * j + 1]) << 16);
  }
  return v;
}

// ---- Row in registers (the common case) ----
//
// Lane l owns the 16-byte vectors l, l + 32, ..., l + 32 (NP - 1) of its row
// (those below C / VW). NP is a template parameter so that the row lives in
// registers; the launcher picks the smallest NP that covers the row.

template <typename T>
constexpr int kVec = 16 / sizeof(T);

template <typename T, int NP, bool kResidual>
__global__ void __launch_bounds__(kForwardWarps * 32, NP <= 4 ? 4 : 2)
    LayerNormForwardRegKernel(int64_t rows, int C, const T* inp1, const T* inp2,
                              const T* __restrict__ weight, const T* __restrict__ bias, T* residual,
                              T* __restrict__ out, float* __restrict__ mean,
                              float* __restrict__ rstd) {
  constexpr int VW = kVec<T>;
  const int lane = threadIdx.x % 32;
  const int64_t row = blockIdx.x * static_cast<int64_t>(kForwardWarps) + threadIdx.x / 32;
  if (row >= rows) return;
  const int nv = C / VW;
  const int64_t base = row * C;

  // Issue every load first: the row, then weight and bias (L2-resident).
  Words x[NP], w[NP], b[NP];
#pragma unroll
  for (int i = 0; i < NP; ++i) {
    const int v = lane + 32 * i;
    if (v < nv) {
      x[i] = LoadWords(inp1 + base + v * VW);
      if constexpr (kResidual) {
        const Words y = LoadWords(inp2 + base + v * VW);
        float r[VW];
#pragma unroll
        for (int k = 0; k < VW; ++k) r[k] = Elem<T>(x[i], k) + Elem<T>(y, k);
        x[i] = ToWords<T>(r);
        StoreWords(residual + base + v * VW, x[i]);
      }
      w[i] = LoadWords(weight + v * VW);
      b[i] = LoadWords(bias + v * VW);
    }
  }

  float sum = 0.0f;
#pragma unroll
  for (int i = 0; i < NP; ++i) {
    if (lane + 32 * i < nv) {
#pragma unroll
      for (int k = 0; k < VW; ++k) sum += Elem<T>(x[i], k);
    }
  }
  const float m = WarpSum(sum) / C;
  float sq = 0.0f;
#pragma unroll
  for (int i = 0; i < NP; ++i) {
    if (lane + 32 * i < nv) {
#pragma unroll
      for (int k = 0; k < VW; ++k) {
        const float d = Elem<T>(x[i], k) - m;
        sq += d * d;
      }
    }
  }
  // IEEE sqrt and division, as in the generic kernel.
  const float s = 1.0f / sqrtf(WarpSum(sq) / C + kLayerNormEps);

#pragma unroll
  for (int i = 0; i < NP; ++i) {
    const int v = lane + 32 * i;
    if (v < nv) {
      float o[VW];
#pragma unroll
      for (int k = 0; k < VW; ++k)
        o[k] = (Elem<T>(x[i], k) - m) * s * Elem<T>(w[i], k) + Elem<T>(b[i], k);
      StoreWords(out + base + v * VW, ToWords<T>(o));
    }
  }
  if (lane == 0) {
    mean[row] = m;
    rstd[row] = s;
  }
}

constexpr int kBackwardWarps = 8;

// Shared memory of the register backward: per warp, NP * VW * 32 fp32
// dweight sums, then as many dbias sums.
template <typename T, int NP>
constexpr size_t BackwardRegSmemBytes() {
  return size_t{kBackwardWarps} * 2 * NP * kVec<T> * 32 * sizeof(float);
}

// Warp w of block j handles rows j * 8 + w, then + 8 * gridDim.x, ... in
// increasing order. Each lane adds dout * xhat and dout for its own channels
// into a private slice of shared memory (slot (i * VW + k) * 32 + lane for
// element k of its vector i: the 32 lanes of a warp hit 32 banks; registers
// would cost 2 * NP * VW more per thread, too many to keep the SM busy). At
// the end the block adds its warps' sums in warp order and writes its
// partial row.
template <typename T, int NP>
__global__ void __launch_bounds__(kBackwardWarps * 32, NP <= 4 ? 2 : 1)
    LayerNormBackwardRegKernel(int64_t rows, int C, const T* __restrict__ dout,
                               const T* __restrict__ inp, const T* __restrict__ weight,
                               const float* __restrict__ mean, const float* __restrict__ rstd,
                               T* __restrict__ dinp, float* __restrict__ partials) {
  constexpr int VW = kVec<T>;
  constexpr int kSlots = NP * VW * 32;  // per warp, for dweight and again for dbias
  extern __shared__ float smem[];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int nv = C / VW;
  float* acc_w = smem + warp * 2 * kSlots + lane;
  float* acc_b = acc_w + kSlots;

  Words w[NP];
#pragma unroll
  for (int i = 0; i < NP; ++i) {
    if (lane + 32 * i < nv) w[i] = LoadWords(weight + (lane + 32 * i) * VW);
#pragma unroll
    for (int k = 0; k < VW; ++k) acc_w[(i * VW + k) * 32] = acc_b[(i * VW + k) * 32] = 0.0f;
  }

  for (int64_t row = blockIdx.x * static_cast<int64_t>(kBackwardWarps) + warp; row < rows;
       row += static_cast<int64_t>(gridDim.x) * kBackwardWarps) {
    const int64_t base = row * C;
    Words dy[NP], x[NP], dx[NP];
#pragma unroll
    for (int i = 0; i < NP; ++i) {
      const int v = lane + 32 * i;
      if (v < nv) {
        dy[i] = LoadWords(dout + base + v * VW);
        x[i] = LoadWords(inp + base + v * VW);
        dx[i] = LoadWords(dinp + base + v * VW);
      }
    }
    const float m = mean[row], s = rstd[row];
    float g_sum = 0.0f, gx_sum = 0.0f;
#pragma unroll
    for (int i = 0; i < NP; ++i) {
      if (lane + 32 * i < nv) {
#pragma unroll
        for (int k = 0; k < VW; ++k) {
          const float xhat = (Elem<T>(x[i], k) - m) * s;
          const float g = Elem<T>(dy[i], k) * Elem<T>(w[i], k);
          g_sum += g;
          gx_sum += g * xhat;
        }
      }
    }
    const float g_mean = WarpSum(g_sum) / C;
    const float gx_mean = WarpSum(gx_sum) / C;
#pragma unroll
    for (int i = 0; i < NP; ++i) {
      const int v = lane + 32 * i;
      if (v < nv) {
        float r[VW];
#pragma unroll
        for (int k = 0; k < VW; ++k) {
          const float xhat = (Elem<T>(x[i], k) - m) * s;
          const float d = Elem<T>(dy[i], k);
          const float g = d * Elem<T>(w[i], k);
          acc_w[(i * VW + k) * 32] += d * xhat;
          acc_b[(i * VW + k) * 32] += d;
          r[k] = Elem<T>(dx[i], k) + (g - g_mean - xhat * gx_mean) * s;
        }
        StoreWords(dinp + base + v * VW, ToWords<T>(r));
      }
    }
  }
  __syncthreads();

  float* part = partials + blockIdx.x * 2 * static_cast<int64_t>(C);
  for (int slot = threadIdx.x; slot < kSlots; slot += blockDim.x) {
    const int l = slot % 32, i = slot / 32 / VW, k = slot / 32 % VW;
    const int v = l + 32 * i;
    if (v >= nv) continue;
    float sum_w = 0.0f, sum_b = 0.0f;
    for (int wi = 0; wi < kBackwardWarps; ++wi) {
      sum_w += smem[wi * 2 * kSlots + slot];
      sum_b += smem[wi * 2 * kSlots + kSlots + slot];
    }
    part[v * VW + k] = sum_w;
    part[C + v * VW + k] = sum_b;
  }
}

// ---- Generic: any C and alignment ----

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

// ---- Parameter gradients from the partial sums ----

constexpr int kParamCols = 32, kParamRows = 32;

// Column i of the partials ([blocks][2 * C]): thread row y adds blocks
// y, y + 32, ... in order (at most 8 loads each, all in flight), then row 0
// adds the 32 sums in order and updates dweight (i < C) or dbias.
template <typename T>
__global__ void __launch_bounds__(kParamCols* kParamRows)
    LayerNormParamGradKernel(int blocks, int64_t C, const float* __restrict__ partials,
                             T* __restrict__ dweight, T* __restrict__ dbias) {
  __shared__ float sums[kParamRows][kParamCols + 1];
  const int64_t i = blockIdx.x * static_cast<int64_t>(kParamCols) + threadIdx.x;
  float total = 0.0f;
  if (i < 2 * C) {
#pragma unroll 8
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

// Vectors per lane for the register kernels (1, 2, 3, 4, 6 or 8: one
// instantiation each), or 0 when the row is not made of aligned 16-byte
// vectors or has more than 256 of them; the generic kernels run then.
template <typename T>
int PacksPerLane(int64_t C, std::initializer_list<const void*> ptrs) {
  if (C % kVec<T> != 0) return 0;
  for (const void* p : ptrs) {
    if (!Aligned16(p)) return 0;
  }
  const int64_t needed = (C / kVec<T> + 31) / 32;
  for (int np : {1, 2, 3, 4, 6, 8}) {
    if (needed <= np) return np;
  }
  return 0;
}

// Calls fn(std::integral_constant<int, np>{}) for np from PacksPerLane.
template <typename Fn>
absl::Status WithPacks(int np, Fn&& fn) {
  switch (np) {
    case 1:
      return fn(std::integral_constant<int, 1>{});
    case 2:
      return fn(std::integral_constant<int, 2>{});
    case 3:
      return fn(std::integral_constant<int, 3>{});
    case 4:
      return fn(std::integral_constant<int, 4>{});
    case 6:
      return fn(std::integral_constant<int, 6>{});
    default:
      return fn(std::integral_constant<int, 8>{});
  }
}

template <typename T, int VW>
absl::Status LaunchForwardGeneric(cudaStream_t stream, unsigned blocks, int64_t rows, int64_t C,
                                  const void* inp1, const void* inp2, const void* weight,
                                  const void* bias, void* residual, void* out, float* mean,
                                  float* rstd) {
  auto kernel =
      inp2 != nullptr ? LayerNormForwardKernel<T, VW, true> : LayerNormForwardKernel<T, VW, false>;
  kernel<<<blocks, kForwardWarps * 32, 0, stream>>>(
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
  const int64_t blocks = (rows + kForwardWarps - 1) / kForwardWarps;
  if (blocks > INT_MAX)
    return absl::InvalidArgumentError(absl::StrCat("LayerNorm: too many rows: ", rows));
  const bool fused = inp2 != nullptr;
  const int np = fused ? PacksPerLane<T>(C, {inp1, inp2, residual, weight, bias, out})
                       : PacksPerLane<T>(C, {inp1, weight, bias, out});
  if (np > 0) {
    return WithPacks(np, [&](auto np_constant) -> absl::Status {
      constexpr int NP = decltype(np_constant)::value;
      auto kernel =
          fused ? LayerNormForwardRegKernel<T, NP, true> : LayerNormForwardRegKernel<T, NP, false>;
      kernel<<<static_cast<unsigned>(blocks), kForwardWarps * 32, 0, stream>>>(
          rows, static_cast<int>(C), static_cast<const T*>(inp1), static_cast<const T*>(inp2),
          static_cast<const T*>(weight), static_cast<const T*>(bias), static_cast<T*>(residual),
          static_cast<T*>(out), mean, rstd);
      ZT_CUDA_RETURN_IF_LAUNCH_ERROR("LayerNormForwardRegKernel");
      return absl::OkStatus();
    });
  }
  const bool residual_aligned = !fused || (Aligned16(inp2) && Aligned16(residual));
  if (C % kVec<T> == 0 && Aligned16(inp1) && residual_aligned && Aligned16(weight) &&
      Aligned16(bias) && Aligned16(out)) {
    return LaunchForwardGeneric<T, kVec<T>>(stream, static_cast<unsigned>(blocks), rows, C, inp1,
                                            inp2, weight, bias, residual, out, mean, rstd);
  }
  return LaunchForwardGeneric<T, 1>(stream, static_cast<unsigned>(blocks), rows, C, inp1, inp2,
                                    weight, bias, residual, out, mean, rstd);
}

// Generic backward: as many warps per block as fit their 2 * C fp32
// accumulators in 48 KiB (at most 8, at least 1; a single warp over 48 KiB
// opts in to more shared memory).
int GenericBackwardWarps(int64_t C) {
  const int64_t fit = (48 * 1024) / (2 * C * static_cast<int64_t>(sizeof(float)));
  return static_cast<int>(std::clamp<int64_t>(fit, 1, 8));
}

template <typename T, int VW>
absl::Status LaunchBackwardGeneric(cudaStream_t stream, int blocks, int warps, float* partials,
                                   int64_t rows, int64_t C, const void* dout, const void* inp,
                                   const void* weight, const float* mean, const float* rstd,
                                   void* dinp) {
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
  return absl::OkStatus();
}

template <typename T>
absl::Status BackwardTyped(cudaStream_t stream, float* partials, int64_t rows, int64_t C,
                           const void* dout, const void* inp, const void* weight, const float* mean,
                           const float* rstd, void* dinp, void* dweight, void* dbias) {
  const int np = PacksPerLane<T>(C, {dout, inp, weight, dinp});
  int blocks = 0;
  if (np > 0) {
    blocks = static_cast<int>(LayerNormBackwardBlocks(rows, kBackwardWarps));
    const absl::Status launched = WithPacks(np, [&](auto np_constant) -> absl::Status {
      constexpr int NP = decltype(np_constant)::value;
      constexpr size_t smem = BackwardRegSmemBytes<T, NP>();
      if (smem > 48 * 1024) {
        ZT_CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(LayerNormBackwardRegKernel<T, NP>,
                                                     cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                     static_cast<int>(smem)));
      }
      LayerNormBackwardRegKernel<T, NP><<<blocks, kBackwardWarps * 32, smem, stream>>>(
          rows, static_cast<int>(C), static_cast<const T*>(dout), static_cast<const T*>(inp),
          static_cast<const T*>(weight), mean, rstd, static_cast<T*>(dinp), partials);
      ZT_CUDA_RETURN_IF_LAUNCH_ERROR("LayerNormBackwardRegKernel");
      return absl::OkStatus();
    });
    if (!launched.ok()) return launched;
  } else {
    const int warps = GenericBackwardWarps(C);
    blocks = static_cast<int>(LayerNormBackwardBlocks(rows, warps));
    const bool vec = C % kVec<T> == 0 && Aligned16(dout) && Aligned16(inp) && Aligned16(weight) &&
                     Aligned16(dinp);
    const absl::Status launched =
        vec ? LaunchBackwardGeneric<T, kVec<T>>(stream, blocks, warps, partials, rows, C, dout, inp,
                                                weight, mean, rstd, dinp)
            : LaunchBackwardGeneric<T, 1>(stream, blocks, warps, partials, rows, C, dout, inp,
                                          weight, mean, rstd, dinp);
    if (!launched.ok()) return launched;
  }
  const unsigned col_blocks = static_cast<unsigned>((2 * C + kParamCols - 1) / kParamCols);
  LayerNormParamGradKernel<T><<<col_blocks, dim3(kParamCols, kParamRows), 0, stream>>>(
      blocks, C, partials, static_cast<T*>(dweight), static_cast<T*>(dbias));
  ZT_CUDA_RETURN_IF_LAUNCH_ERROR("LayerNormParamGradKernel");
  return absl::OkStatus();
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
