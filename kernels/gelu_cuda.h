#ifndef ZEROTRAIN_KERNELS_GELU_CUDA_H_
#define ZEROTRAIN_KERNELS_GELU_CUDA_H_

// CUDA launchers behind GeluForward/GeluBackward (and the unfused fallback of
// the matmul epilogues). Declared without CUDA headers so host code can call
// them; they enqueue on `stream` and never synchronize.

#include <cstdint>

#include "absl/status/status.h"
#include "core/cuda_stream_fwd.h"
#include "core/dtype.h"

namespace zt::kernels {

absl::Status GeluForwardCuda(cudaStream_t stream, DType dtype, const void* inp, void* out,
                             int64_t n);
absl::Status GeluBackwardCuda(cudaStream_t stream, DType dtype, const void* dout, const void* inp,
                              void* dinp, int64_t n);

}  // namespace zt::kernels

#endif  // ZEROTRAIN_KERNELS_GELU_CUDA_H_
