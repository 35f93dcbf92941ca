#ifndef ZEROTRAIN_KERNELS_LAYERNORM_CUDA_H_
#define ZEROTRAIN_KERNELS_LAYERNORM_CUDA_H_

// CUDA launchers behind kernels/layernorm.h (internal: call the public API),
// and the backward's launch geometry, which fixes its workspace size and its
// reduction order. Shapes are validated by the caller; nothing synchronizes.

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "kernels/core/cuda_stream_fwd.h"
#include "kernels/core/dtype.h"

namespace zt::kernels::internal {

// Backward: each warp keeps fp32 dweight and dbias accumulators for the whole
// row in shared memory (2 * C floats), as many warps per block as fit in
// 48 KiB (at most 8, at least 1; a single warp over 48 KiB opts in to more
// shared memory). The geometry depends on rows and C only, never on the
// device, so the summation order (and the bits) are the same everywhere.
inline int LayerNormBackwardWarps(int64_t C) {
  const int64_t fit = (48 * 1024) / (2 * C * static_cast<int64_t>(sizeof(float)));
  return static_cast<int>(std::clamp<int64_t>(fit, 1, 8));
}

inline int64_t LayerNormBackwardBlocks(int64_t rows, int64_t C) {
  const int64_t warps = LayerNormBackwardWarps(C);
  return std::min<int64_t>((rows + warps - 1) / warps, 256);
}

// One fp32 row of 2 * C partial sums (dweight then dbias) per block.
inline size_t LayerNormBackwardCudaWorkspaceBytes(int64_t rows, int64_t C) {
  return static_cast<size_t>(LayerNormBackwardBlocks(rows, C)) * 2 * C * sizeof(float);
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
