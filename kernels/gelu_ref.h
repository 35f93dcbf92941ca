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
template <typename A>
inline A GeluValue(A x) {
  const A u = static_cast<A>(kGeluSqrt2OverPi) * (x + static_cast<A>(kGeluCubic) * x * x * x);
  return static_cast<A>(0.5) * x * (static_cast<A>(1) + std::tanh(u));
}

// d gelu / dx = 0.5 (1 + t) + 0.5 x (1 - t^2) du/dx, t = tanh(u).
template <typename A>
inline A GeluGrad(A x) {
  const A s = static_cast<A>(kGeluSqrt2OverPi);
  const A c = static_cast<A>(kGeluCubic);
  const A t = std::tanh(s * (x + c * x * x * x));
  const A du_dx = s * (static_cast<A>(1) + static_cast<A>(3) * c * x * x);
  return static_cast<A>(0.5) * (static_cast<A>(1) + t) +
         static_cast<A>(0.5) * x * (static_cast<A>(1) - t * t) * du_dx;
}

// out may alias inp: each element is read before it is written.
template <typename T>
void GeluForwardRef(const T* inp, T* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = Store<T>(GeluValue(Load(inp[i])));
}

// dinp may alias dout.
template <typename T>
void GeluBackwardRef(const T* dout, const T* inp, T* dinp, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dinp[i] = Store<T>(Load(dout[i]) * GeluGrad(Load(inp[i])));
}

}  // namespace zt::kernels

#endif  // ZEROTRAIN_KERNELS_GELU_REF_H_
