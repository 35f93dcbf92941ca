// Flash-attention-style causal attention: the [T, T] score matrix is never
// stored. Forward walks key tiles with an online softmax and writes out and
// the row log-sum-exp; backward recomputes probabilities from that lse.
//
// Every kernel uses the same shape: a block of 4 warps owns a tile of 32
// rows (queries, or keys in the dK/dV pass), 8 rows per warp, and walks the
// other side in tiles of 32 so that lane j owns column j of a score tile.
// Rows are staged in shared memory as fp32, zero-padded to HSP channels (32,
// 64, 128 or 256) so any head size up to 256 shares four instantiations;
// zero channels add nothing to a dot product and are never written back.
// Math is plain fp32 FMA (no tensor cores): same operation order on every
// run, and fp32 accumulation whatever the storage type.
//
// Backward is deterministic: one pass per key tile accumulates dK and dV in
// registers over all later queries, a second pass per query tile accumulates
// dQ over all earlier keys, so no two blocks ever write the same element and
// no atomics are needed. The price is computing the scores twice.
//
// fp16/bf16 heads of 64 or 128 channels take the tensor-core kernels further
// down (same passes, same outputs, mma.sync instead of FMA); everything else
// takes the fp32 kernels.

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <type_traits>

#include "absl/strings/str_cat.h"
#include "kernels/attention_cuda.h"
#include "core/library_errors.h"
#include "kernels/cuda_common.cuh"

namespace zt::kernels::attention_internal {
namespace {

using cuda::FromF;
using cuda::ToF;
using cuda::WarpMax;
using cuda::WarpSum;

constexpr int kWarps = 4;
constexpr int kRowsPerWarp = 8;
// Rows per block tile and columns per inner tile; equal to the warp size so a
// lane maps to one column of a score tile.
constexpr int kTile = kWarps * kRowsPerWarp;
constexpr int kThreads = kWarps * 32;
static_assert(kTile == 32, "lane j owns column j of a 32-wide tile");

// ---------------------------------------------------------------------------
// Device helpers
// ---------------------------------------------------------------------------

// Copies rows [row0, row0 + kTile) of one head (src points at row 0, channel
// 0 of that head; rows are `ld` elements apart) into dst[r * kStride + d] as
// fp32. Rows past `rows` and channels past `hs` become zero. Consecutive
// threads take consecutive channels, so global reads coalesce.
template <int HSP, int kStride, typename T>
__device__ __forceinline__ void LoadTile(float* dst, const T* src, int64_t ld, int row0, int rows,
                                         int hs) {
  for (int idx = threadIdx.x; idx < kTile * HSP; idx += kThreads) {
    const int r = idx / HSP;
    const int d = idx % HSP;
    const int row = row0 + r;
    dst[r * kStride + d] = (row < rows && d < hs) ? ToF(src[row * ld + d]) : 0.0f;
  }
}

// Shared-memory strides. A tile read "lane j takes row j" is padded by one
// float so the 32 lanes hit 32 different banks; a tile read as a broadcast
// (all lanes the same row and channel) or by channel (lane takes channel
// c * 32 + lane) needs no pad.
template <int HSP>
constexpr int Padded() {
  return HSP + 1;
}

// ---------------------------------------------------------------------------
// Kernels
// ---------------------------------------------------------------------------

template <int HSP>
constexpr size_t ForwardSmemBytes() {
  // q (broadcast), k (lane per key), v (by channel), per-warp probabilities.
  return sizeof(float) * (kTile * HSP + kTile * Padded<HSP>() + kTile * HSP + kTile * kTile);
}

// grid = (B * NH, ceil(T / kTile)); blockIdx.y counts query tiles from the
// last, so the longest-running blocks (late queries see the most keys) start
// first.
template <typename T, int HSP>
__global__ void __launch_bounds__(kThreads)
    AttentionForwardKernel(const T* __restrict__ qkv, T* __restrict__ out, float* __restrict__ lse,
                           int seq, int C, int NH, int hs, float scale) {
  constexpr int kCols = HSP / 32;  // channels per lane in the output rows
  extern __shared__ float smem[];
  float* q_s = smem;
  float* k_s = q_s + kTile * HSP;
  float* v_s = k_s + kTile * Padded<HSP>();
  float* p_s = v_s + kTile * HSP;

  const int bh = blockIdx.x;
  const int b = bh / NH, h = bh % NH;
  const int q0 = (gridDim.y - 1 - blockIdx.y) * kTile;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t ld = 3 * static_cast<int64_t>(C);
  const T* q_base = qkv + static_cast<int64_t>(b) * seq * ld + h * hs;
  const T* k_base = q_base + C;
  const T* v_base = q_base + 2 * C;
  float* p_w = p_s + warp * kRowsPerWarp * kTile;

  LoadTile<HSP, HSP>(q_s, q_base, ld, q0, seq, hs);

  float m[kRowsPerWarp], l[kRowsPerWarp], o[kRowsPerWarp][kCols];
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    m[r] = -INFINITY;
    l[r] = 0.0f;
#pragma unroll
    for (int c = 0; c < kCols; ++c) o[r][c] = 0.0f;
  }

  // Causal: key tiles past the diagonal tile (k0 > q0) are fully masked.
  for (int k0 = 0; k0 <= q0; k0 += kTile) {
    __syncthreads();  // the previous tile's k_s, v_s, p_s are no longer read
    LoadTile<HSP, Padded<HSP>()>(k_s, k_base, ld, k0, seq, hs);
    LoadTile<HSP, HSP>(v_s, v_base, ld, k0, seq, hs);
    __syncthreads();

    float s[kRowsPerWarp];
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) s[r] = 0.0f;
#pragma unroll 8
    for (int d = 0; d < HSP; ++d) {
      const float kd = k_s[lane * Padded<HSP>() + d];
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; ++r) s[r] += q_s[(warp * kRowsPerWarp + r) * HSP + d] * kd;
    }

    const int key = k0 + lane;
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
      const int query = q0 + warp * kRowsPerWarp + r;
      const bool valid = key <= query && key < seq;
      const float score = valid ? s[r] * scale : -INFINITY;
      const float m_new = fmaxf(m[r], WarpMax(score));
      // Every row has key k0 <= query in every tile it visits, so m_new is
      // finite; the guard keeps -inf - -inf (NaN) out if that ever changes.
      const float m_ref = m_new == -INFINITY ? 0.0f : m_new;
      const float prob = valid ? expf(score - m_ref) : 0.0f;
      const float alpha = expf(m[r] - m_ref);  // rescales earlier tiles; 0 on the first
      l[r] = l[r] * alpha + WarpSum(prob);
      m[r] = m_new;
#pragma unroll
      for (int c = 0; c < kCols; ++c) o[r][c] *= alpha;
      p_w[r * kTile + lane] = prob;
    }
    __syncwarp();

    for (int j = 0; j < kTile; ++j) {
      float vd[kCols];
#pragma unroll
      for (int c = 0; c < kCols; ++c) vd[c] = v_s[j * HSP + c * 32 + lane];
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; ++r) {
        const float prob = p_w[r * kTile + j];
#pragma unroll
        for (int c = 0; c < kCols; ++c) o[r][c] += prob * vd[c];
      }
    }
  }

#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    const int query = q0 + warp * kRowsPerWarp + r;
    if (query >= seq) continue;
    const float inv_l = 1.0f / l[r];
    T* o_row = out + (static_cast<int64_t>(b) * seq + query) * C + h * hs;
#pragma unroll
    for (int c = 0; c < kCols; ++c) {
      const int d = c * 32 + lane;
      if (d < hs) o_row[d] = FromF<T>(o[r][c] * inv_l);
    }
    if (lane == 0) lse[static_cast<int64_t>(bh) * seq + query] = m[r] + logf(l[r]);
  }
}

