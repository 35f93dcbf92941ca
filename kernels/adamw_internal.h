#ifndef ZEROTRAIN_KERNELS_ADAMW_INTERNAL_H_
#define ZEROTRAIN_KERNELS_ADAMW_INTERNAL_H_

// Shared by the CPU reference (adamw.cc) and the CUDA kernel (adamw.cu): the
// per-step constants and the per-element update, written once so both
// devices perform the same IEEE operations in the same order and agree bit
// for bit.
//
// The order follows PyTorch's torch.optim.AdamW (fp32, single-tensor/foreach
// path, vectorized CPU kernels), so a parity test against it holds to a few
// ulp:
//   param.mul_(1 - lr*wd)                        p = p * decay_factor
//   exp_avg.lerp_(grad, 1 - beta1)               m = fma(w, g - m, m)
//   exp_avg_sq.mul_(beta2)                       v = v * beta2
//             .addcmul_(grad, grad, 1 - beta2)   v = v + ((1-beta2) * g) * g
//   denom = sqrt(exp_avg_sq) / sqrt(bc2) + eps   d = sqrt(v) / bc2_sqrt + eps
//   param.addcdiv_(exp_avg, denom, -step_size)   p = p + (-step_size * m) / d
// with step_size = lr / (1 - beta1^t) and bc2 = 1 - beta2^t. PyTorch forms
// these scalars from Python floats (double) and rounds each once to float;
// so do we. Its vectorized lerp is a fused multiply-add (and for a weight
// >= 0.5 it is fma(w - 1, g - m, g)), hence the fma here. Every other step is
// a separately rounded operation: the host code is compiled with
// -ffp-contract=off and the device code uses the _rn intrinsics, which nvcc
// never contracts.

#include <cmath>

#include "kernels/adamw.h"

#if defined(__CUDACC__)
#define ZT_ADAMW_HD __host__ __device__ __forceinline__
#else
#define ZT_ADAMW_HD inline
#endif

namespace zt::kernels::adamw_internal {

struct AdamWScalars {
  float grad_scale;
  float decay_factor;   // 1 - lr * weight_decay
  float lerp_coeff;     // w = 1 - beta1 when |w| < 0.5, else w - 1
  bool lerp_small;      // |w| < 0.5: lerp from m, else from g
  float beta2;
  float one_minus_beta2;
  float bias2_sqrt;     // sqrt(1 - beta2^t)
  float eps;
  float neg_step_size;  // -lr / (1 - beta1^t)
};

inline AdamWScalars MakeAdamWScalars(const AdamWHyper& h) {
  const double lr = h.lr, b1 = h.beta1, b2 = h.beta2, t = static_cast<double>(h.step);
  AdamWScalars s;
  s.grad_scale = h.grad_scale;
  s.decay_factor = static_cast<float>(1.0 - lr * static_cast<double>(h.weight_decay));
  const float w = static_cast<float>(1.0 - b1);
  s.lerp_small = std::fabs(w) < 0.5f;
  s.lerp_coeff = s.lerp_small ? w : w - 1.0f;
  s.beta2 = h.beta2;
  s.one_minus_beta2 = static_cast<float>(1.0 - b2);
  s.bias2_sqrt = static_cast<float>(std::sqrt(1.0 - std::pow(b2, t)));
  s.eps = h.eps;
  s.neg_step_size = static_cast<float>(-(lr / (1.0 - std::pow(b1, t))));
  return s;
}

// Correctly rounded fp32 operations that the compiler may not fuse.
ZT_ADAMW_HD float Mul(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
ZT_ADAMW_HD float Add(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
ZT_ADAMW_HD float Sub(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}
ZT_ADAMW_HD float Div(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}
ZT_ADAMW_HD float Sqrt(float a) {
#if defined(__CUDA_ARCH__)
  return __fsqrt_rn(a);
#else
  return std::sqrt(a);
#endif
}
ZT_ADAMW_HD float Fma(float a, float b, float c) {
#if defined(__CUDA_ARCH__)
  return __fmaf_rn(a, b, c);
#else
  return std::fma(a, b, c);
#endif
}

// One element; `grad` is already widened to float from its storage type.
ZT_ADAMW_HD void AdamWElement(const AdamWScalars& s, bool decay, float grad, float& master,
                              float& m, float& v) {
  const float g = Mul(grad, s.grad_scale);
  float p = master;
  if (decay) p = Mul(p, s.decay_factor);
  m = Fma(s.lerp_coeff, Sub(g, m), s.lerp_small ? m : g);
  v = Add(Mul(v, s.beta2), Mul(Mul(s.one_minus_beta2, g), g));
  const float denom = Add(Div(Sqrt(v), s.bias2_sqrt), s.eps);
  master = Add(p, Div(Mul(s.neg_step_size, m), denom));
}

#if ZT_WITH_CUDA
// Launches the multi-tensor kernel on `stream`. Arguments are validated by
// the caller; tensors with n == 0 are skipped.
absl::Status LaunchAdamW(cudaStream_t stream, DType grad_dtype, DType param_dtype,
                         const AdamWScalars& scalars, absl::Span<const AdamWTensor> tensors);
#endif

}  // namespace zt::kernels::adamw_internal

#endif  // ZEROTRAIN_KERNELS_ADAMW_INTERNAL_H_
