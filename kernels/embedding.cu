// CUDA embedding: a vectorized gather-add forward, and a deterministic
// backward. dwte: positions are radix-sorted by token id (the sort is stable,
// so a token's positions stay in increasing order), then one warp per run of
// equal ids sums its dout rows in that order; no float atomics, and the fp32
// sums equal the CPU reference's bit for bit. dwpe: one warp per (t, 32
// vectors) sums over the batch in order.
//
// The backward is two launches when B*T <= 16384 (GPT-2 batches): one block
// sorts all positions in shared memory while the other blocks of the same
// launch compute dwpe, then the dwte kernel. At these sizes each launch of a
// device-wide sort costs more than the sorting itself (CUB's takes six), so
// larger inputs alone take CUB's device radix sort.

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <climits>
#include <cstdint>
#include <cub/block/block_radix_sort.cuh>
#include <cub/device/device_radix_sort.cuh>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "core/library_errors.h"
#include "core/status_macros.h"
#include "kernels/cuda_common.cuh"
#include "kernels/embedding_cuda.h"

namespace zt::kernels::internal {
namespace {

using cuda::Aligned16;
using cuda::FromF;
using cuda::LoadPack;
using cuda::Pack;
using cuda::StorePack;
using cuda::ToF;

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

constexpr int kWarps = 8;  // per block of the row kernels
// Vectors each lane keeps in flight (and, in the dwte kernel, sums at once).
constexpr int kChunk = 4;

// Warp per position; lane l moves the vectors l, l + 32, ... of the row,
// kChunk at a time. A token outside [0, V) reads as a zero wte row: the CPU
// path rejects it, and on the device checking would need a host sync; this
// keeps the read in bounds.
// The minimum blocks per SM in __launch_bounds__ keep bf16 (whose 16-bit
// values ptxas spreads over more registers than fp16's) at full occupancy.
template <typename T, int VW>
__global__ void __launch_bounds__(kWarps * 32, 4)
    EmbeddingForwardKernel(const int32_t* __restrict__ tokens, const T* __restrict__ wte,
                           const T* __restrict__ wpe, T* __restrict__ out, int64_t N, int64_t T_,
                           int64_t C, int64_t V) {
  const int64_t pos = blockIdx.x * static_cast<int64_t>(kWarps) + threadIdx.x / 32;
  if (pos >= N) return;
  const int lane = threadIdx.x % 32;
  const int32_t token = tokens[pos];
  const bool valid = token >= 0 && token < V;
  const T* w_row = wte + (valid ? token : 0) * C;
  const T* p_row = wpe + (pos % T_) * C;
  const int64_t nv = C / VW;
  for (int64_t v0 = lane; v0 < nv; v0 += 32 * kChunk) {
    Pack<T, VW> q[kChunk], w[kChunk];
#pragma unroll
    for (int u = 0; u < kChunk; ++u) {
      const int64_t v = v0 + 32 * u;
      if (v < nv) {
        q[u] = LoadPack<T, VW>(p_row + v * VW);
        if (valid) w[u] = LoadPack<T, VW>(w_row + v * VW);
      }
    }
#pragma unroll
    for (int u = 0; u < kChunk; ++u) {
      const int64_t v = v0 + 32 * u;
      if (v >= nv) continue;
      Pack<T, VW> o = q[u];
      if (valid) {
#pragma unroll
        for (int k = 0; k < VW; ++k) o.v[k] = FromF<T>(ToF(w[u].v[k]) + ToF(q[u].v[k]));
      }
      StorePack<T, VW>(out + pos * C + v * VW, o);
    }
  }
}

// Sort keys: the token id, or V for an id outside [0, V) (skipped later).
__device__ __forceinline__ int32_t SortKey(int32_t token, int32_t V) {
  return token >= 0 && token < V ? token : V;
}

__global__ void PrepareSortKernel(const int32_t* __restrict__ tokens, int N, int32_t V,
                                  int32_t* __restrict__ keys, int32_t* __restrict__ positions) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < N; i += gridDim.x * blockDim.x) {
    keys[i] = SortKey(tokens[i], V);
    positions[i] = i;
  }
}

constexpr int kSortThreads = 1024;

template <int kItems>
using BlockSort = cub::BlockRadixSort<int32_t, kSortThreads, kItems, int32_t>;