// D[bh, t] = dout[b, t, head h] . out[b, t, head h]; one warp per row.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    AttentionRowDotKernel(const T* __restrict__ dout, const T* __restrict__ out,
                          float* __restrict__ row_dot, int64_t rows, int seq, int C, int NH,
                          int hs) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarps + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= rows) return;
  const int64_t bh = row / seq;
  const int t = static_cast<int>(row % seq);
  const int64_t b = bh / NH;
  const int h = static_cast<int>(bh % NH);
  const int64_t offset = (b * seq + t) * C + h * hs;
  float sum = 0.0f;
  for (int d = lane; d < hs; d += 32) sum += ToF(dout[offset + d]) * ToF(out[offset + d]);
  sum = WarpSum(sum);
  if (lane == 0) row_dot[row] = sum;
}

// The same with kLanes = hs / 8 lanes per (row, head), each reading 16
// bytes of dout and out: a warp's loads are contiguous, and the flat index
// is a 32-bit (b, t, h) (the caller checks B * T * NH fits). The one-warp-
// per-row kernel above reads 2 bytes per lane and divides in 64 bits; on an
// H200 it ran at a fifth of the memory bandwidth (28.5 us at B=8).
template <typename T, int kLanes>
__global__ void __launch_bounds__(kThreads)
    AttentionRowDotVecKernel(const T* __restrict__ dout, const T* __restrict__ out,
                             float* __restrict__ row_dot, int items, int seq, int C, int NH,
                             int hs) {
  const int tid = blockIdx.x * kThreads + threadIdx.x;
  const int item = tid / kLanes;  // ((b * seq) + t) * NH + h
  const int part = tid % kLanes;
  float sum = 0.0f;
  int bt = 0, h = 0;
  if (item < items) {
    bt = item / NH;
    h = item % NH;
    const int64_t offset = static_cast<int64_t>(bt) * C + h * hs + part * 8;
    const cuda::Pack<T, 8> a = cuda::LoadPack<T, 8>(dout + offset);
    const cuda::Pack<T, 8> o = cuda::LoadPack<T, 8>(out + offset);
#pragma unroll
    for (int k = 0; k < 8; ++k) sum += ToF(a.v[k]) * ToF(o.v[k]);
  }
  // kLanes divides 32, so each (row, head) owns an aligned group of lanes.
#pragma unroll
  for (int offset = kLanes / 2; offset > 0; offset /= 2) {
    sum += __shfl_xor_sync(0xffffffffu, sum, offset);
  }
  if (item < items && part == 0) {
    const int b = bt / seq, t = bt % seq;
    row_dot[(static_cast<int64_t>(b) * NH + h) * seq + t] = sum;
  }
}

template <int HSP>
constexpr size_t BackwardKVSmemBytes() {
  // k, v (broadcast), q, dout (lane per query), lse, D, per-warp P and dS.
  return sizeof(float) *
         (2 * kTile * HSP + 2 * kTile * Padded<HSP>() + 2 * kTile + 2 * kTile * kTile);
}

// dK and dV for one tile of 32 keys: accumulated in registers over every
// query tile at or after it (earlier queries cannot see these keys).
// grid = (B * NH, ceil(T / kTile)); early key tiles have the most work and
// blockIdx.y already starts there.
template <typename T, int HSP>
__global__ void __launch_bounds__(kThreads)
    AttentionBackwardKVKernel(const T* __restrict__ dout, const T* __restrict__ qkv,
                              const float* __restrict__ lse, const float* __restrict__ row_dot,
                              T* __restrict__ dqkv, int seq, int C, int NH, int hs, float scale) {
  constexpr int kCols = HSP / 32;
  extern __shared__ float smem[];
  float* k_s = smem;
  float* v_s = k_s + kTile * HSP;
  float* q_s = v_s + kTile * HSP;
  float* do_s = q_s + kTile * Padded<HSP>();
  float* lse_s = do_s + kTile * Padded<HSP>();
  float* d_s = lse_s + kTile;
  float* p_s = d_s + kTile;
  float* ds_s = p_s + kTile * kTile;

  const int bh = blockIdx.x;
  const int b = bh / NH, h = bh % NH;
  const int k0 = blockIdx.y * kTile;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t ld = 3 * static_cast<int64_t>(C);
  const T* q_base = qkv + static_cast<int64_t>(b) * seq * ld + h * hs;
  const T* do_base = dout + static_cast<int64_t>(b) * seq * C + h * hs;
  const float* lse_bh = lse + static_cast<int64_t>(bh) * seq;
  const float* dot_bh = row_dot + static_cast<int64_t>(bh) * seq;
  float* p_w = p_s + warp * kRowsPerWarp * kTile;
  float* ds_w = ds_s + warp * kRowsPerWarp * kTile;

  LoadTile<HSP, HSP>(k_s, q_base + C, ld, k0, seq, hs);
  LoadTile<HSP, HSP>(v_s, q_base + 2 * C, ld, k0, seq, hs);

  float dk[kRowsPerWarp][kCols], dv[kRowsPerWarp][kCols];
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
#pragma unroll
    for (int c = 0; c < kCols; ++c) dk[r][c] = dv[r][c] = 0.0f;
  }

  for (int q0 = k0; q0 < seq; q0 += kTile) {
    __syncthreads();  // the previous query tile is no longer read
    LoadTile<HSP, Padded<HSP>()>(q_s, q_base, ld, q0, seq, hs);
    LoadTile<HSP, Padded<HSP>()>(do_s, do_base, C, q0, seq, hs);
    if (threadIdx.x < kTile) {
      const int t = q0 + threadIdx.x;
      lse_s[threadIdx.x] = t < seq ? lse_bh[t] : 0.0f;
      d_s[threadIdx.x] = t < seq ? dot_bh[t] : 0.0f;
    }
    __syncthreads();

    // Lane j takes query q0 + j against this warp's 8 keys.
    float s[kRowsPerWarp], dp[kRowsPerWarp];
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) s[r] = dp[r] = 0.0f;
#pragma unroll 8
    for (int d = 0; d < HSP; ++d) {
      const float qd = q_s[lane * Padded<HSP>() + d];
      const float dod = do_s[lane * Padded<HSP>() + d];
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; ++r) {
        s[r] += qd * k_s[(warp * kRowsPerWarp + r) * HSP + d];
        dp[r] += dod * v_s[(warp * kRowsPerWarp + r) * HSP + d];
      }
    }
    const int query = q0 + lane;
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
      const int key = k0 + warp * kRowsPerWarp + r;
      const bool valid = key <= query && query < seq && key < seq;
      const float prob = valid ? expf(s[r] * scale - lse_s[lane]) : 0.0f;
      p_w[r * kTile + lane] = prob;
      ds_w[r * kTile + lane] = prob * (dp[r] - d_s[lane]);
    }
    __syncwarp();

    for (int j = 0; j < kTile; ++j) {
      float qd[kCols], dod[kCols];
#pragma unroll
      for (int c = 0; c < kCols; ++c) {
        qd[c] = q_s[j * Padded<HSP>() + c * 32 + lane];
        dod[c] = do_s[j * Padded<HSP>() + c * 32 + lane];
      }
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; ++r) {
        const float prob = p_w[r * kTile + j];
        const float dscore = ds_w[r * kTile + j];
#pragma unroll
        for (int c = 0; c < kCols; ++c) {
          dv[r][c] += prob * dod[c];
          dk[r][c] += dscore * qd[c];
        }
      }
    }
  }

#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    const int key = k0 + warp * kRowsPerWarp + r;
    if (key >= seq) continue;
    T* dk_row = dqkv + (static_cast<int64_t>(b) * seq + key) * ld + C + h * hs;
    T* dv_row = dk_row + C;
#pragma unroll
    for (int c = 0; c < kCols; ++c) {
      const int d = c * 32 + lane;
      if (d < hs) {
        dk_row[d] = FromF<T>(dk[r][c] * scale);
        dv_row[d] = FromF<T>(dv[r][c]);
      }
    }
  }
}

template <int HSP>
constexpr size_t BackwardQSmemBytes() {
  // q, dout (broadcast), k, v (lane per key), per-warp dS.
  return sizeof(float) * (2 * kTile * HSP + 2 * kTile * Padded<HSP>() + kTile * kTile);
}

