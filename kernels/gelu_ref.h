#ifndef ZEROTRAIN_KERNELS_GELU_REF_H_
#define ZEROTRAIN_KERNELS_GELU_REF_H_

// CPU reference of GELU (tanh approximation), templated on the storage type
// so tests can run it in double against finite differences. Shared with the
// matmul reference, whose forward and backward fuse GELU.

#include <cmath>
#include <cstdint>

#include "kernels/ref_util.h"

namespace zt::kernels {

inline constexpr double kGeluSqrt2OverPi = 0.7978845608028654;  // sqrt(2 / pi)
inline constexpr double kGeluCubic = 0.044715;

// A is the arithmetic type: float for fp32/fp16/bf16 storage, double for
// finite-difference tests.
//
// 0.5 x (1 + tanh u) is computed as x * sigmoid(2u), the same function: one
// exp instead of a tanh (glibc's tanhf costs several exps), no cancellation
// for negative x, and the form the CUDA kernel uses.
template <typename A>
inline A GeluValue(A x) {
  const A u = static_cast<A>(kGeluSqrt2OverPi) *
              (x + static_cast<A>(kGeluCubic) * x * x * x);
  return x / (static_cast<A>(1) + std::exp(static_cast<A>(-2) * u));
}

// d gelu / dx = 0.5 (1 + t) + 0.5 x (1 - t^2) du/dx with t = tanh(u); in
// terms of g = sigmoid(2u) (t = 2g - 1, 1 - t^2 = 4 g (1 - g)):
// g + 2 x g (1 - g) du/dx.
template <typename A>
inline A GeluGrad(A x) {
  const A s = static_cast<A>(kGeluSqrt2OverPi);
  const A c = static_cast<A>(kGeluCubic);
  const A g = static_cast<A>(1) /
              (static_cast<A>(1) +
               std::exp(static_cast<A>(-2) * s * (x + c * x * x * x)));
  const A du_dx = s * (static_cast<A>(1) + static_cast<A>(3) * c * x * x);
  return g + static_cast<A>(2) * x * g * (static_cast<A>(1) - g) * du_dx;
}

// out may alias inp: each element is read before it is written.
template <typename T>
void GeluForwardRef(const T* inp, T* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = Store<T>(GeluValue(Load(inp[i])));
}

// dinp may alias dout.
template <typename T>
void GeluBackwardRef(const T* dout, const T* inp, T* dinp, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    dinp[i] = Store<T>(Load(dout[i]) * GeluGrad(Load(inp[i])));
}

}  // namespace zt::kernels

#endif  // ZEROTRAIN_KERNELS_GELU_REF_H_
