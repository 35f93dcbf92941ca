#include "kernels/gelu.h"

#include <initializer_list>
#include <utility>

#include "absl/strings/str_cat.h"
#include "kernels/gelu_ref.h"
#include "kernels/ref_util.h"

#if ZT_WITH_CUDA
#include "kernels/gelu_cuda.h"
#endif

namespace zt::kernels {
namespace {

absl::Status Validate(const char* op, DType dtype, int64_t n,
                      std::initializer_list<std::pair<const char*, const void*>> pointers) {
  if (dtype != DType::kFloat32 && dtype != DType::kFloat16 && dtype != DType::kBFloat16) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": unknown dtype ", static_cast<int>(dtype)));
  }
  if (n < 0) return absl::InvalidArgumentError(absl::StrCat(op, ": n=", n, " must be >= 0"));
  if (n == 0) return absl::OkStatus();
  for (const auto& [name, ptr] : pointers) {
    if (ptr == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(op, ": ", name, " is null (n=", n, ")"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

float GeluScalar(float x) { return GeluValue(x); }
float GeluGradScalar(float x) { return GeluGrad(x); }

absl::Status GeluForward(const OpContext& ctx, DType dtype, const void* inp, void* out, int64_t n) {
  absl::Status s = Validate("GeluForward", dtype, n, {{"inp", inp}, {"out", out}});
  if (!s.ok() || n == 0) return s;
  if (!ctx.is_cpu()) {
#if ZT_WITH_CUDA
    return GeluForwardCuda(ctx.stream, dtype, inp, out, n);
#else
    return CudaNotBuilt("GeluForward");
#endif
  }
  DispatchDType(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    GeluForwardRef(static_cast<const T*>(inp), static_cast<T*>(out), n);
  });
  return absl::OkStatus();
}

absl::Status GeluBackward(const OpContext& ctx, DType dtype, const void* dout, const void* inp,
                          void* dinp, int64_t n) {
  absl::Status s =
      Validate("GeluBackward", dtype, n, {{"dout", dout}, {"inp", inp}, {"dinp", dinp}});
  if (!s.ok() || n == 0) return s;
  if (!ctx.is_cpu()) {
#if ZT_WITH_CUDA
    return GeluBackwardCuda(ctx.stream, dtype, dout, inp, dinp, n);
#else
    return CudaNotBuilt("GeluBackward");
#endif
  }
  DispatchDType(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    GeluBackwardRef(static_cast<const T*>(dout), static_cast<const T*>(inp), static_cast<T*>(dinp),
                    n);
  });
  return absl::OkStatus();
}

}  // namespace zt::kernels