// dQ for one tile of 32 queries, accumulated over every key tile up to the
// diagonal. grid as the forward kernel's.
template <typename T, int HSP>
__global__ void __launch_bounds__(kThreads)
    AttentionBackwardQKernel(const T* __restrict__ dout, const T* __restrict__ qkv,
                             const float* __restrict__ lse, const float* __restrict__ row_dot,
                             T* __restrict__ dqkv, int seq, int C, int NH, int hs, float scale) {
  constexpr int kCols = HSP / 32;
  extern __shared__ float smem[];
  float* q_s = smem;
  float* do_s = q_s + kTile * HSP;
  float* k_s = do_s + kTile * HSP;
  float* v_s = k_s + kTile * Padded<HSP>();
  float* ds_s = v_s + kTile * Padded<HSP>();

  const int bh = blockIdx.x;
  const int b = bh / NH, h = bh % NH;
  const int q0 = (gridDim.y - 1 - blockIdx.y) * kTile;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t ld = 3 * static_cast<int64_t>(C);
  const T* q_base = qkv + static_cast<int64_t>(b) * seq * ld + h * hs;
  const T* do_base = dout + static_cast<int64_t>(b) * seq * C + h * hs;
  float* ds_w = ds_s + warp * kRowsPerWarp * kTile;

  LoadTile<HSP, HSP>(q_s, q_base, ld, q0, seq, hs);
  LoadTile<HSP, HSP>(do_s, do_base, C, q0, seq, hs);

  float row_lse[kRowsPerWarp], row_d[kRowsPerWarp], dq[kRowsPerWarp][kCols];
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    const int query = q0 + warp * kRowsPerWarp + r;
    row_lse[r] = query < seq ? lse[static_cast<int64_t>(bh) * seq + query] : 0.0f;
    row_d[r] = query < seq ? row_dot[static_cast<int64_t>(bh) * seq + query] : 0.0f;
#pragma unroll
    for (int c = 0; c < kCols; ++c) dq[r][c] = 0.0f;
  }

  for (int k0 = 0; k0 <= q0; k0 += kTile) {
    __syncthreads();  // the previous key tile is no longer read
    LoadTile<HSP, Padded<HSP>()>(k_s, q_base + C, ld, k0, seq, hs);
    LoadTile<HSP, Padded<HSP>()>(v_s, q_base + 2 * C, ld, k0, seq, hs);
    __syncthreads();

    // Lane j takes key k0 + j against this warp's 8 queries.
    float s[kRowsPerWarp], dp[kRowsPerWarp];
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) s[r] = dp[r] = 0.0f;
#pragma unroll 8
    for (int d = 0; d < HSP; ++d) {
      const float kd = k_s[lane * Padded<HSP>() + d];
      const float vd = v_s[lane * Padded<HSP>() + d];
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; ++r) {
        s[r] += q_s[(warp * kRowsPerWarp + r) * HSP + d] * kd;
        dp[r] += do_s[(warp * kRowsPerWarp + r) * HSP + d] * vd;
      }
    }
    const int key = k0 + lane;
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
      const int query = q0 + warp * kRowsPerWarp + r;
      const bool valid = key <= query && key < seq && query < seq;
      const float prob = valid ? expf(s[r] * scale - row_lse[r]) : 0.0f;
      ds_w[r * kTile + lane] = prob * (dp[r] - row_d[r]);
    }
    __syncwarp();

    for (int j = 0; j < kTile; ++j) {
      float kd[kCols];
#pragma unroll
      for (int c = 0; c < kCols; ++c) kd[c] = k_s[j * Padded<HSP>() + c * 32 + lane];
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; ++r) {
        const float dscore = ds_w[r * kTile + j];
#pragma unroll
        for (int c = 0; c < kCols; ++c) dq[r][c] += dscore * kd[c];
      }
    }
  }

#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    const int query = q0 + warp * kRowsPerWarp + r;
    if (query >= seq) continue;
    T* dq_row = dqkv + (static_cast<int64_t>(b) * seq + query) * ld + h * hs;
#pragma unroll
    for (int c = 0; c < kCols; ++c) {
      const int d = c * 32 + lane;
      if (d < hs) dq_row[d] = FromF<T>(dq[r][c] * scale);
    }
  }
}

// ---------------------------------------------------------------------------
// Tensor-core kernels: fp16/bf16 storage, head size 64 or 128
// ---------------------------------------------------------------------------
//
// The same three passes as above (forward; backward dK/dV per key tile, then
// dQ per query tile, so still no atomics and no two blocks writing one
// element), but every product runs on mma.sync.m16n8k16 with fp32
// accumulators: Q K^T and P V forward; K Q^T, V dO^T, P^T dO, dS^T Q in the
// dK/dV pass; Q K^T, dO V^T, dS K in the dQ pass.
//
// A block is 4 warps over a 64-row tile, 16 rows per warp, and walks the
// other side in 64-column tiles. Tiles stay in shared memory in the storage
// type with rows padded by 8 elements (16 bytes), which puts the 8 row
// addresses of every ldmatrix in 8 different bank groups.
//
// Score tiles live in the mma accumulator layout: lane (g = lane / 4,
// t = lane % 4) holds rows g and g + 8, columns 2t and 2t + 1 of each 8-wide
// n-tile. That is also the A-operand layout of the next mma, so
// probabilities (and dS) go from accumulators to operands in registers; they
// are rounded to the storage type on the way, the one place this path rounds
// an intermediate to 16 bits (the fp32 path never does). Softmax statistics
// (row max, row sum, lse) and all accumulation stay fp32. Softmax runs in
// base 2 (exp2 of log2(e)-scaled scores), converted back for the lse.

constexpr int kTcWarps = 4;
constexpr int kTcThreads = kTcWarps * 32;
constexpr int kTcRows = kTcWarps * 16;  // rows per block tile
constexpr int kTcCols = 64;             // columns per inner tile
static_assert(kTcRows == kTcCols, "causal tile skipping assumes square tiles");
constexpr float kLog2E = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

template <int HS>
constexpr int TcStride() {
  return HS + 8;
}

template <int HS>
constexpr size_t TcTileBytes() {
  return sizeof(uint16_t) * kTcRows * TcStride<HS>();
}

// Two fp32 values as one 32-bit operand register: `lo` in the low half.
template <typename T>
__device__ __forceinline__ uint32_t Pack2(float lo, float hi);
template <>
__device__ __forceinline__ uint32_t Pack2<__half>(float lo, float hi) {
  const __half2 v = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
}
template <>
__device__ __forceinline__ uint32_t Pack2<__nv_bfloat16>(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
}

// d += a * b for a 16x16 (row) by 16x8 (col) product, fp32 accumulators.
template <typename T>
__device__ __forceinline__ void Mma(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                    uint32_t b1);
template <>
__device__ __forceinline__ void Mma<__half>(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                            uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
template <>
__device__ __forceinline__ void Mma<__nv_bfloat16>(float (&d)[4], const uint32_t (&a)[4],
                                                   uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ void LdMatrix(uint32_t (&r)[4], const void* smem) {
  const uint32_t addr = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr)
               : "memory");
}

__device__ __forceinline__ void LdMatrixTrans(uint32_t (&r)[4], const void* smem) {
  const uint32_t addr = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr)
               : "memory");
}

// Operand loaders for a tile stored row-major in shared memory (`stride`
// elements per row). Lane l addresses row l % 8 of 8x8 matrix l / 8.
//
// A operand (16x16 at rows r0.., columns c0..): matrices (rows 0-7, cols
// 0-7), (8-15, 0-7), (0-7, 8-15), (8-15, 8-15) are a0..a3.
template <typename T>
__device__ __forceinline__ void LoadA(uint32_t (&a)[4], const T* tile, int stride, int r0, int c0) {
  const int lane = threadIdx.x % 32, m = lane / 8;
  LdMatrix(a, tile + (r0 + (m & 1) * 8 + lane % 8) * stride + c0 + (m >> 1) * 8);
}