// Dynamic shared memory of EmbeddingSortDwpeKernel: the block sort's.
template <int kItems>
constexpr size_t SortSmemBytes() {
  if constexpr (kItems == 0) {
    return 0;
  } else {
    return sizeof(typename BlockSort<kItems>::TempStorage);
  }
}

// With kItems > 0, block 0 stably sorts the N <= 1024 * kItems (key,
// position) pairs into keys_out/positions_out; all other warps (every warp
// with kItems == 0) compute dwpe: warp w sums, for t = w / chunks and the
// vectors (w % chunks) * 32 + lane, dout over the batch in order and adds the
// sum to dwpe once.
template <typename T, int VW, int kItems>
__global__ void __launch_bounds__(kSortThreads)
    EmbeddingSortDwpeKernel(const int32_t* __restrict__ tokens, int N, int32_t V, int key_bits,
                            int32_t* __restrict__ keys_out, int32_t* __restrict__ positions_out,
                            const T* __restrict__ dout, int64_t B, int64_t T_, int64_t C,
                            T* __restrict__ dwpe) {
  constexpr int kSortBlocks = kItems > 0 ? 1 : 0;
  if constexpr (kItems > 0) {
    if (blockIdx.x == 0) {
      extern __shared__ __align__(16) unsigned char smem[];
      auto& temp = *reinterpret_cast<typename BlockSort<kItems>::TempStorage*>(smem);
      // Blocked arrangement: item k of thread j is position j * kItems + k,
      // so stability keeps equal keys in position order. Padding (positions
      // >= N) gets the largest key, V, and sorts after every real position.
      int32_t keys[kItems], positions[kItems];
#pragma unroll
      for (int k = 0; k < kItems; ++k) {
        const int i = threadIdx.x * kItems + k;
        keys[k] = i < N ? SortKey(tokens[i], V) : V;
        positions[k] = i;
      }
      BlockSort<kItems>(temp).SortBlockedToStriped(keys, positions, 0, key_bits);
#pragma unroll
      for (int k = 0; k < kItems; ++k) {
        const int i = k * kSortThreads + threadIdx.x;
        if (i < N) {
          keys_out[i] = keys[k];
          positions_out[i] = positions[k];
        }
      }
      return;
    }
  }
  const int64_t nv = C / VW;
  const int64_t chunks = (nv + 31) / 32;
  const int64_t w =
      (blockIdx.x - kSortBlocks) * static_cast<int64_t>(kSortThreads / 32) + threadIdx.x / 32;
  const int64_t t = w / chunks;
  const int64_t v = (w % chunks) * 32 + threadIdx.x % 32;
  if (t >= T_ || v >= nv) return;
  float acc[VW];
#pragma unroll
  for (int k = 0; k < VW; ++k) acc[k] = 0.0f;
#pragma unroll 8
  for (int64_t b = 0; b < B; ++b) {
    const Pack<T, VW> d = LoadPack<T, VW>(dout + (b * T_ + t) * C + v * VW);
#pragma unroll
    for (int k = 0; k < VW; ++k) acc[k] += ToF(d.v[k]);
  }
  T* g = dwpe + t * C + v * VW;
  Pack<T, VW> p = LoadPack<T, VW>(g);
#pragma unroll
  for (int k = 0; k < VW; ++k) p.v[k] = FromF<T>(ToF(p.v[k]) + acc[k]);
  StorePack<T, VW>(g, p);
}

