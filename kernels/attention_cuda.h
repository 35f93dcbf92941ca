#ifndef ZEROTRAIN_KERNELS_ATTENTION_CUDA_H_
#define ZEROTRAIN_KERNELS_ATTENTION_CUDA_H_

// Launchers for the CUDA attention kernels (attention.cu); only the cuda
// build has them. attention.cc validates shapes and the workspace before it
// calls them. Shapes travel as plain integers so this target does not depend
// on :attention (which depends on it).

#include <cstdint>

#include "absl/status/status.h"
#include "core/cuda_stream_fwd.h"
#include "core/dtype.h"

namespace zt::kernels::attention_internal {

// The fused kernels keep a head's rows in shared memory padded to 32, 64,
// 128 or 256 channels; larger heads are rejected (UnimplementedError).
inline constexpr int64_t kMaxCudaHeadSize = 256;

absl::Status LaunchAttentionForward(cudaStream_t stream, int64_t B, int64_t T, int64_t C,
                                    int64_t NH, DType dtype, const void* qkv, void* out,
                                    float* lse);

// `row_dot` is scratch for D = rowsum(dout * out), fp32 [B, NH, T].
absl::Status LaunchAttentionBackward(cudaStream_t stream, int64_t B, int64_t T, int64_t C,
                                     int64_t NH, DType dtype, const void* dout, const void* qkv,
                                     const void* out, const float* lse, float* row_dot, void* dqkv);

}  // namespace zt::kernels::attention_internal

#endif  // ZEROTRAIN_KERNELS_ATTENTION_CUDA_H_
