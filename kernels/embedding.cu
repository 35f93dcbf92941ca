// CUDA embedding: a vectorized gather-add forward, and a deterministic
// backward. dwte: positions are radix-sorted by token id (CUB's sort is
// stable, so a token's positions stay in increasing order), then one block
// per (token, channel chunk) sums its rows in that order; no float atomics,
// and the fp32 sums equal the CPU reference's bit for bit. dwpe: one thread
// per (t, channel vector) sums over the batch in order.

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <climits>
#include <cstdint>
#include <cub/device/device_radix_sort.cuh>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "kernels/core/library_errors.h"
#include "kernels/core/status_macros.h"
#include "kernels/embedding_cuda.h"

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

constexpr size_t AlignUp(size_t n) { return (n + 255) / 256 * 256; }

// Smallest b with V < 2^b: the sort keys are token ids in [0, V] (V marks an
// invalid token), so only these low bits need radix passes.
int KeyBits(int64_t V) {
  int bits = 1;
  while ((int64_t{1} << bits) <= V) ++bits;
  return bits;
}

unsigned GridFor(int64_t work, int threads) {
  const int64_t blocks = (work + threads - 1) / threads;
  return static_cast<unsigned>(blocks < INT_MAX ? blocks : INT_MAX);
}

// ---------------------------------------------------------------------------
// Kernels

// A token outside [0, V) reads as a zero wte row: the CPU path rejects it,
// and on the device checking would need a host sync; this keeps the read in
// bounds.
template <typename T, int VW>
__global__ void EmbeddingForwardKernel(const int32_t* __restrict__ tokens,
                                       const T* __restrict__ wte, const T* __restrict__ wpe,
                                       T* __restrict__ out, int64_t N, int64_t T_, int64_t C,
                                       int64_t V) {
  const int64_t vecs_per_row = C / VW;
  const int64_t total = N * vecs_per_row;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t pos = i / vecs_per_row;
    const int64_t c = (i % vecs_per_row) * VW;
    const int32_t token = tokens[pos];
    const Pack<T, VW> q = LoadPack<T, VW>(wpe + (pos % T_) * C + c);
    Pack<T, VW> o;
    if (token >= 0 && token < V) {
      const Pack<T, VW> w = LoadPack<T, VW>(wte + token * C + c);
#pragma unroll
      for (int k = 0; k < VW; ++k) o.v[k] = FromF<T>(ToF(w.v[k]) + ToF(q.v[k]));
    } else {
      o = q;
    }
    StorePack<T, VW>(out + pos * C + c, o);
  }
}

__global__ void PrepareSortKernel(const int32_t* __restrict__ tokens, int N, int32_t V,
                                  int32_t* __restrict__ keys, int32_t* __restrict__ positions) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < N; i += gridDim.x * blockDim.x) {
    const int32_t token = tokens[i];
    keys[i] = (token >= 0 && token < V) ? token : V;
    positions[i] = i;
  }
}

// Block (i, y): if sorted slot i starts a run of equal valid keys, sums the
// dout rows of the run's positions over channel chunk y, in slot order, and
// adds the sum to dwte once. Every other block exits at once; one block per
// slot avoids a run-length pass and a device-side count.
template <typename T, int VW>
__global__ void EmbeddingDwteKernel(const int32_t* __restrict__ keys,
                                    const int32_t* __restrict__ positions, int N, int32_t V,
                                    int64_t C, const T* __restrict__ dout, T* __restrict__ dwte) {
  const int i = blockIdx.x;
  const int32_t key = keys[i];
  if (key == V || (i > 0 && keys[i - 1] == key)) return;
  const int64_t c = (blockIdx.y * static_cast<int64_t>(blockDim.x) + threadIdx.x) * VW;
  if (c >= C) return;
  float acc[VW];
#pragma unroll
  for (int k = 0; k < VW; ++k) acc[k] = 0.0f;
  int j = i;
  // Keys are sorted, so keys[j + 3] == key means slots j..j+3 all hold key:
  // four independent row loads in flight, still added in slot order.
  for (; j + 3 < N && keys[j + 3] == key; j += 4) {
    Pack<T, VW> d[4];
#pragma unroll
    for (int u = 0; u < 4; ++u) d[u] = LoadPack<T, VW>(dout + positions[j + u] * C + c);
#pragma unroll
    for (int u = 0; u < 4; ++u) {
#pragma unroll
      for (int k = 0; k < VW; ++k) acc[k] += ToF(d[u].v[k]);
    }
  }
  for (; j < N && keys[j] == key; ++j) {
    const Pack<T, VW> d = LoadPack<T, VW>(dout + positions[j] * C + c);
#pragma unroll
    for (int k = 0; k < VW; ++k) acc[k] += ToF(d.v[k]);
  }
  T* g = dwte + key * C + c;
  Pack<T, VW> w = LoadPack<T, VW>(g);
#pragma unroll
  for (int k = 0; k < VW; ++k) w.v[k] = FromF<T>(ToF(w.v[k]) + acc[k]);
  StorePack<T, VW>(g, w);
}

