#ifndef ZEROTRAIN_KERNELS_LAYERNORM_H_
#define ZEROTRAIN_KERNELS_LAYERNORM_H_

// LayerNorm over the last dimension (eps 1e-5, as GPT-2), and the residual
// add fused with the LayerNorm that follows it. Statistics are fp32.

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/op_context.h"

namespace zt::kernels {

inline constexpr float kLayerNormEps = 1e-5f;

// out = (inp - mean) * rstd * weight + bias, per row of C.
absl::Status LayerNormForward(const OpContext& ctx, DType dtype, int64_t rows, int64_t C,
                              const void* inp,     // [rows, C] T
                              const void* weight,  // [C] T
                              const void* bias,    // [C] T
                              void* out,           // [rows, C] T
                              float* mean,         // [rows] fp32
                              float* rstd);        // [rows] fp32

// residual = inp1 + inp2 (rounded to T), then out = LayerNorm(residual).
absl::Status ResidualLayerNormForward(const OpContext& ctx, DType dtype, int64_t rows, int64_t C,
                                      const void* inp1, const void* inp2,  // [rows, C] T
                                      const void* weight, const void* bias,
                                      void* residual,  // [rows, C] T
                                      void* out,       // [rows, C] T
                                      float* mean, float* rstd);

size_t LayerNormBackwardWorkspaceBytes(int64_t rows, int64_t C);

// dinp, dweight and dbias all accumulate (+=): dinp feeds the residual
// stream's gradient.
absl::Status LayerNormBackward(const OpContext& ctx, DType dtype, int64_t rows, int64_t C,
                               const void* dout,    // [rows, C] T
                               const void* inp,     // [rows, C] T
                               const void* weight,  // [C] T
                               const float* mean, const float* rstd,
                               void* dinp,     // [rows, C] T
                               void* dweight,  // [C] T
                               void* dbias);   // [C] T

}  // namespace zt::kernels

#endif  // ZEROTRAIN_KERNELS_LAYERNORM_H_
