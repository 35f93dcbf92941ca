#ifndef ZEROTRAIN_KERNELS_LAYERNORM_CUDA_H_
#define ZEROTRAIN_KERNELS_LAYERNORM_CUDA_H_

// CUDA launchers behind kernels/layernorm.h (internal: call the public API),
// and the backward's launch geometry, which fixes its workspace size and its
// reduction order. Shapes are validated by the caller; nothing synchronizes.

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "core/cuda_stream_fwd.h"
#include "core/dtype.h"

namespace zt::kernels::internal {

// Backward geometry. It depends on rows and C only, never on the device, so
// the summation order of dweight and dbias (and so their bits) is the same
// everywhere. Each block writes one fp32 row of 2 * C partial sums (dweight
// then dbias); a second kernel adds the rows in block order.
inline constexpr int64_t kLayerNormBackwardMaxBlocks = 256;

// Blocks of a backward launch with `warps` warps per block, one row per warp
// at a time: enough to cover every row once, at most 256 (more would add
// partial-sum traffic without adding memory parallelism).
inline int64_t LayerNormBackwardBlocks(int64_t rows, int warps) {
  return std::min<int64_t>((rows + warps - 1) / warps, kLayerNormBackwardMaxBlocks);
}

// Partial sums for the most blocks any backward path launches (one warp per
// block at the least).
inline size_t LayerNormBackwardCudaWorkspaceBytes(int64_t rows, int64_t C) {
  return static_cast<size_t>(LayerNormBackwardBlocks(rows, 1)) * 2 * C * sizeof(float);
}

// inp2 == nullptr: plain LayerNorm of inp1; otherwise residual = inp1 + inp2
// is written and normalized.
absl::Status LayerNormForwardCuda(cudaStream_t stream, DType dtype, int64_t rows, int64_t C,
                                  const void* inp1, const void* inp2, const void* weight,
                                  const void* bias, void* residual, void* out, float* mean,
                                  float* rstd);

absl::Status LayerNormBackwardCuda(cudaStream_t stream, void* workspace, size_t workspace_bytes,
                                   DType dtype, int64_t rows, int64_t C, const void* dout,
                                   const void* inp, const void* weight, const float* mean,
                                   const float* rstd, void* dinp, void* dweight, void* dbias);

}  // namespace zt::kernels::internal

#endif  // ZEROTRAIN_KERNELS_LAYERNORM_CUDA_H_
