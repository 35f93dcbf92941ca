#ifndef ZEROTRAIN_KERNELS_EMBEDDING_CUDA_H_
#define ZEROTRAIN_KERNELS_EMBEDDING_CUDA_H_

// CUDA launchers behind kernels/embedding.h (internal: call the public API).
// Shapes are validated by the caller; these never synchronize.

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "core/cuda_stream_fwd.h"
#include "core/dtype.h"

namespace zt::kernels::internal {

absl::Status EmbeddingForwardCuda(cudaStream_t stream, DType dtype, int64_t B, int64_t T, int64_t C,
                                  int64_t V, const int32_t* tokens, const void* wte,
                                  const void* wpe, void* out);

// The sorted keys and positions for B*T positions; above 16384 positions
// (sorted by CUB, not by one block) also their unsorted copies and CUB's
// radix-sort scratch. If CUB's size query fails (e.g. no device), the sort
// buffers alone; the launch then reports the CUDA error.
size_t EmbeddingBackwardCudaWorkspaceBytes(int64_t B, int64_t T, int64_t V);

absl::Status EmbeddingBackwardCuda(cudaStream_t stream, void* workspace, size_t workspace_bytes,
                                   DType dtype, int64_t B, int64_t T, int64_t C, int64_t V,
                                   const int32_t* tokens, const void* dout, void* dwte, void* dwpe);

}  // namespace zt::kernels::internal

#endif  // ZEROTRAIN_KERNELS_EMBEDDING_CUDA_H_