// B operands of two adjacent n-tiles when the tile stores B transposed (row
// = n, column = k, e.g. K for Q K^T): {b[0], b[1]} for n0..n0+7 and
// {b[2], b[3]} for n0+8..n0+15, k from k0 to k0 + 15.
template <typename T>
__device__ __forceinline__ void LoadBFromNK(uint32_t (&b)[4], const T* tile, int stride, int n0,
                                            int k0) {
  const int lane = threadIdx.x % 32, m = lane / 8;
  LdMatrix(b, tile + (n0 + (m >> 1) * 8 + lane % 8) * stride + k0 + (m & 1) * 8);
}

// The same when the tile stores B as is (row = k, column = n, e.g. V for
// P V): ldmatrix.trans hands each lane the column pair the mma expects.
template <typename T>
__device__ __forceinline__ void LoadBFromKN(uint32_t (&b)[4], const T* tile, int stride, int k0,
                                            int n0) {
  const int lane = threadIdx.x % 32, m = lane / 8;
  LdMatrixTrans(b, tile + (k0 + (m & 1) * 8 + lane % 8) * stride + n0 + (m >> 1) * 8);
}

// Starts copying rows [row0, row0 + kTcRows) of one head (src at row 0,
// channel 0; rows `ld` elements apart) into a padded tile with cp.async, 16
// bytes per copy. Rows past `seq` are zero-filled (a copy of 0 source bytes
// from row 0, which always exists): a zero V or dO row times a zero
// probability must stay zero, never NaN. The data is there after
// CpAsyncWait and a barrier, so the next step's tile can load while this
// one is in use.
template <typename T, int HS>
__device__ __forceinline__ void TcLoadTileAsync(T* dst, const T* __restrict__ src, int64_t ld,
                                                int row0, int seq) {
  constexpr int kChunks = HS / 8;
  for (int idx = threadIdx.x; idx < kTcRows * kChunks; idx += kTcThreads) {
    const int r = idx / kChunks, c = idx % kChunks;
    const int row = row0 + r;
    const bool in = row < seq;
    const T* from = src + (in ? row : 0) * ld + c * 8;
    const uint32_t to =
        static_cast<uint32_t>(__cvta_generic_to_shared(dst + r * TcStride<HS>() + c * 8));
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(to), "l"(from),
                 "r"(in ? 16 : 0)
                 : "memory");
  }
}

__device__ __forceinline__ void CpAsyncCommit() {
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}

// Waits until at most N of this thread's committed copy groups are pending.
template <int N>
__device__ __forceinline__ void CpAsyncWait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// Row max and sum over the 4 lanes (t = 0..3) that share a row; the
// butterfly leaves the same bits in all four.
__device__ __forceinline__ float QuadMax(float v) {
  v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
  return fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2));
}
__device__ __forceinline__ float QuadSum(float v) {
  v += __shfl_xor_sync(0xffffffffu, v, 1);
  return v + __shfl_xor_sync(0xffffffffu, v, 2);
}

// Packs the accumulators of n-tiles 2kc and 2kc + 1 (16 columns) into the A
// operand that multiplies rows kc * 16.. of the next product's B.
template <typename T>
__device__ __forceinline__ void AccToA(uint32_t (&a)[4], const float (&lo)[4],
                                       const float (&hi)[4]) {
  a[0] = Pack2<T>(lo[0], lo[1]);
  a[1] = Pack2<T>(lo[2], lo[3]);
  a[2] = Pack2<T>(hi[0], hi[1]);
  a[3] = Pack2<T>(hi[2], hi[3]);
}

// Writes a warp's 16 x HS fp32 accumulator rows (times `mul`) to global rows
// row0 and row0 + 8 (lane's g), skipping rows past `seq`.
template <typename T, int HS>
__device__ __forceinline__ void TcStoreRows(T* __restrict__ base, int64_t ld, int row0, int seq,
                                            const float (&acc)[HS / 8][4], float mul_lo,
                                            float mul_hi) {
  const int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int row = row0 + g + half * 8;
    if (row >= seq) continue;
    const float mul = half == 0 ? mul_lo : mul_hi;
    T* dst = base + row * ld + 2 * t;
#pragma unroll
    for (int nt = 0; nt < HS / 8; ++nt) {
      *reinterpret_cast<uint32_t*>(dst + nt * 8) =
          Pack2<T>(acc[nt][2 * half] * mul, acc[nt][2 * half + 1] * mul);
    }
  }
}

// Sets the scores of a warp's 16 x 64 tile (rows row_lo + {0, 8}, keys k0 +
// column; accumulator layout) that a causal row may not see, or whose key is
// past seq, to -inf. Only the diagonal tile (k0 == q0) holds such scores:
// below it every key precedes every row, and keys past seq never lie below
// the diagonal. The backward kernels call this on that tile only: the
// per-score mask cost about as many instructions as the rest of their
// elementwise work, and at HS = 64 they are bound by instruction issue more
// than by the tensor cores.
__device__ __forceinline__ void MaskScores(float (&s)[kTcCols / 8][4], int k0, int row_lo,
                                           int seq) {
  const int t = threadIdx.x % 4;
#pragma unroll
  for (int nt = 0; nt < kTcCols / 8; ++nt) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int key = k0 + nt * 8 + 2 * t + (e & 1);
      const int row = row_lo + (e >> 1) * 8;
      if (key > row || key >= seq) s[nt][e] = -INFINITY;
    }
  }
}

// The same for the transposed tile of the dK/dV pass: rows are keys key_lo +
// {0, 8}, columns queries q0 + column. Needed on the diagonal tile and on a
// query tile that reaches past seq (padding rows of Q and dO are zero, but
// their lse and D are not stored).
__device__ __forceinline__ void MaskScoresTransposed(float (&st)[kTcCols / 8][4], int q0,
                                                     int key_lo, int seq) {
  const int t = threadIdx.x % 4;
#pragma unroll
  for (int nt = 0; nt < kTcCols / 8; ++nt) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int query = q0 + nt * 8 + 2 * t + (e & 1);
      const int key = key_lo + (e >> 1) * 8;
      if (key > query || query >= seq || key >= seq) st[nt][e] = -INFINITY;
    }
  }
}

template <int HS>
constexpr size_t TcForwardSmemBytes() {
  return 5 * TcTileBytes<HS>();  // q, and k, v twice (this tile, the next)
}