template <typename T, int VW>
__global__ void EmbeddingDwpeKernel(const T* __restrict__ dout, int64_t B, int64_t T_, int64_t C,
                                    T* __restrict__ dwpe) {
  const int64_t vecs_per_row = C / VW;
  const int64_t total = T_ * vecs_per_row;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = i / vecs_per_row;
    const int64_t c = (i % vecs_per_row) * VW;
    float acc[VW];
#pragma unroll
    for (int k = 0; k < VW; ++k) acc[k] = 0.0f;
    for (int64_t b = 0; b < B; ++b) {
      const Pack<T, VW> d = LoadPack<T, VW>(dout + (b * T_ + t) * C + c);
#pragma unroll
      for (int k = 0; k < VW; ++k) acc[k] += ToF(d.v[k]);
    }
    Pack<T, VW> w = LoadPack<T, VW>(dwpe + t * C + c);
#pragma unroll
    for (int k = 0; k < VW; ++k) w.v[k] = FromF<T>(ToF(w.v[k]) + acc[k]);
    StorePack<T, VW>(dwpe + t * C + c, w);
  }
}

// ---------------------------------------------------------------------------
// Launchers

constexpr int kThreads = 256;
constexpr int kDwteThreads = 128;

absl::Status CheckIndexRange(int64_t B, int64_t T, int64_t V) {
  if (B * T > INT_MAX || V >= INT32_MAX) {
    return absl::InvalidArgumentError(
        absl::StrCat("embedding (CUDA): B*T = ", B * T, " and V = ", V, " must each fit in int32"));
  }
  return absl::OkStatus();
}

absl::StatusOr<size_t> SortTempBytes(int N, int64_t V) {
  size_t bytes = 0;
  ZT_CUDA_RETURN_IF_ERROR(cub::DeviceRadixSort::SortPairs(
      nullptr, bytes, static_cast<const int32_t*>(nullptr), static_cast<int32_t*>(nullptr),
      static_cast<const int32_t*>(nullptr), static_cast<int32_t*>(nullptr), N, 0, KeyBits(V)));
  return bytes;
}

template <typename T, int VW>
absl::Status LaunchForward(cudaStream_t stream, int64_t B, int64_t T_, int64_t C, int64_t V,
                           const int32_t* tokens, const void* wte, const void* wpe, void* out) {
  const int64_t N = B * T_;
  EmbeddingForwardKernel<T, VW><<<GridFor(N * C / VW, kThreads), kThreads, 0, stream>>>(
      tokens, static_cast<const T*>(wte), static_cast<const T*>(wpe), static_cast<T*>(out), N, T_,
      C, V);
  ZT_CUDA_RETURN_IF_LAUNCH_ERROR("EmbeddingForwardKernel");
  return absl::OkStatus();
}

template <typename T>
absl::Status ForwardTyped(cudaStream_t stream, int64_t B, int64_t T_, int64_t C, int64_t V,
                          const int32_t* tokens, const void* wte, const void* wpe, void* out) {
  constexpr int kVec = 16 / sizeof(T);
  if (C % kVec == 0 && Aligned16(wte) && Aligned16(wpe) && Aligned16(out)) {
    return LaunchForward<T, kVec>(stream, B, T_, C, V, tokens, wte, wpe, out);
  }
  return LaunchForward<T, 1>(stream, B, T_, C, V, tokens, wte, wpe, out);
}

template <typename T, int VW>
absl::Status LaunchBackwardSums(cudaStream_t stream, const int32_t* keys, const int32_t* positions,
                                int64_t B, int64_t T_, int64_t C, int64_t V, const void* dout,
                                void* dwte, void* dwpe) {
  const int N = static_cast<int>(B * T_);
  const dim3 grid(N, static_cast<unsigned>((C / VW + kDwteThreads - 1) / kDwteThreads));
  EmbeddingDwteKernel<T, VW>
      <<<grid, kDwteThreads, 0, stream>>>(keys, positions, N, static_cast<int32_t>(V), C,
                                          static_cast<const T*>(dout), static_cast<T*>(dwte));
  ZT_CUDA_RETURN_IF_LAUNCH_ERROR("EmbeddingDwteKernel");
  EmbeddingDwpeKernel<T, VW><<<GridFor(T_ * C / VW, kThreads), kThreads, 0, stream>>>(
      static_cast<const T*>(dout), B, T_, C, static_cast<T*>(dwpe));
  ZT_CUDA_RETURN_IF_LAUNCH_ERROR("EmbeddingDwpeKernel");
  return absl::OkStatus();
}

