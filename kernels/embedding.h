#ifndef ZEROTRAIN_KERNELS_EMBEDDING_H_
#define ZEROTRAIN_KERNELS_EMBEDDING_H_

// Token + position embedding: out[b,t,:] = wte[tokens[b,t],:] + wpe[t,:].
// The backward is deterministic (no float atomics): on CUDA, the rows of
// dwte are accumulated by a sort/bucket pass over token ids, so repeated
// tokens always add up in the same order.

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/op_context.h"

namespace zt::kernels {

struct EmbeddingParams {
  int64_t B = 0, T = 0, C = 0;
  int64_t V = 0;  // rows of wte (padded vocab); tokens must lie in [0, V).
  DType dtype = DType::kFloat32;
};

absl::Status EmbeddingForward(const OpContext& ctx, const EmbeddingParams& p,
                              const int32_t* tokens,  // [B, T]
                              const void* wte,        // [V, C] T
                              const void* wpe,        // [maxT >= T, C] T
                              void* out);             // [B, T, C] T

size_t EmbeddingBackwardWorkspaceBytes(const EmbeddingParams& p);

// dwte and dwpe accumulate (+=).
absl::Status EmbeddingBackward(const OpContext& ctx, const EmbeddingParams& p,
                               const int32_t* tokens,  // [B, T]
                               const void* dout,       // [B, T, C] T
                               void* dwte,             // [V, C] T
                               void* dwpe);            // [maxT, C] T

}  // namespace zt::kernels

#endif  // ZEROTRAIN_KERNELS_EMBEDDING_H_
