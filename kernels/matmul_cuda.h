#ifndef ZEROTRAIN_KERNELS_MATMUL_CUDA_H_
#define ZEROTRAIN_KERNELS_MATMUL_CUDA_H_

// CUDA side of matmul.h: cuBLASLt launchers and the bias-gradient scratch
// layout. Host-only declarations; no CUDA header needed.

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "kernels/matmul.h"
#include "kernels/op_context.h"

namespace zt::kernels {

// The bias gradient is reduced in two deterministic passes: fp32 column sums
// of each chunk of this many rows go to the workspace, then one pass adds the
// chunks up in order and accumulates into dbias.
inline constexpr int64_t kMatmulBiasGradRowsPerChunk = 256;

inline size_t MatmulBiasGradWorkspaceBytes(int64_t M, int64_t N) {
  if (M <= 0 || N <= 0) return 0;
  const int64_t chunks = (M + kMatmulBiasGradRowsPerChunk - 1) / kMatmulBiasGradRowsPerChunk;
  return static_cast<size_t>(chunks * N) * sizeof(float);
}

// The least the *WorkspaceBytes() functions ask for (bias-gradient partials
// of a very large M may need more): 16-bit results that need an epilogue
// the fused cuBLASLt call cannot do, and dweight's accumulation, are
// computed in fp32 into up to half of ctx.workspace, in chunks of whole rows
// of the result (at least one row must fit), and cuBLASLt gets the rest as
// its own scratch. 16 MiB of staging takes a 50304 x 768 dweight in ten
// chunks, each still large enough to fill the GPU.
inline constexpr size_t kMatmulWorkspaceBytes = size_t{32} << 20;

// Knobs for tests: force the unfused path, and learn which path ran.
struct MatmulCudaOptions {
  // False runs plain matmuls plus separate bias / GELU kernels even where
  // cuBLASLt would accept the fused epilogue.
  bool allow_fused_epilogue = true;
  // If non-null, set to whether every requested epilogue (bias, GELU,
  // DGELU) was fused into cuBLASLt.
  bool* used_fused_epilogue = nullptr;
};

// Parameters are validated by MatmulForward/MatmulBackward before these run.
absl::Status MatmulForwardCuda(const OpContext& ctx, const MatmulForwardParams& p,
                               const MatmulCudaOptions& options = {});
absl::Status MatmulBackwardCuda(const OpContext& ctx, const MatmulBackwardParams& p,
                                const MatmulCudaOptions& options = {});

}  // namespace zt::kernels

#endif  // ZEROTRAIN_KERNELS_MATMUL_CUDA_H_