template <typename T>
absl::Status BackwardSumsTyped(cudaStream_t stream, const int32_t* keys, const int32_t* positions,
                               int64_t B, int64_t T_, int64_t C, int64_t V, const void* dout,
                               void* dwte, void* dwpe) {
  constexpr int kVec = 16 / sizeof(T);
  if (C % kVec == 0 && Aligned16(dout) && Aligned16(dwte) && Aligned16(dwpe)) {
    return LaunchBackwardSums<T, kVec>(stream, keys, positions, B, T_, C, V, dout, dwte, dwpe);
  }
  return LaunchBackwardSums<T, 1>(stream, keys, positions, B, T_, C, V, dout, dwte, dwpe);
}

}  // namespace

absl::Status EmbeddingForwardCuda(cudaStream_t stream, DType dtype, int64_t B, int64_t T, int64_t C,
                                  int64_t V, const int32_t* tokens, const void* wte,
                                  const void* wpe, void* out) {
  switch (dtype) {
    case DType::kFloat16:
      return ForwardTyped<__half>(stream, B, T, C, V, tokens, wte, wpe, out);
    case DType::kBFloat16:
      return ForwardTyped<__nv_bfloat16>(stream, B, T, C, V, tokens, wte, wpe, out);
    default:
      return ForwardTyped<float>(stream, B, T, C, V, tokens, wte, wpe, out);
  }
}

size_t EmbeddingBackwardCudaWorkspaceBytes(int64_t B, int64_t T, int64_t V) {
  if (!CheckIndexRange(B, T, V).ok()) return 0;
  const int N = static_cast<int>(B * T);
  const absl::StatusOr<size_t> sort_bytes = SortTempBytes(N, V);
  return 4 * AlignUp(sizeof(int32_t) * N) + (sort_bytes.ok() ? *sort_bytes : 0);
}

absl::Status EmbeddingBackwardCuda(cudaStream_t stream, void* workspace, size_t workspace_bytes,
                                   DType dtype, int64_t B, int64_t T, int64_t C, int64_t V,
                                   const int32_t* tokens, const void* dout, void* dwte,
                                   void* dwpe) {
  ZT_RETURN_IF_ERROR(CheckIndexRange(B, T, V));
  const int N = static_cast<int>(B * T);
  ZT_ASSIGN_OR_RETURN(size_t sort_bytes, SortTempBytes(N, V));
  const size_t array_bytes = AlignUp(sizeof(int32_t) * N);
  const size_t needed = 4 * array_bytes + sort_bytes;
  if (workspace == nullptr || workspace_bytes < needed) {
    return absl::ResourceExhaustedError(
        absl::StrCat("EmbeddingBackward: needs ", needed, " workspace bytes, OpContext has ",
                     workspace == nullptr ? size_t{0} : workspace_bytes));
  }
  char* base = static_cast<char*>(workspace);
  int32_t* keys_in = reinterpret_cast<int32_t*>(base);
  int32_t* keys_out = reinterpret_cast<int32_t*>(base + array_bytes);
  int32_t* positions_in = reinterpret_cast<int32_t*>(base + 2 * array_bytes);
  int32_t* positions_out = reinterpret_cast<int32_t*>(base + 3 * array_bytes);
  void* sort_temp = base + 4 * array_bytes;

  PrepareSortKernel<<<GridFor(N, kThreads), kThreads, 0, stream>>>(
      tokens, N, static_cast<int32_t>(V), keys_in, positions_in);
  ZT_CUDA_RETURN_IF_LAUNCH_ERROR("PrepareSortKernel");
  ZT_CUDA_RETURN_IF_ERROR(cub::DeviceRadixSort::SortPairs(sort_temp, sort_bytes, keys_in, keys_out,
                                                          positions_in, positions_out, N, 0,
                                                          KeyBits(V), stream));
  switch (dtype) {
    case DType::kFloat16:
      return BackwardSumsTyped<__half>(stream, keys_out, positions_out, B, T, C, V, dout, dwte,
                                       dwpe);
    case DType::kBFloat16:
      return BackwardSumsTyped<__nv_bfloat16>(stream, keys_out, positions_out, B, T, C, V, dout,
                                              dwte, dwpe);
    default:
      return BackwardSumsTyped<float>(stream, keys_out, positions_out, B, T, C, V, dout, dwte,
                                      dwpe);
  }
}

}  // namespace zt::kernels::internal
