#ifndef ZEROTRAIN_KERNELS_CROSS_ENTROPY_CUDA_H_
#define ZEROTRAIN_KERNELS_CROSS_ENTROPY_CUDA_H_

// CUDA launcher behind kernels/cross_entropy.h (internal: call the public
// API). Shapes are validated by the caller; it never synchronizes.

#include <cstdint>

#include "absl/status/status.h"
#include "core/cuda_stream_fwd.h"
#include "core/dtype.h"

namespace zt::kernels::internal {

absl::Status SoftmaxCrossEntropyCuda(cudaStream_t stream, DType dtype, int64_t rows, int64_t V,
                                     int64_t Vp, float dloss, bool compute_grad, void* logits,
                                     const int32_t* targets, float* losses);

}  // namespace zt::kernels::internal

#endif  // ZEROTRAIN_KERNELS_CROSS_ENTROPY_CUDA_H_
