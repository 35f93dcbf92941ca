#ifndef ZEROTRAIN_KERNELS_CROSS_ENTROPY_H_
#define ZEROTRAIN_KERNELS_CROSS_ENTROPY_H_

// Softmax + cross-entropy fused with the logits gradient: one pass reads a
// row of logits, writes the row's loss, and (when asked) overwrites the same
// row with dL/dlogits, so probabilities are never stored.

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/op_context.h"

namespace zt::kernels {

struct CrossEntropyParams {
  int64_t rows = 0;  // B * T
  int64_t V = 0;     // real vocabulary; columns [V, Vp) are padding
  int64_t Vp = 0;    // row stride (padded vocabulary)
  DType dtype = DType::kFloat32;
  // Gradient of the total loss w.r.t. each row's loss, e.g. loss_scale /
  // (rows * grad_accum_steps) for a mean. Zero with compute_grad = false.
  float dloss = 0.0f;
  bool compute_grad = true;
};

// losses[r] = logsumexp(logits[r, :V]) - logits[r, targets[r]]. A target of
// -1 is ignored (loss 0, gradient 0); other targets outside [0, V) are an
// InvalidArgument error on CPU (and a trap-free zero on CUDA, where checking
// would need a host sync). With compute_grad, logits[r, :V] becomes
// (softmax - onehot) * dloss and the padding columns become 0.
absl::Status SoftmaxCrossEntropy(const OpContext& ctx, const CrossEntropyParams& p,
                                 void* logits,            // [rows, Vp] T, in/out
                                 const int32_t* targets,  // [rows]
                                 float* losses);          // [rows] fp32

}  // namespace zt::kernels

#endif  // ZEROTRAIN_KERNELS_CROSS_ENTROPY_H_