// Warp per sorted slot i: if i starts a run of equal valid keys, the warp
// sums the dout rows of the run's positions in slot order (lane l owning the
// vectors l, l + 32, ..., kChunk at a time) and adds the sum to dwte once.
// Runs are found 32 slots at a time: keys are sorted, so the slots still in
// the run are a prefix of the warp's lanes.
template <typename T, int VW>
__global__ void __launch_bounds__(kWarps * 32, 3)
    EmbeddingDwteKernel(const int32_t* __restrict__ keys, const int32_t* __restrict__ positions,
                        int N, int32_t V, int64_t C, const T* __restrict__ dout,
                        T* __restrict__ dwte) {
  const int i = blockIdx.x * kWarps + threadIdx.x / 32;
  if (i >= N) return;
  const int32_t key = keys[i];
  if (key == V || (i > 0 && keys[i - 1] == key)) return;
  const int lane = threadIdx.x % 32;
  const int64_t nv = C / VW;
  T* g_row = dwte + key * C;
  // Warp-uniform loop bounds: every lane must reach the shuffles below.
  for (int64_t c0 = 0; c0 < nv; c0 += 32 * kChunk) {
    const int64_t v0 = c0 + lane;
    Pack<T, VW> g[kChunk];
    float acc[kChunk][VW];
#pragma unroll
    for (int u = 0; u < kChunk; ++u) {
      if (v0 + 32 * u < nv) g[u] = LoadPack<T, VW>(g_row + (v0 + 32 * u) * VW);
#pragma unroll
      for (int k = 0; k < VW; ++k) acc[u][k] = 0.0f;
    }
    for (int j0 = i;; j0 += 32) {
      const int j = j0 + lane;
      const bool in_run = j < N && keys[j] == key;
      const int pos = in_run ? positions[j] : 0;
      const int run = __popc(__ballot_sync(0xffffffffu, in_run));
#pragma unroll 2
      for (int r = 0; r < run; ++r) {
        const T* d_row = dout + static_cast<int64_t>(__shfl_sync(0xffffffffu, pos, r)) * C;
#pragma unroll
        for (int u = 0; u < kChunk; ++u) {
          if (v0 + 32 * u < nv) {
            const Pack<T, VW> d = LoadPack<T, VW>(d_row + (v0 + 32 * u) * VW);
#pragma unroll
            for (int k = 0; k < VW; ++k) acc[u][k] += ToF(d.v[k]);
          }
        }
      }
      if (run < 32) break;
    }
#pragma unroll
    for (int u = 0; u < kChunk; ++u) {
      if (v0 + 32 * u >= nv) continue;
#pragma unroll
      for (int k = 0; k < VW; ++k) g[u].v[k] = FromF<T>(ToF(g[u].v[k]) + acc[u][k]);
      StorePack<T, VW>(g_row + (v0 + 32 * u) * VW, g[u]);
    }
  }
}

// ---------------------------------------------------------------------------
// Launchers

