#include "kernels/adamw.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "kernels/adamw_internal.h"
#include "kernels/cpu_parallel.h"
#include "kernels/ref_util.h"

namespace zt::kernels {
namespace {

using adamw_internal::AdamWScalars;

bool IsKnownDType(DType t) {
  return t == DType::kFloat32 || t == DType::kFloat16 || t == DType::kBFloat16;
}

absl::Status Validate(DType grad_dtype, DType param_dtype, const AdamWHyper& hyper,
                      absl::Span<const AdamWTensor> tensors) {
  if (!IsKnownDType(grad_dtype)) {
    return absl::InvalidArgumentError(
        absl::StrCat("AdamWUpdate: grad_dtype ", static_cast<int>(grad_dtype), " is not a dtype"));
  }
  if (!IsKnownDType(param_dtype)) {
    return absl::InvalidArgumentError(absl::StrCat("AdamWUpdate: param_dtype ",
                                                   static_cast<int>(param_dtype),
                                                   " is not a dtype"));
  }
  if (hyper.step < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("AdamWUpdate: hyper.step = ", hyper.step, " must be >= 1 (1-based)"));
  }
  // beta = 1 would make the bias correction divide by zero.
  if (!(hyper.beta1 >= 0 && hyper.beta1 < 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("AdamWUpdate: hyper.beta1 = ", hyper.beta1, " must be in [0, 1)"));
  }
  if (!(hyper.beta2 >= 0 && hyper.beta2 < 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("AdamWUpdate: hyper.beta2 = ", hyper.beta2, " must be in [0, 1)"));
  }
  for (size_t i = 0; i < tensors.size(); ++i) {
    const AdamWTensor& t = tensors[i];
    if (t.n < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("AdamWUpdate: tensors[", i, "].n = ", t.n, " is negative"));
    }
    if (t.n == 0) continue;
    const char* missing = t.master == nullptr ? "master"
                          : t.m == nullptr    ? "m"
                          : t.v == nullptr    ? "v"
                          : t.grad == nullptr ? "grad"
                                              : nullptr;
    if (missing != nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("AdamWUpdate: tensors[", i, "].", missing, " is null (n = ", t.n, ")"));
    }
  }
  return absl::OkStatus();
}

template <typename GradT, typename ParamT>
void AdamWCpu(const AdamWScalars& s, absl::Span<const AdamWTensor> tensors) {
  for (const AdamWTensor& t : tensors) {
    const GradT* grad = static_cast<const GradT*>(t.grad);
    ParamT* param = static_cast<ParamT*>(t.param);
    // Elementwise, so the split changes no bits.
    ParallelFor(t.n, 1 << 15, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        adamw_internal::AdamWElement(s, t.decay, Load(grad[i]), t.master[i], t.m[i], t.v[i]);
        if (param != nullptr) param[i] = Store<ParamT>(t.master[i]);
      }
    });
  }
}

}  // namespace

absl::Status AdamWUpdate(const OpContext& ctx, DType grad_dtype, DType param_dtype,
                         const AdamWHyper& hyper, absl::Span<const AdamWTensor> tensors) {
  if (absl::Status s = Validate(grad_dtype, param_dtype, hyper, tensors); !s.ok()) return s;
  const AdamWScalars scalars = adamw_internal::MakeAdamWScalars(hyper);
  if (ctx.is_cpu()) {
    DispatchDType(grad_dtype, [&](auto grad_tag) {
      using GradT = typename decltype(grad_tag)::type;
      DispatchDType(param_dtype, [&](auto param_tag) {
        using ParamT = typename decltype(param_tag)::type;
        AdamWCpu<GradT, ParamT>(scalars, tensors);
      });
    });
    return absl::OkStatus();
  }
#if ZT_WITH_CUDA
  return adamw_internal::LaunchAdamW(ctx.stream, grad_dtype, param_dtype, scalars, tensors);
#else
  return CudaNotBuilt("AdamWUpdate");
#endif
}

}  // namespace zt::kernels
