#ifndef ZEROTRAIN_KERNELS_MATMUL_TESTUTIL_H_
#define ZEROTRAIN_KERNELS_MATMUL_TESTUTIL_H_

// Test helper: one linear layer with the fused GELU epilogue, forward then
// backward, on raw buffers of any dtype, through the public ops.

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/matmul.h"
#include "kernels/op_context.h"

namespace zt::kernels::testing {

struct LinearLayerBuffers {
  const void* inp = nullptr;     // [M, K]
  const void* weight = nullptr;  // [N, K]
  const void* bias = nullptr;    // [N]
  void* out = nullptr;           // [M, N]
  void* pre_gelu = nullptr;      // [M, N]
  const void* dout = nullptr;    // [M, N]
  // The backward's GELU input: any values of this shape exercise the fused
  // epilogue.
  const void* inp_pre_gelu = nullptr;  // [M, K]
  void* dinp = nullptr;                // [M, K]
  void* dweight = nullptr;             // [N, K], accumulated
  void* dbias = nullptr;               // [N], accumulated
};

inline absl::Status RunLinearLayerWithGelu(const OpContext& ctx, DType dtype, int64_t M, int64_t N,
                                           int64_t K, const LinearLayerBuffers& io) {
  MatmulForwardParams f;
  f.inp = io.inp;
  f.weight = io.weight;
  f.bias = io.bias;
  f.out = io.out;
  f.pre_gelu = io.pre_gelu;
  f.M = M;
  f.N = N;
  f.K = K;
  f.dtype = dtype;
  if (absl::Status s = MatmulForward(ctx, f); !s.ok()) return s;
  MatmulBackwardParams b;
  b.dout = io.dout;
  b.inp = io.inp;
  b.weight = io.weight;
  b.dinp = io.dinp;
  b.inp_pre_gelu = io.inp_pre_gelu;
  b.dweight = io.dweight;
  b.dbias = io.dbias;
  b.M = M;
  b.N = N;
  b.K = K;
  b.dtype = dtype;
  return MatmulBackward(ctx, b);
}

}  // namespace zt::kernels::testing

#endif  // ZEROTRAIN_KERNELS_MATMUL_TESTUTIL_H_
