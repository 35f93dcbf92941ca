#include "kernels/matmul.h"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "kernels/matmul_cuda.h"
#include "kernels/matmul_ref.h"
#include "kernels/ref_util.h"

namespace zt::kernels {
namespace {

absl::Status ValidateShape(const char* op, DType dtype, int64_t M, int64_t N, int64_t K) {
  if (dtype != DType::kFloat32 && dtype != DType::kFloat16 && dtype != DType::kBFloat16) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": unknown dtype ", static_cast<int>(dtype)));
  }
  // BLAS takes int dimensions and leading dimensions.
  constexpr int64_t kMax = std::numeric_limits<int>::max();
  for (const auto& [name, v] : {std::pair<const char*, int64_t>{"M", M}, {"N", N}, {"K", K}}) {
    if (v < 0 || v > kMax) {
      return absl::InvalidArgumentError(
          absl::StrCat(op, ": ", name, "=", v, " must be in [0, ", kMax, "]"));
    }
  }
  return absl::OkStatus();
}

// A buffer of `elements` > 0 elements must be given.
absl::Status Require(const char* op, const char* name, const void* ptr, int64_t elements) {
  if (ptr == nullptr && elements > 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": ", name, " is null but holds ", elements, " elements"));
  }
  return absl::OkStatus();
}

absl::Status ValidateForward(const MatmulForwardParams& p) {
  constexpr const char* kOp = "MatmulForward";
  ZT_RETURN_IF_ERROR(ValidateShape(kOp, p.dtype, p.M, p.N, p.K));
  const int64_t out_elems = p.M * p.N;
  // With an empty output nothing is read.
  if (out_elems == 0) return absl::OkStatus();
  ZT_RETURN_IF_ERROR(Require(kOp, "inp", p.inp, p.M * p.K));
  ZT_RETURN_IF_ERROR(Require(kOp, "weight", p.weight, p.N * p.K));
  ZT_RETURN_IF_ERROR(Require(kOp, "out", p.out, out_elems));
  if (p.pre_gelu != nullptr && p.pre_gelu == p.out) {
    return absl::InvalidArgumentError(
        absl::StrCat(kOp, ": pre_gelu and out must be different buffers"));
  }
  return absl::OkStatus();
}

absl::Status ValidateBackward(const MatmulBackwardParams& p) {
  constexpr const char* kOp = "MatmulBackward";
  ZT_RETURN_IF_ERROR(ValidateShape(kOp, p.dtype, p.M, p.N, p.K));
  const bool any_output = p.dinp != nullptr || p.dweight != nullptr || p.dbias != nullptr;
  if (any_output) ZT_RETURN_IF_ERROR(Require(kOp, "dout", p.dout, p.M * p.N));
  if (p.dinp != nullptr && p.N > 0) {
    ZT_RETURN_IF_ERROR(Require(kOp, "weight", p.weight, p.N * p.K));
  }
  if (p.dweight != nullptr && p.M > 0) {
    ZT_RETURN_IF_ERROR(Require(kOp, "inp", p.inp, p.M * p.K));
  }
  return absl::OkStatus();
}

}  // namespace

size_t MatmulForwardWorkspaceBytes(int64_t M, int64_t N) {
  return M > 0 && N > 0 ? kMatmulWorkspaceBytes : 0;
}

size_t MatmulBackwardWorkspaceBytes(int64_t M, int64_t N) {
  if (M <= 0 || N <= 0) return 0;
  return std::max(MatmulBiasGradWorkspaceBytes(M, N), kMatmulWorkspaceBytes);
}

absl::Status MatmulForward(const OpContext& ctx, const MatmulForwardParams& p) {
  ZT_RETURN_IF_ERROR(ValidateForward(p));
  if (!ctx.is_cpu()) {
#if ZT_WITH_CUDA
    return MatmulForwardCuda(ctx, p);
#else
    return CudaNotBuilt("MatmulForward");
#endif
  }
  DispatchDType(p.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    MatmulForwardRef(static_cast<const T*>(p.inp), static_cast<const T*>(p.weight),
                     static_cast<const T*>(p.bias), static_cast<T*>(p.out),
                     static_cast<T*>(p.pre_gelu), p.M, p.N, p.K);
  });
  return absl::OkStatus();
}

absl::Status MatmulBackward(const OpContext& ctx, const MatmulBackwardParams& p) {
  ZT_RETURN_IF_ERROR(ValidateBackward(p));
  if (!ctx.is_cpu()) {
#if ZT_WITH_CUDA
    return MatmulBackwardCuda(ctx, p);
#else
    return CudaNotBuilt("MatmulBackward");
#endif
  }
  DispatchDType(p.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    MatmulBackwardRef(static_cast<const T*>(p.dout), static_cast<const T*>(p.inp),
                      static_cast<const T*>(p.weight), static_cast<T*>(p.dinp),
                      static_cast<const T*>(p.inp_pre_gelu), static_cast<T*>(p.dweight),
                      static_cast<T*>(p.dbias), p.M, p.N, p.K, p.accumulate);
  });
  return absl::OkStatus();
}

}  // namespace zt::kernels
