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

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "absl/strings/str_cat.h"
#include "kernels/attention_cuda.h"
#include "kernels/core/library_errors.h"

namespace zt::kernels::attention_internal {
namespace {

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

__device__ __forceinline__ float ToF(float x) { return x; }
__device__ __forceinline__ float ToF(__half x) { return __half2float(x); }
__device__ __forceinline__ float ToF(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T>
__device__ __forceinline__ T FromF(float x);
template <>
__device__ __forceinline__ float FromF<float>(float x) {
  return x;
}
template <>
__device__ __forceinline__ __half FromF<__half>(float x) {
  return __float2half_rn(x);
}
template <>
__device__ __forceinline__ __nv_bfloat16 FromF<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}

// Butterfly reductions: every lane ends with the same bits, since each step
// adds the same two values (in swapped order, and fp addition commutes).
__device__ __forceinline__ float WarpMax(float v) {
  for (int offset = 16; offset > 0; offset >>= 1) {
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  }
  return v;
}

__device__ __forceinline__ float WarpSum(float v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

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

  const int64_t rows = s.B * s.NH * s.T;
  AttentionRowDotKernel<T>
      <<<static_cast<unsigned>((rows + kWarps - 1) / kWarps), kThreads, 0, stream>>>(
          dout_t, static_cast<const T*>(out), row_dot, rows, seq, C, NH, hs);
  ZT_CUDA_RETURN_IF_LAUNCH_ERROR("AttentionRowDotKernel");

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
  return Dispatch(dtype, s.hs, [&](auto type_tag, auto size_tag) {
    using Tp = typename decltype(type_tag)::type;
    return BackwardTyped<Tp, decltype(size_tag)::value>(stream, s, dout, qkv, out, lse, row_dot,
                                                        dqkv);
  });
}

}  // namespace zt::kernels::attention_internal