// grid = (B * NH, ceil(T / 64)), query tiles from the last as in
// AttentionForwardKernel.
template <typename T, int HS>
__global__ void __launch_bounds__(kTcThreads)
    TcForwardKernel(const T* __restrict__ qkv, T* __restrict__ out, float* __restrict__ lse,
                    int seq, int C, int NH, float scale_log2) {
  constexpr int kS = TcStride<HS>();
  extern __shared__ uint4 tc_smem[];
  constexpr int kTileElems = kTcRows * kS;
  T* q_s = reinterpret_cast<T*>(tc_smem);
  T* kv_s = q_s + kTileElems;  // buffer i: k at kv_s + 2i tiles, v one tile later

  const int bh = blockIdx.x;
  const int b = bh / NH, h = bh % NH;
  const int q0 = (gridDim.y - 1 - blockIdx.y) * kTcRows;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const int hs = HS;
  const int64_t ld = 3 * static_cast<int64_t>(C);
  const T* q_base = qkv + static_cast<int64_t>(b) * seq * ld + h * hs;

  TcLoadTileAsync<T, HS>(q_s, q_base, ld, q0, seq);
  TcLoadTileAsync<T, HS>(kv_s, q_base + C, ld, 0, seq);
  TcLoadTileAsync<T, HS>(kv_s + kTileElems, q_base + 2 * C, ld, 0, seq);
  CpAsyncCommit();
  CpAsyncWait<0>();
  __syncthreads();
  uint32_t qf[HS / 16][4];
#pragma unroll
  for (int kc = 0; kc < HS / 16; ++kc) LoadA(qf[kc], q_s, kS, warp * 16, kc * 16);

  // Rows g (index 0) and g + 8 (index 1) of this warp's 16.
  const int row_lo = q0 + warp * 16 + g;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
  float o[HS / 8][4];
#pragma unroll
  for (int nt = 0; nt < HS / 8; ++nt) o[nt][0] = o[nt][1] = o[nt][2] = o[nt][3] = 0.0f;

  for (int k0 = 0, buf = 0; k0 <= q0; k0 += kTcCols, buf ^= 1) {
    const T* k_s = kv_s + 2 * buf * kTileElems;
    const T* v_s = k_s + kTileElems;
    if (k0 + kTcCols <= q0) {
      // Prefetch the next tile into the other buffer; the barrier that ended
      // the previous step means no warp still reads it.
      T* next = kv_s + 2 * (buf ^ 1) * kTileElems;
      TcLoadTileAsync<T, HS>(next, q_base + C, ld, k0 + kTcCols, seq);
      TcLoadTileAsync<T, HS>(next + kTileElems, q_base + 2 * C, ld, k0 + kTcCols, seq);
      CpAsyncCommit();
      CpAsyncWait<1>();  // this tile's group is done, the next may be pending
    } else {
      CpAsyncWait<0>();
    }
    __syncthreads();

    float s[kTcCols / 8][4];
#pragma unroll
    for (int nt = 0; nt < kTcCols / 8; ++nt) s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.0f;
#pragma unroll
    for (int kc = 0; kc < HS / 16; ++kc) {
#pragma unroll
      for (int np = 0; np < kTcCols / 16; ++np) {
        uint32_t bf[4];
        LoadBFromNK(bf, k_s, kS, np * 16, kc * 16);
        Mma<T>(s[2 * np], qf[kc], bf[0], bf[1]);
        Mma<T>(s[2 * np + 1], qf[kc], bf[2], bf[3]);
      }
    }

    // Mask (causal, and keys past seq), scale, and the running max. (Masking
    // only the diagonal tile, as the backward kernels do, was tried: ptxas
    // then takes about 20 more registers at HS = 64, which costs one of the
    // four blocks per SM; not measured yet, so the forward stays as it was.)
    float tile_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int nt = 0; nt < kTcCols / 8; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int key = k0 + nt * 8 + 2 * t + (e & 1);
        const int row = row_lo + (e >> 1) * 8;
        s[nt][e] = (key <= row && key < seq) ? s[nt][e] * scale_log2 : -INFINITY;
        tile_max[e >> 1] = fmaxf(tile_max[e >> 1], s[nt][e]);
      }
    }
    float alpha[2], m_ref[2];
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const float m_new = fmaxf(m[i], QuadMax(tile_max[i]));
      // Each row sees key k0 <= row in every tile it visits, so m_new is
      // finite; the guard keeps -inf - -inf (NaN) out if that ever changes.
      m_ref[i] = m_new == -INFINITY ? 0.0f : m_new;
      alpha[i] = exp2f(m[i] - m_ref[i]);  // 0 on the first tile
      m[i] = m_new;
    }
    float row_sum[2] = {0.0f, 0.0f};
#pragma unroll
    for (int nt = 0; nt < kTcCols / 8; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        s[nt][e] = exp2f(s[nt][e] - m_ref[e >> 1]);  // exp2(-inf) = 0 for masked keys
        row_sum[e >> 1] += s[nt][e];
      }
    }
    // l stays a per-lane partial sum (the quad shares alpha); it is reduced
    // across the quad once, at the end.
#pragma unroll
    for (int i = 0; i < 2; ++i) l[i] = l[i] * alpha[i] + row_sum[i];
#pragma unroll
    for (int nt = 0; nt < HS / 8; ++nt) {
      o[nt][0] *= alpha[0];
      o[nt][1] *= alpha[0];
      o[nt][2] *= alpha[1];
      o[nt][3] *= alpha[1];
    }

#pragma unroll
    for (int kc = 0; kc < kTcCols / 16; ++kc) {
      uint32_t pa[4];
      AccToA<T>(pa, s[2 * kc], s[2 * kc + 1]);
#pragma unroll
      for (int np = 0; np < HS / 16; ++np) {
        uint32_t bf[4];
        LoadBFromKN(bf, v_s, kS, kc * 16, np * 16);
        Mma<T>(o[2 * np], pa, bf[0], bf[1]);
        Mma<T>(o[2 * np + 1], pa, bf[2], bf[3]);
      }
    }
    __syncthreads();  // this buffer is free for the step after next's prefetch
  }

  float inv_l[2];
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    l[i] = QuadSum(l[i]);
    inv_l[i] = 1.0f / l[i];
  }
  TcStoreRows<T, HS>(out + static_cast<int64_t>(b) * seq * C + h * hs, C, q0 + warp * 16, seq, o,
                     inv_l[0], inv_l[1]);
  if (t == 0) {
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const int row = row_lo + i * 8;
      if (row < seq) lse[static_cast<int64_t>(bh) * seq + row] = m[i] * kLn2 + logf(l[i]);
    }
  }
}

template <int HS>
constexpr size_t TcBackwardKVSmemBytes() {
  // k, v; then twice (this query tile, the next) q, dout, and lse (log2
  // units) and D per query.
  return 6 * TcTileBytes<HS>() + 4 * sizeof(float) * kTcCols;
}

// dK and dV for one tile of 64 keys (warp w: keys 16w..16w+15), accumulated
// over every query tile at or after it. Scores are computed transposed
// (S^T = K Q^T, dP^T = V dO^T) so that P^T and dS^T come out in the A
// layout for dV += P^T dO and dK += dS^T Q. grid = (B * NH, ceil(T / 64)).
// Three blocks per SM at HS = 64 (the register budget the kernel fits in
// without spills); at 128 the accumulators need the full 255.
template <typename T, int HS>
__global__ void __launch_bounds__(kTcThreads, HS == 64 ? 3 : 1)
    TcBackwardKVKernel(const T* __restrict__ dout, const T* __restrict__ qkv,
                       const float* __restrict__ lse, const float* __restrict__ row_dot,
                       T* __restrict__ dqkv, int seq, int C, int NH, float scale,
                       float scale_log2) {
  constexpr int kS = TcStride<HS>();
  extern __shared__ uint4 tc_smem[];
  constexpr int kTileElems = kTcRows * kS;
  T* k_s = reinterpret_cast<T*>(tc_smem);
  T* v_s = k_s + kTileElems;
  T* qdo_s = v_s + kTileElems;  // buffer i: q at qdo_s + 2i tiles, dout one tile later
  float* stats_s = reinterpret_cast<float*>(qdo_s + 4 * kTileElems);  // buffer i: lse, D

  const int bh = blockIdx.x;
  const int b = bh / NH, h = bh % NH;
  const int k0 = blockIdx.y * kTcRows;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const int hs = HS;
  const int64_t ld = 3 * static_cast<int64_t>(C);
  const T* q_base = qkv + static_cast<int64_t>(b) * seq * ld + h * hs;
  const T* do_base = dout + static_cast<int64_t>(b) * seq * C + h * hs;
  const float* lse_bh = lse + static_cast<int64_t>(bh) * seq;
  const float* dot_bh = row_dot + static_cast<int64_t>(bh) * seq;

  // Stages query tile q0 (q, dout, lse, D) into buffer `buf`.
  const auto stage = [&](int q0, int buf) {
    T* q_dst = qdo_s + 2 * buf * kTileElems;
    TcLoadTileAsync<T, HS>(q_dst, q_base, ld, q0, seq);
    TcLoadTileAsync<T, HS>(q_dst + kTileElems, do_base, C, q0, seq);
    CpAsyncCommit();
    if (threadIdx.x < kTcCols) {
      const int q = q0 + threadIdx.x;
      float* stats = stats_s + 2 * buf * kTcCols;
      stats[threadIdx.x] = q < seq ? lse_bh[q] * kLog2E : 0.0f;
      stats[kTcCols + threadIdx.x] = q < seq ? dot_bh[q] : 0.0f;
    }
  };
  TcLoadTileAsync<T, HS>(k_s, q_base + C, ld, k0, seq);
  TcLoadTileAsync<T, HS>(v_s, q_base + 2 * C, ld, k0, seq);
  stage(k0, 0);  // commits k and v with it

  const int key_lo = k0 + warp * 16 + g;
  float dk[HS / 8][4], dv[HS / 8][4];
#pragma unroll
  for (int nt = 0; nt < HS / 8; ++nt) {
#pragma unroll
    for (int e = 0; e < 4; ++e) dk[nt][e] = dv[nt][e] = 0.0f;
  }

  for (int q0 = k0, buf = 0; q0 < seq; q0 += kTcCols, buf ^= 1) {
    const T* q_s = qdo_s + 2 * buf * kTileElems;
    const T* do_s = q_s + kTileElems;
    const float* lse_s = stats_s + 2 * buf * kTcCols;
    const float* d_s = lse_s + kTcCols;
    if (q0 + kTcCols < seq) {
      stage(q0 + kTcCols, buf ^ 1);  // the other buffer: free since the last barrier
      CpAsyncWait<1>();
    } else {
      CpAsyncWait<0>();
    }
    __syncthreads();

    float st[kTcCols / 8][4], dpt[kTcCols / 8][4];
#pragma unroll
    for (int nt = 0; nt < kTcCols / 8; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) st[nt][e] = dpt[nt][e] = 0.0f;
    }
#pragma unroll
    for (int kc = 0; kc < HS / 16; ++kc) {
      uint32_t ka[4], va[4];
      LoadA(ka, k_s, kS, warp * 16, kc * 16);
      LoadA(va, v_s, kS, warp * 16, kc * 16);
#pragma unroll
      for (int np = 0; np < kTcCols / 16; ++np) {
        uint32_t qb[4], db[4];
        LoadBFromNK(qb, q_s, kS, np * 16, kc * 16);
        LoadBFromNK(db, do_s, kS, np * 16, kc * 16);
        Mma<T>(st[2 * np], ka, qb[0], qb[1]);
        Mma<T>(st[2 * np + 1], ka, qb[2], qb[3]);
        Mma<T>(dpt[2 * np], va, db[0], db[1]);
        Mma<T>(dpt[2 * np + 1], va, db[2], db[3]);
      }
    }
    // st becomes P^T, dpt becomes dS^T. Only the diagonal tile and a tile
    // reaching past seq need the mask (see MaskScores); a masked score is
    // -inf, so its probability and dS are 0.
    if (q0 == k0 || q0 + kTcCols > seq) MaskScoresTransposed(st, q0, key_lo, seq);
#pragma unroll
    for (int nt = 0; nt < kTcCols / 8; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int qi = nt * 8 + 2 * t + (e & 1);
        const float prob = exp2f(fmaf(st[nt][e], scale_log2, -lse_s[qi]));
        st[nt][e] = prob;
        dpt[nt][e] = prob * (dpt[nt][e] - d_s[qi]);
      }
    }
