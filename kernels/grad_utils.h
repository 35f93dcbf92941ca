#ifndef ZEROTRAIN_KERNELS_GRAD_UTILS_H_
#define ZEROTRAIN_KERNELS_GRAD_UTILS_H_

// Gradient utilities for mixed precision: loss-scale unscale fused with the
// inf/nan check, squared L2 norm over many tensors (for global clipping; a
// ZeRO rank sums its shard and the engine all-reduces), and dtype casts.

#include <cstdint>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "kernels/op_context.h"

namespace zt::kernels {

struct ConstTensorRef {
  const void* data = nullptr;
  int64_t n = 0;
};

// x[i] *= scale in place (rounded back to dtype) and sets *found_nonfinite
// (an int32 on the context's device) to 1 if any result is inf or nan; it is
// never reset to 0 here, so several calls can share one flag.
absl::Status ScaleAndCheckFinite(const OpContext& ctx, DType dtype, void* x, int64_t n,
                                 float scale, int32_t* found_nonfinite);

size_t SquaredNormWorkspaceBytes(absl::Span<const ConstTensorRef> tensors);

// *out = sum of x^2 over all tensors, fp32 accumulation (an fp32 scalar on
// the context's device). Deterministic: a fixed reduction tree.
absl::Status SquaredNorm(const OpContext& ctx, DType dtype,
                         absl::Span<const ConstTensorRef> tensors, float* out);

// dst[i] = round_to_dst(src[i]); src and dst must not overlap unless equal
// dtypes and equal pointers.
absl::Status Cast(const OpContext& ctx, const void* src, DType src_dtype, void* dst,
                  DType dst_dtype, int64_t n);

}  // namespace zt::kernels

#endif  // ZEROTRAIN_KERNELS_GRAD_UTILS_H_
