#include "kernels/cross_entropy.h"

#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "kernels/cross_entropy_ref.h"
#include "kernels/ref_util.h"

#if ZT_WITH_CUDA
#include "kernels/cross_entropy_cuda.h"
#endif

namespace zt::kernels {
namespace {

absl::Status CheckParams(const CrossEntropyParams& p, const void* logits, const int32_t* targets,
                         const float* losses) {
  constexpr char kOp[] = "SoftmaxCrossEntropy: CrossEntropyParams.";
  if (p.rows <= 0)
    return absl::InvalidArgumentError(absl::StrCat(kOp, "rows must be positive, got ", p.rows));
  if (p.V <= 0)
    return absl::InvalidArgumentError(absl::StrCat(kOp, "V must be positive, got ", p.V));
  if (p.Vp < p.V) {
    return absl::InvalidArgumentError(
        absl::StrCat(kOp, "Vp (", p.Vp, ") must be at least V (", p.V, ")"));
  }
  if (p.dtype != DType::kFloat32 && p.dtype != DType::kFloat16 && p.dtype != DType::kBFloat16) {
    return absl::InvalidArgumentError(
        absl::StrCat(kOp, "dtype has unknown value ", static_cast<int>(p.dtype)));
  }
  if (logits == nullptr) return absl::InvalidArgumentError("SoftmaxCrossEntropy: logits is null");
  if (targets == nullptr) return absl::InvalidArgumentError("SoftmaxCrossEntropy: targets is null");
  if (losses == nullptr) return absl::InvalidArgumentError("SoftmaxCrossEntropy: losses is null");
  return absl::OkStatus();
}

}  // namespace

absl::Status SoftmaxCrossEntropy(const OpContext& ctx, const CrossEntropyParams& p, void* logits,
                                 const int32_t* targets, float* losses) {
  ZT_RETURN_IF_ERROR(CheckParams(p, logits, targets, losses));
  if (!ctx.is_cpu()) {
#if ZT_WITH_CUDA
    return internal::SoftmaxCrossEntropyCuda(ctx.stream, p.dtype, p.rows, p.V, p.Vp, p.dloss,
                                             p.compute_grad, logits, targets, losses);
#else
    return CudaNotBuilt("SoftmaxCrossEntropy");
#endif
  }
  // Every target is checked before any row is overwritten.
  ZT_RETURN_IF_ERROR(CheckCrossEntropyTargets(p, targets));
  DispatchDType(p.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    SoftmaxCrossEntropyRef<T>(p, static_cast<T*>(logits), targets, losses);
  });
  return absl::OkStatus();
}

}  // namespace zt::kernels