#pragma unroll
    for (int kc = 0; kc < kTcCols / 16; ++kc) {
      uint32_t pa[4], dsa[4];
      AccToA<T>(pa, st[2 * kc], st[2 * kc + 1]);
      AccToA<T>(dsa, dpt[2 * kc], dpt[2 * kc + 1]);
#pragma unroll
      for (int np = 0; np < HS / 16; ++np) {
        uint32_t db[4], qb[4];
        LoadBFromKN(db, do_s, kS, kc * 16, np * 16);
        LoadBFromKN(qb, q_s, kS, kc * 16, np * 16);
        Mma<T>(dv[2 * np], pa, db[0], db[1]);
        Mma<T>(dv[2 * np + 1], pa, db[2], db[3]);
        Mma<T>(dk[2 * np], dsa, qb[0], qb[1]);
        Mma<T>(dk[2 * np + 1], dsa, qb[2], qb[3]);
      }
    }
    __syncthreads();  // this buffer is free for the step after next's prefetch
  }

  T* dk_base = dqkv + static_cast<int64_t>(b) * seq * ld + C + h * hs;
  TcStoreRows<T, HS>(dk_base, ld, k0 + warp * 16, seq, dk, scale, scale);
  TcStoreRows<T, HS>(dk_base + C, ld, k0 + warp * 16, seq, dv, 1.0f, 1.0f);
}

template <int HS>
constexpr size_t TcBackwardQSmemBytes() {
  return 6 * TcTileBytes<HS>();  // q, dout, and k, v twice (this tile, the next)
}

// dQ for one tile of 64 queries, over every key tile up to the diagonal.
// grid as TcForwardKernel's.
template <typename T, int HS>
__global__ void __launch_bounds__(kTcThreads)
    TcBackwardQKernel(const T* __restrict__ dout, const T* __restrict__ qkv,
                      const float* __restrict__ lse, const float* __restrict__ row_dot,
                      T* __restrict__ dqkv, int seq, int C, int NH, float scale, float scale_log2) {
  constexpr int kS = TcStride<HS>();
  extern __shared__ uint4 tc_smem[];
  constexpr int kTileElems = kTcRows * kS;
  T* q_s = reinterpret_cast<T*>(tc_smem);
  T* do_s = q_s + kTileElems;
  T* kv_s = do_s + kTileElems;  // buffer i: k at kv_s + 2i tiles, v one tile later

  const int bh = blockIdx.x;
  const int b = bh / NH, h = bh % NH;
  const int q0 = (gridDim.y - 1 - blockIdx.y) * kTcRows;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4;
  const int hs = HS;
  const int64_t ld = 3 * static_cast<int64_t>(C);
  const T* q_base = qkv + static_cast<int64_t>(b) * seq * ld + h * hs;
  const T* do_base = dout + static_cast<int64_t>(b) * seq * C + h * hs;

  TcLoadTileAsync<T, HS>(q_s, q_base, ld, q0, seq);
  TcLoadTileAsync<T, HS>(do_s, do_base, C, q0, seq);
  TcLoadTileAsync<T, HS>(kv_s, q_base + C, ld, 0, seq);
  TcLoadTileAsync<T, HS>(kv_s + kTileElems, q_base + 2 * C, ld, 0, seq);
  CpAsyncCommit();

  const int row_lo = q0 + warp * 16 + g;
  float row_lse[2], row_d[2];
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int row = row_lo + i * 8;
    row_lse[i] = row < seq ? lse[static_cast<int64_t>(bh) * seq + row] * kLog2E : 0.0f;
    row_d[i] = row < seq ? row_dot[static_cast<int64_t>(bh) * seq + row] : 0.0f;
  }
  float dq[HS / 8][4];
#pragma unroll
  for (int nt = 0; nt < HS / 8; ++nt) dq[nt][0] = dq[nt][1] = dq[nt][2] = dq[nt][3] = 0.0f;

  for (int k0 = 0, buf = 0; k0 <= q0; k0 += kTcCols, buf ^= 1) {
    const T* k_s = kv_s + 2 * buf * kTileElems;
    const T* v_s = k_s + kTileElems;
    if (k0 + kTcCols <= q0) {
      T* next = kv_s + 2 * (buf ^ 1) * kTileElems;  // free since the last barrier
      TcLoadTileAsync<T, HS>(next, q_base + C, ld, k0 + kTcCols, seq);
      TcLoadTileAsync<T, HS>(next + kTileElems, q_base + 2 * C, ld, k0 + kTcCols, seq);
      CpAsyncCommit();
      CpAsyncWait<1>();
    } else {
      CpAsyncWait<0>();
    }
    __syncthreads();

    float s[kTcCols / 8][4], dp[kTcCols / 8][4];
#pragma unroll
    for (int nt = 0; nt < kTcCols / 8; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) s[nt][e] = dp[nt][e] = 0.0f;
    }
