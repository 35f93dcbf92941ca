#ifndef ZEROTRAIN_KERNELS_MATMUL_H_
#define ZEROTRAIN_KERNELS_MATMUL_H_

// Linear layer: out = inp @ weight^T + bias, optionally followed by GELU
// (tanh approximation) as a fused epilogue. CUDA: cuBLASLt with the BIAS /
// GELU_AUX_BIAS epilogues in forward and DGELU / BGRADB in backward; fp32
// accumulation. CPU: OpenBLAS sgemm on fp32 copies of 16-bit inputs.

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/op_context.h"

namespace zt::kernels {

struct MatmulForwardParams {
  const void* inp = nullptr;     // [M, K] T
  const void* weight = nullptr;  // [N, K] T (PyTorch nn.Linear layout)
  const void* bias = nullptr;    // [N] T, or nullptr
  void* out = nullptr;           // [M, N] T
  // If non-null, GELU is applied: pre_gelu receives inp @ weight^T + bias
  // (kept for backward) and out receives gelu(pre_gelu).
  void* pre_gelu = nullptr;      // [M, N] T
  int64_t M = 0, N = 0, K = 0;
  DType dtype = DType::kFloat32;
};

absl::Status MatmulForward(const OpContext& ctx, const MatmulForwardParams& p);

struct MatmulBackwardParams {
  const void* dout = nullptr;    // [M, N] T
  const void* inp = nullptr;     // [M, K] T
  const void* weight = nullptr;  // [N, K] T
  // Overwritten with dL/dinp; nullptr skips it. If inp_pre_gelu is given,
  // inp was gelu(inp_pre_gelu) and dinp receives dL/d(inp_pre_gelu) instead
  // (the GELU backward fused into this matmul's epilogue).
  void* dinp = nullptr;                // [M, K] T
  const void* inp_pre_gelu = nullptr;  // [M, K] T, or nullptr
  void* dweight = nullptr;             // [N, K] T, accumulated (+=)
  void* dbias = nullptr;               // [N] T, accumulated (+=), or nullptr
  int64_t M = 0, N = 0, K = 0;
  DType dtype = DType::kFloat32;
  // false: dweight and dbias are overwritten and their old contents never
  // read (a gradient buffer known to hold zeros). On CUDA a 16-bit dweight
  // then comes straight out of cuBLASLt, rounded once, with no fp32 staging
  // and no accumulation pass.
  bool accumulate = true;
};

// ctx.workspace bytes the ops want on CUDA (CPU needs none): the forward
// and backward stage 16-bit results in fp32 there when they must add to them
// (unfused bias / GELU epilogues, dweight +=) so that each is rounded once,
// and the backward also keeps bias-gradient partial sums there. Less
// workspace works as long as one row of the result fits in fp32 (else
// ResourceExhausted); MatmulBackwardWorkspaceBytes(M, N) is never less than
// MatmulForwardWorkspaceBytes(M, N).
size_t MatmulForwardWorkspaceBytes(int64_t M, int64_t N);
size_t MatmulBackwardWorkspaceBytes(int64_t M, int64_t N);

absl::Status MatmulBackward(const OpContext& ctx, const MatmulBackwardParams& p);

}  // namespace zt::kernels

#endif  // ZEROTRAIN_KERNELS_MATMUL_H_
