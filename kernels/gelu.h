#ifndef ZEROTRAIN_KERNELS_GELU_H_
#define ZEROTRAIN_KERNELS_GELU_H_

// GELU, tanh approximation (as GPT-2):
//   gelu(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/op_context.h"

namespace zt::kernels {

// out[i] = gelu(inp[i]); out may alias inp.
absl::Status GeluForward(const OpContext& ctx, DType dtype, const void* inp, void* out, int64_t n);
// dinp[i] = dout[i] * gelu'(inp[i]) (overwrites); dinp may alias dout.
absl::Status GeluBackward(const OpContext& ctx, DType dtype, const void* dout, const void* inp,
                          void* dinp, int64_t n);

// Scalar forms shared by references (fp32 math).
float GeluScalar(float x);
float GeluGradScalar(float x);

}  // namespace zt::kernels

#endif  // ZEROTRAIN_KERNELS_GELU_H_