#pragma unroll
    for (int kc = 0; kc < HS / 16; ++kc) {
      uint32_t qa[4], da[4];
      LoadA(qa, q_s, kS, warp * 16, kc * 16);
      LoadA(da, do_s, kS, warp * 16, kc * 16);
#pragma unroll
      for (int np = 0; np < kTcCols / 16; ++np) {
        uint32_t kb[4], vb[4];
        LoadBFromNK(kb, k_s, kS, np * 16, kc * 16);
        LoadBFromNK(vb, v_s, kS, np * 16, kc * 16);
        Mma<T>(s[2 * np], qa, kb[0], kb[1]);
        Mma<T>(s[2 * np + 1], qa, kb[2], kb[3]);
        Mma<T>(dp[2 * np], da, vb[0], vb[1]);
        Mma<T>(dp[2 * np + 1], da, vb[2], vb[3]);
      }
    }
    // dp becomes dS. Only the diagonal tile needs the mask (see
    // MaskScores); a masked score is -inf, so its dS is 0.
    if (k0 == q0) MaskScores(s, k0, row_lo, seq);
#pragma unroll
    for (int nt = 0; nt < kTcCols / 8; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int i = e >> 1;
        const float prob = exp2f(fmaf(s[nt][e], scale_log2, -row_lse[i]));
        dp[nt][e] = prob * (dp[nt][e] - row_d[i]);
      }
    }
#pragma unroll
    for (int kc = 0; kc < kTcCols / 16; ++kc) {
      uint32_t dsa[4];
      AccToA<T>(dsa, dp[2 * kc], dp[2 * kc + 1]);
#pragma unroll
      for (int np = 0; np < HS / 16; ++np) {
        uint32_t kb[4];
        LoadBFromKN(kb, k_s, kS, kc * 16, np * 16);
        Mma<T>(dq[2 * np], dsa, kb[0], kb[1]);
        Mma<T>(dq[2 * np + 1], dsa, kb[2], kb[3]);
      }
    }
    __syncthreads();  // this buffer is free for the step after next's prefetch
  }

  TcStoreRows<T, HS>(dqkv + static_cast<int64_t>(b) * seq * ld + h * hs, ld, q0 + warp * 16, seq,
                     dq, scale, scale);
}

// ---------------------------------------------------------------------------
// Launchers
// ---------------------------------------------------------------------------

struct Shape {
  int64_t B, T, C, NH, hs;
};

absl::Status CheckShape(const Shape& s, const char* op) {
  constexpr int64_t kIntMax = 2147483647;
  if (s.hs > kMaxCudaHeadSize) {
    return absl::UnimplementedError(absl::StrCat(op, ": head size C / NH = ", s.hs,
                                                 " exceeds the CUDA kernels' limit of ",
                                                 kMaxCudaHeadSize));
  }
  // Row and tile indices are int inside the kernels; grid.y holds the tiles.
  if (s.T > (int64_t{1} << 30) || (s.T + kTile - 1) / kTile > 65535 || s.C * 3 > kIntMax ||
      s.B * s.NH > kIntMax) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": shape B=", s.B, " T=", s.T, " C=", s.C,
                                                   " NH=", s.NH,
                                                   " is too large for the CUDA kernels"));
  }
  return absl::OkStatus();
}

template <typename Kernel>
absl::Status SetSmem(Kernel kernel, size_t bytes) {
  // Above 48 KiB a kernel must opt in to dynamic shared memory.
  ZT_CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                               static_cast<int>(bytes)));
  return absl::OkStatus();
}

// D = rowsum(dout * out) per (b, h, t), the vectorized kernel where the
// shape allows it (16-bit storage, head size a multiple of 8 whose 16-byte
// pieces a warp divides evenly, aligned rows, a 32-bit flat index).
template <typename T>
absl::Status LaunchRowDot(cudaStream_t stream, const Shape& s, const T* dout, const T* out,
                          float* row_dot) {
  const int seq = static_cast<int>(s.T), C = static_cast<int>(s.C), NH = static_cast<int>(s.NH),
            hs = static_cast<int>(s.hs);
  const int64_t items = s.B * s.NH * s.T;
  const int lanes = hs / 8;
  if constexpr (sizeof(T) == 2) {
    if (hs % 8 == 0 && lanes > 0 && 32 % lanes == 0 && C % 8 == 0 &&
        items * lanes < (int64_t{1} << 31) - kThreads && cuda::Aligned16(dout) &&
        cuda::Aligned16(out)) {
      const unsigned blocks = static_cast<unsigned>((items * lanes + kThreads - 1) / kThreads);
      const auto launch = [&](auto lanes_tag) {
        AttentionRowDotVecKernel<T, decltype(lanes_tag)::value><<<blocks, kThreads, 0, stream>>>(
            dout, out, row_dot, static_cast<int>(items), seq, C, NH, hs);
      };
      switch (lanes) {
        case 1: launch(std::integral_constant<int, 1>{}); break;
        case 2: launch(std::integral_constant<int, 2>{}); break;
        case 4: launch(std::integral_constant<int, 4>{}); break;
        case 8: launch(std::integral_constant<int, 8>{}); break;
        case 16: launch(std::integral_constant<int, 16>{}); break;
        default: launch(std::integral_constant<int, 32>{}); break;
      }
      ZT_CUDA_RETURN_IF_LAUNCH_ERROR("AttentionRowDotVecKernel");
      return absl::OkStatus();
    }
  }
  AttentionRowDotKernel<T>
      <<<static_cast<unsigned>((items + kWarps - 1) / kWarps), kThreads, 0, stream>>>(
          dout, out, row_dot, items, seq, C, NH, hs);
  ZT_CUDA_RETURN_IF_LAUNCH_ERROR("AttentionRowDotKernel");
  return absl::OkStatus();
}

template <typename T, int HSP>
absl::Status ForwardTyped(cudaStream_t stream, const Shape& s, const void* qkv, void* out,
                          float* lse) {
  const auto kernel = AttentionForwardKernel<T, HSP>;
  constexpr size_t smem = ForwardSmemBytes<HSP>();
  if (absl::Status st = SetSmem(kernel, smem); !st.ok()) return st;
  const dim3 grid(static_cast<unsigned>(s.B * s.NH),
                  static_cast<unsigned>((s.T + kTile - 1) / kTile));
  kernel<<<grid, kThreads, smem, stream>>>(static_cast<const T*>(qkv), static_cast<T*>(out), lse,
                                           static_cast<int>(s.T), static_cast<int>(s.C),
                                           static_cast<int>(s.NH), static_cast<int>(s.hs),
                                           1.0f / std::sqrt(static_cast<float>(s.hs)));
  ZT_CUDA_RETURN_IF_LAUNCH_ERROR("AttentionForwardKernel");
  return absl::OkStatus();
}

template <typename T, int HSP>
absl::Status BackwardTyped(cudaStream_t stream, const Shape& s, const void* dout, const void* qkv,
                           const void* out, const float* lse, float* row_dot, void* dqkv) {
  const int seq = static_cast<int>(s.T), C = static_cast<int>(s.C), NH = static_cast<int>(s.NH),
            hs = static_cast<int>(s.hs);
  const float scale = 1.0f / std::sqrt(static_cast<float>(s.hs));
  const T* dout_t = static_cast<const T*>(dout);
  const T* qkv_t = static_cast<const T*>(qkv);
  T* dqkv_t = static_cast<T*>(dqkv);

  if (absl::Status st = LaunchRowDot<T>(stream, s, dout_t, static_cast<const T*>(out), row_dot);
      !st.ok()) {
    return st;
  }

  const dim3 grid(static_cast<unsigned>(s.B * s.NH),
                  static_cast<unsigned>((s.T + kTile - 1) / kTile));
  const auto kv_kernel = AttentionBackwardKVKernel<T, HSP>;
  constexpr size_t kv_smem = BackwardKVSmemBytes<HSP>();
  if (absl::Status st = SetSmem(kv_kernel, kv_smem); !st.ok()) return st;
  kv_kernel<<<grid, kThreads, kv_smem, stream>>>(dout_t, qkv_t, lse, row_dot, dqkv_t, seq, C, NH,
                                                 hs, scale);
  ZT_CUDA_RETURN_IF_LAUNCH_ERROR("AttentionBackwardKVKernel");

  const auto q_kernel = AttentionBackwardQKernel<T, HSP>;
  constexpr size_t q_smem = BackwardQSmemBytes<HSP>();
  if (absl::Status st = SetSmem(q_kernel, q_smem); !st.ok()) return st;
  q_kernel<<<grid, kThreads, q_smem, stream>>>(dout_t, qkv_t, lse, row_dot, dqkv_t, seq, C, NH, hs,
                                               scale);
  ZT_CUDA_RETURN_IF_LAUNCH_ERROR("AttentionBackwardQKernel");
  return absl::OkStatus();
}

