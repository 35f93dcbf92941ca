#ifndef ZEROTRAIN_KERNELS_ADAMW_H_
#define ZEROTRAIN_KERNELS_ADAMW_H_

// AdamW on fp32 master weights (decoupled weight decay, bias correction),
// writing the updated weights back to the 16-bit (or fp32) working
// parameters. One launch covers a list of tensors (multi-tensor apply): a
// ZeRO shard is a flat slice, passed as the pieces of each tensor it covers.

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "kernels/op_context.h"

namespace zt::kernels {

struct AdamWHyper {
  float lr = 0;
  float beta1 = 0.9f, beta2 = 0.95f, eps = 1e-8f;
  float weight_decay = 0;
  int64_t step = 1;  // 1-based, after this update (for bias correction)
  // Multiplies each gradient before use: 1/loss_scale times the clipping
  // factor, so no separate unscale pass is needed.
  float grad_scale = 1.0f;
};

struct AdamWTensor {
  float* master = nullptr;      // [n] fp32, updated in place
  float* m = nullptr;           // [n] fp32
  float* v = nullptr;           // [n] fp32
  const void* grad = nullptr;   // [n] in grad_dtype
  void* param = nullptr;        // [n] in param_dtype (round of master), or nullptr
  int64_t n = 0;
  bool decay = true;            // weight decay on this tensor
};

// Per element:
//   g = grad * grad_scale
//   m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2
//   master -= lr * (m/(1-b1^t) / (sqrt(v/(1-b2^t)) + eps) + wd * master)
//   param = round(master)
absl::Status AdamWUpdate(const OpContext& ctx, DType grad_dtype, DType param_dtype,
                         const AdamWHyper& hyper, absl::Span<const AdamWTensor> tensors);

}  // namespace zt::kernels

#endif  // ZEROTRAIN_KERNELS_ADAMW_H_
