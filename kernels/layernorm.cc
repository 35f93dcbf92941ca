#include "kernels/layernorm.h"

#include <cstdint>
#include <initializer_list>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "kernels/layernorm_cuda.h"
#include "kernels/layernorm_ref.h"
#include "kernels/ref_util.h"

namespace zt::kernels {
namespace {

absl::Status CheckArgs(const char* op, DType dtype, int64_t rows, int64_t C,
                       std::initializer_list<std::pair<const char*, const void*>> ptrs) {
  if (rows <= 0)
    return absl::InvalidArgumentError(absl::StrCat(op, ": rows must be positive, got ", rows));
  if (C <= 0) return absl::InvalidArgumentError(absl::StrCat(op, ": C must be positive, got ", C));
  if (dtype != DType::kFloat32 && dtype != DType::kFloat16 && dtype != DType::kBFloat16) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": dtype has unknown value ", static_cast<int>(dtype)));
  }
  for (const auto& [name, ptr] : ptrs) {
    if (ptr == nullptr) return absl::InvalidArgumentError(absl::StrCat(op, ": ", name, " is null"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status LayerNormForward(const OpContext& ctx, DType dtype, int64_t rows, int64_t C,
                              const void* inp, const void* weight, const void* bias, void* out,
                              float* mean, float* rstd) {
  ZT_RETURN_IF_ERROR(CheckArgs("LayerNormForward", dtype, rows, C,
                               {{"inp", inp},
                                {"weight", weight},
                                {"bias", bias},
                                {"out", out},
                                {"mean", mean},
                                {"rstd", rstd}}));
  if (!ctx.is_cpu()) {
#if ZT_WITH_CUDA
    return internal::LayerNormForwardCuda(ctx.stream, dtype, rows, C, inp, nullptr, weight, bias,
                                          nullptr, out, mean, rstd);
#else
    return CudaNotBuilt("LayerNormForward");
#endif
  }
  DispatchDType(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    LayerNormForwardRef<T>(rows, C, static_cast<const T*>(inp), static_cast<const T*>(weight),
                           static_cast<const T*>(bias), static_cast<T*>(out), mean, rstd);
  });
  return absl::OkStatus();
}

absl::Status ResidualLayerNormForward(const OpContext& ctx, DType dtype, int64_t rows, int64_t C,
                                      const void* inp1, const void* inp2, const void* weight,
                                      const void* bias, void* residual, void* out, float* mean,
                                      float* rstd) {
  ZT_RETURN_IF_ERROR(CheckArgs("ResidualLayerNormForward", dtype, rows, C,
                               {{"inp1", inp1},
                                {"inp2", inp2},
                                {"weight", weight},
                                {"bias", bias},
                                {"residual", residual},
                                {"out", out},
                                {"mean", mean},
                                {"rstd", rstd}}));
  if (!ctx.is_cpu()) {
#if ZT_WITH_CUDA
    return internal::LayerNormForwardCuda(ctx.stream, dtype, rows, C, inp1, inp2, weight, bias,
                                          residual, out, mean, rstd);
#else
    return CudaNotBuilt("ResidualLayerNormForward");
#endif
  }
  DispatchDType(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    ResidualLayerNormForwardRef<T>(rows, C, static_cast<const T*>(inp1),
                                   static_cast<const T*>(inp2), static_cast<const T*>(weight),
                                   static_cast<const T*>(bias), static_cast<T*>(residual),
                                   static_cast<T*>(out), mean, rstd);
  });
  return absl::OkStatus();
}

// The CUDA geometry in every build: the number only sizes a buffer, and one
// answer per shape keeps callers simple. The CPU reference uses none of it.
size_t LayerNormBackwardWorkspaceBytes(int64_t rows, int64_t C) {
  if (rows <= 0 || C <= 0) return 0;
  return internal::LayerNormBackwardCudaWorkspaceBytes(rows, C);
}

absl::Status LayerNormBackward(const OpContext& ctx, DType dtype, int64_t rows, int64_t C,
                               const void* dout, const void* inp, const void* weight,
                               const float* mean, const float* rstd, void* dinp, void* dweight,
                               void* dbias) {
  ZT_RETURN_IF_ERROR(CheckArgs("LayerNormBackward", dtype, rows, C,
                               {{"dout", dout},
                                {"inp", inp},
                                {"weight", weight},
                                {"mean", mean},
                                {"rstd", rstd},
                                {"dinp", dinp},
                                {"dweight", dweight},
                                {"dbias", dbias}}));
  if (!ctx.is_cpu()) {
#if ZT_WITH_CUDA
    return internal::LayerNormBackwardCuda(ctx.stream, ctx.workspace, ctx.workspace_bytes, dtype,
                                           rows, C, dout, inp, weight, mean, rstd, dinp, dweight,
                                           dbias);
#else
    return CudaNotBuilt("LayerNormBackward");
#endif
  }
  DispatchDType(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    LayerNormBackwardRef<T>(rows, C, static_cast<const T*>(dout), static_cast<const T*>(inp),
                            static_cast<const T*>(weight), mean, rstd, static_cast<T*>(dinp),
                            static_cast<T*>(dweight), static_cast<T*>(dbias));
  });
  return absl::OkStatus();
}

}  // namespace zt::kernels