template <typename T>
struct TypeTag {
  using type = T;
};
template <int N>
struct SizeTag {
  static constexpr int value = N;
};

// Set to false to send every dtype and head size to the fp32-FMA kernels.
constexpr bool kEnableTensorCores = true;

// The tensor-core kernels take fp16/bf16 heads of 64 or 128 channels whose
// rows start on 16 bytes (for the 16-byte tile loads; with hs a multiple of
// 8 that is the base pointers' alignment) and 4 bytes for the paired stores.
bool UseTensorCores(DType dtype, int64_t hs, std::initializer_list<const void*> ptrs) {
  if (!kEnableTensorCores) return false;
  if (dtype != DType::kFloat16 && dtype != DType::kBFloat16) return false;
  if (hs != 64 && hs != 128) return false;
  for (const void* ptr : ptrs) {
    if (reinterpret_cast<uintptr_t>(ptr) % 16 != 0) return false;
  }
  return true;
}

template <typename T, int HS>
absl::Status TcForwardTyped(cudaStream_t stream, const Shape& s, const void* qkv, void* out,
                            float* lse) {
  const auto kernel = TcForwardKernel<T, HS>;
  constexpr size_t smem = TcForwardSmemBytes<HS>();
  if (absl::Status st = SetSmem(kernel, smem); !st.ok()) return st;
  const float scale = 1.0f / std::sqrt(static_cast<float>(s.hs));
  const dim3 grid(static_cast<unsigned>(s.B * s.NH),
                  static_cast<unsigned>((s.T + kTcRows - 1) / kTcRows));
  kernel<<<grid, kTcThreads, smem, stream>>>(static_cast<const T*>(qkv), static_cast<T*>(out), lse,
                                             static_cast<int>(s.T), static_cast<int>(s.C),
                                             static_cast<int>(s.NH), scale * kLog2E);
  ZT_CUDA_RETURN_IF_LAUNCH_ERROR("TcForwardKernel");
  return absl::OkStatus();
}

template <typename T, int HS>
absl::Status TcBackwardTyped(cudaStream_t stream, const Shape& s, const void* dout, const void* qkv,
                             const void* out, const float* lse, float* row_dot, void* dqkv) {
  const int seq = static_cast<int>(s.T), C = static_cast<int>(s.C), NH = static_cast<int>(s.NH);
  const float scale = 1.0f / std::sqrt(static_cast<float>(s.hs));
  const T* dout_t = static_cast<const T*>(dout);
  const T* qkv_t = static_cast<const T*>(qkv);
  T* dqkv_t = static_cast<T*>(dqkv);

  if (absl::Status st = LaunchRowDot<T>(stream, s, dout_t, static_cast<const T*>(out), row_dot);
      !st.ok()) {
    return st;
  }

  const dim3 grid(static_cast<unsigned>(s.B * s.NH),
                  static_cast<unsigned>((s.T + kTcRows - 1) / kTcRows));
  const auto kv_kernel = TcBackwardKVKernel<T, HS>;
  constexpr size_t kv_smem = TcBackwardKVSmemBytes<HS>();
  if (absl::Status st = SetSmem(kv_kernel, kv_smem); !st.ok()) return st;
  kv_kernel<<<grid, kTcThreads, kv_smem, stream>>>(dout_t, qkv_t, lse, row_dot, dqkv_t, seq, C, NH,
                                                   scale, scale * kLog2E);
  ZT_CUDA_RETURN_IF_LAUNCH_ERROR("TcBackwardKVKernel");

  const auto q_kernel = TcBackwardQKernel<T, HS>;
  constexpr size_t q_smem = TcBackwardQSmemBytes<HS>();
  if (absl::Status st = SetSmem(q_kernel, q_smem); !st.ok()) return st;
  q_kernel<<<grid, kTcThreads, q_smem, stream>>>(dout_t, qkv_t, lse, row_dot, dqkv_t, seq, C, NH,
                                                 scale, scale * kLog2E);
  ZT_CUDA_RETURN_IF_LAUNCH_ERROR("TcBackwardQKernel");
  return absl::OkStatus();
}

// Calls fn(TypeTag<fp16 or bf16 storage type>, SizeTag<64 or 128>); only for
// arguments UseTensorCores accepted.
template <typename Fn>
absl::Status DispatchTc(DType dtype, int64_t hs, Fn&& fn) {
  const auto by_size = [&](auto type_tag) -> absl::Status {
    if (hs == 64) return fn(type_tag, SizeTag<64>{});
    return fn(type_tag, SizeTag<128>{});
  };
  if (dtype == DType::kFloat16) return by_size(TypeTag<__half>{});
  return by_size(TypeTag<__nv_bfloat16>{});
}

// Calls fn(TypeTag<storage type>, SizeTag<padded head size>).
template <typename Fn>
absl::Status Dispatch(DType dtype, int64_t hs, Fn&& fn) {
  const auto by_size = [&](auto type_tag) -> absl::Status {
    if (hs <= 32) return fn(type_tag, SizeTag<32>{});
    if (hs <= 64) return fn(type_tag, SizeTag<64>{});
    if (hs <= 128) return fn(type_tag, SizeTag<128>{});
    return fn(type_tag, SizeTag<256>{});
  };
  switch (dtype) {
    case DType::kFloat16:
      return by_size(TypeTag<__half>{});
    case DType::kBFloat16:
      return by_size(TypeTag<__nv_bfloat16>{});
    default:
      return by_size(TypeTag<float>{});
  }
}

}  // namespace

absl::Status LaunchAttentionForward(cudaStream_t stream, int64_t B, int64_t T, int64_t C,
                                    int64_t NH, DType dtype, const void* qkv, void* out,
                                    float* lse) {
  const Shape s{B, T, C, NH, C / NH};
  if (absl::Status st = CheckShape(s, "AttentionForward"); !st.ok()) return st;
  if (UseTensorCores(dtype, s.hs, {qkv, out})) {
    return DispatchTc(dtype, s.hs, [&](auto type_tag, auto size_tag) {
      using Tp = typename decltype(type_tag)::type;
      return TcForwardTyped<Tp, decltype(size_tag)::value>(stream, s, qkv, out, lse);
    });
  }
  return Dispatch(dtype, s.hs, [&](auto type_tag, auto size_tag) {
    using Tp = typename decltype(type_tag)::type;
    return ForwardTyped<Tp, decltype(size_tag)::value>(stream, s, qkv, out, lse);
  });
}

absl::Status LaunchAttentionBackward(cudaStream_t stream, int64_t B, int64_t T, int64_t C,
                                     int64_t NH, DType dtype, const void* dout, const void* qkv,
                                     const void* out, const float* lse, float* row_dot,
                                     void* dqkv) {
  const Shape s{B, T, C, NH, C / NH};
  if (absl::Status st = CheckShape(s, "AttentionBackward"); !st.ok()) return st;
  if (UseTensorCores(dtype, s.hs, {dout, qkv, dqkv})) {
    return DispatchTc(dtype, s.hs, [&](auto type_tag, auto size_tag) {
      using Tp = typename decltype(type_tag)::type;
      return TcBackwardTyped<Tp, decltype(size_tag)::value>(stream, s, dout, qkv, out, lse, row_dot,
                                                            dqkv);
    });
  }
  return Dispatch(dtype, s.hs, [&](auto type_tag, auto size_tag) {
    using Tp = typename decltype(type_tag)::type;
    return BackwardTyped<Tp, decltype(size_tag)::value>(stream, s, dout, qkv, out, lse, row_dot,
                                                        dqkv);
  });
}

}  // namespace zt::kernels::attention_internal