constexpr int kThreads = 256;
// Largest B*T sorted by one block (1024 threads x 16 items).
constexpr int kMaxBlockSortItems = 16;
constexpr int kMaxBlockSort = kSortThreads * kMaxBlockSortItems;

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
  EmbeddingForwardKernel<T, VW><<<GridFor(N, kWarps), kWarps * 32, 0, stream>>>(
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

// Where the backward's sort happens: kItems > 0 in EmbeddingSortDwpeKernel's
// first block, kItems == 0 before it (CUB).
struct SortPlan {
  const int32_t* tokens;
  int32_t* keys;       // sorted keys out
  int32_t* positions;  // sorted positions out
};

template <typename T, int VW, int kItems>
absl::Status LaunchSortDwpe(cudaStream_t stream, const SortPlan& plan, int64_t B, int64_t T_,
                            int64_t C, int64_t V, const void* dout, void* dwpe) {
  constexpr size_t smem = SortSmemBytes<kItems>();
  auto kernel = EmbeddingSortDwpeKernel<T, VW, kItems>;
  if (smem > 48 * 1024) {
    ZT_CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(
        kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
  }
  const int64_t dwpe_warps = T_ * ((C / VW + 31) / 32);
  const int64_t blocks =
      (kItems > 0 ? 1 : 0) + (dwpe_warps + kSortThreads / 32 - 1) / (kSortThreads / 32);
  kernel<<<static_cast<unsigned>(blocks), kSortThreads, smem, stream>>>(
      plan.tokens, static_cast<int>(B * T_), static_cast<int32_t>(V), KeyBits(V), plan.keys,
      plan.positions, static_cast<const T*>(dout), B, T_, C, static_cast<T*>(dwpe));
  ZT_CUDA_RETURN_IF_LAUNCH_ERROR("EmbeddingSortDwpeKernel");
  return absl::OkStatus();
}

template <typename T, int VW>
absl::Status LaunchBackward(cudaStream_t stream, const SortPlan& plan, int64_t B, int64_t T_,
                            int64_t C, int64_t V, const void* dout, void* dwte, void* dwpe) {
  const int N = static_cast<int>(B * T_);
  auto sort_and_dwpe = [&]() -> absl::Status {
    if (plan.tokens == nullptr)
      return LaunchSortDwpe<T, VW, 0>(stream, plan, B, T_, C, V, dout, dwpe);
    if (N <= kSortThreads * 8)
      return LaunchSortDwpe<T, VW, 8>(stream, plan, B, T_, C, V, dout, dwpe);
    return LaunchSortDwpe<T, VW, kMaxBlockSortItems>(stream, plan, B, T_, C, V, dout, dwpe);
  };
  ZT_RETURN_IF_ERROR(sort_and_dwpe());
  EmbeddingDwteKernel<T, VW><<<GridFor(N, kWarps), kWarps * 32, 0, stream>>>(
      plan.keys, plan.positions, N, static_cast<int32_t>(V), C, static_cast<const T*>(dout),
      static_cast<T*>(dwte));
  ZT_CUDA_RETURN_IF_LAUNCH_ERROR("EmbeddingDwteKernel");
  return absl::OkStatus();
}

template <typename T>
absl::Status BackwardTyped(cudaStream_t stream, const SortPlan& plan, int64_t B, int64_t T_,
                           int64_t C, int64_t V, const void* dout, void* dwte, void* dwpe) {
  constexpr int kVec = 16 / sizeof(T);
  if (C % kVec == 0 && Aligned16(dout) && Aligned16(dwte) && Aligned16(dwpe)) {
    return LaunchBackward<T, kVec>(stream, plan, B, T_, C, V, dout, dwte, dwpe);
  }
  return LaunchBackward<T, 1>(stream, plan, B, T_, C, V, dout, dwte, dwpe);
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
  const size_t array_bytes = AlignUp(sizeof(int32_t) * N);
  if (N <= kMaxBlockSort) return 2 * array_bytes;
  const absl::StatusOr<size_t> sort_bytes = SortTempBytes(N, V);
  return 4 * array_bytes + (sort_bytes.ok() ? *sort_bytes : 0);
}

absl::Status EmbeddingBackwardCuda(cudaStream_t stream, void* workspace, size_t workspace_bytes,
                                   DType dtype, int64_t B, int64_t T, int64_t C, int64_t V,
                                   const int32_t* tokens, const void* dout, void* dwte,
                                   void* dwpe) {
  ZT_RETURN_IF_ERROR(CheckIndexRange(B, T, V));
  const int N = static_cast<int>(B * T);
  const bool block_sort = N <= kMaxBlockSort;
  size_t sort_bytes = 0;
  if (!block_sort) {
    ZT_ASSIGN_OR_RETURN(sort_bytes, SortTempBytes(N, V));
  }
  const size_t array_bytes = AlignUp(sizeof(int32_t) * N);
  const size_t needed = block_sort ? 2 * array_bytes : 4 * array_bytes + sort_bytes;
  if (workspace == nullptr || workspace_bytes < needed) {
    return absl::ResourceExhaustedError(
        absl::StrCat("EmbeddingBackward: needs ", needed, " workspace bytes, OpContext has ",
                     workspace == nullptr ? size_t{0} : workspace_bytes));
  }
  char* base = static_cast<char*>(workspace);
  SortPlan plan;
  plan.keys = reinterpret_cast<int32_t*>(base);
  plan.positions = reinterpret_cast<int32_t*>(base + array_bytes);
  if (block_sort) {
    plan.tokens = tokens;
  } else {
    plan.tokens = nullptr;
    int32_t* keys_in = reinterpret_cast<int32_t*>(base + 2 * array_bytes);
    int32_t* positions_in = reinterpret_cast<int32_t*>(base + 3 * array_bytes);
    void* sort_temp = base + 4 * array_bytes;
    PrepareSortKernel<<<GridFor(N, kThreads), kThreads, 0, stream>>>(
        tokens, N, static_cast<int32_t>(V), keys_in, positions_in);
    ZT_CUDA_RETURN_IF_LAUNCH_ERROR("PrepareSortKernel");
    ZT_CUDA_RETURN_IF_ERROR(cub::DeviceRadixSort::SortPairs(sort_temp, sort_bytes, keys_in,
                                                            plan.keys, positions_in, plan.positions,
                                                            N, 0, KeyBits(V), stream));
  }
  switch (dtype) {
    case DType::kFloat16:
      return BackwardTyped<__half>(stream, plan, B, T, C, V, dout, dwte, dwpe);
    case DType::kBFloat16:
      return BackwardTyped<__nv_bfloat16>(stream, plan, B, T, C, V, dout, dwte, dwpe);
    default:
      return BackwardTyped<float>(stream, plan, B, T, C, V, dout, dwte, dwpe);
  }
}

}  // namespace zt::kernels::internal
