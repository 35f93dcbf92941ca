#ifndef ZEROTRAIN_KERNELS_ATTENTION_H_
#define ZEROTRAIN_KERNELS_ATTENTION_H_

// Causal multi-head self-attention on a packed qkv tensor, as GPT-2:
// qkv[b,t,:] = [q (C) | k (C) | v (C)], head h uses channels
// [h*hs, (h+1)*hs) of each, hs = C / NH, scale 1/sqrt(hs). The forward
// keeps only the per-row log-sum-exp of the scaled scores (fp32), so the
// backward recomputes probabilities instead of storing [B, NH, T, T].

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/op_context.h"

namespace zt::kernels {

struct AttentionParams {
  int64_t B = 0, T = 0, C = 0, NH = 0;
  DType dtype = DType::kFloat32;
};

absl::Status AttentionForward(const OpContext& ctx, const AttentionParams& p,
                              const void* qkv,  // [B, T, 3C] T
                              void* out,        // [B, T, C] T
                              float* lse);      // [B, NH, T] fp32

size_t AttentionBackwardWorkspaceBytes(const AttentionParams& p);

// dqkv is overwritten.
absl::Status AttentionBackward(const OpContext& ctx, const AttentionParams& p,
                               const void* dout,  // [B, T, C] T
                               const void* qkv,   // [B, T, 3C] T
                               const void* out,   // [B, T, C] T (forward output)
                               const float* lse,  // [B, NH, T] fp32
                               void* dqkv);       // [B, T, 3C] T

}  // namespace zt::kernels

#endif  // ZEROTRAIN_KERNELS_ATTENTION_H_
