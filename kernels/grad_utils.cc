#include "kernels/grad_utils.h"

#include <cmath>
#include <cstdint>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "kernels/grad_utils_internal.h"
#include "kernels/ref_util.h"

namespace zt::kernels {
namespace {

namespace internal = grad_utils_internal;

absl::Status CheckDType(const char* op, const char* what, DType t) {
  if (t == DType::kFloat32 || t == DType::kFloat16 || t == DType::kBFloat16) {
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(
      absl::StrCat(op, ": ", what, " ", static_cast<int>(t), " is not a dtype"));
}

absl::Status CheckCount(const char* op, int64_t n) {
  if (n >= 0) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(op, ": n = ", n, " is negative"));
}

template <typename T>
bool ScaleAndCheckFiniteCpu(T* x, int64_t n, float scale) {
  bool nonfinite = false;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = Store<T>(Load(x[i]) * scale);
    // Test the stored value: a finite product can still overflow fp16.
    nonfinite |= !std::isfinite(Load(x[i]));
  }
  return nonfinite;
}

// Squares summed in double: each square of a float is exact in double and
// the sum's relative error stays near n * 2^-53, far below the fp32 result's
// own rounding, so the CPU answer is the reference the GPU's fp32 tree is
// measured against. Four interleaved accumulators (fixed assignment, fixed
// final order) keep the add latency off the critical path and the result
// deterministic.
template <typename T>
void AccumulateSquares(const T* x, int64_t n, double acc[4]) {
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    for (int k = 0; k < 4; ++k) {
      const double v = Load(x[i + k]);
      acc[k] += v * v;
    }
  }
  for (; i < n; ++i) {
    const double v = Load(x[i]);
    acc[i % 4] += v * v;
  }
}

template <typename Src, typename Dst>
void CastCpu(const Src* src, Dst* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = Store<Dst>(Load(src[i]));
}

}  // namespace

absl::Status ScaleAndCheckFinite(const OpContext& ctx, DType dtype, void* x, int64_t n,
                                 float scale, int32_t* found_nonfinite) {
  constexpr const char* kOp = "ScaleAndCheckFinite";
  if (absl::Status s = CheckDType(kOp, "dtype", dtype); !s.ok()) return s;
  if (absl::Status s = CheckCount(kOp, n); !s.ok()) return s;
  if (found_nonfinite == nullptr) {
    return absl::InvalidArgumentError("ScaleAndCheckFinite: found_nonfinite is null");
  }
  if (x == nullptr && n > 0) {
    return absl::InvalidArgumentError(absl::StrCat("ScaleAndCheckFinite: x is null (n = ", n, ")"));
  }
  if (n == 0) return absl::OkStatus();
  if (ctx.is_cpu()) {
    const bool nonfinite = DispatchDType(dtype, [&](auto tag) {
      using T = typename decltype(tag)::type;
      return ScaleAndCheckFiniteCpu(static_cast<T*>(x), n, scale);
    });
    if (nonfinite) *found_nonfinite = 1;
    return absl::OkStatus();
  }
#if ZT_WITH_CUDA
  return internal::LaunchScaleAndCheckFinite(ctx.stream, dtype, x, n, scale, found_nonfinite);
#else
  return CudaNotBuilt(kOp);
#endif
}

size_t SquaredNormWorkspaceBytes(absl::Span<const ConstTensorRef> tensors) {
  return static_cast<size_t>(internal::NumPartials(internal::PlanSquaredNorm(tensors))) *
         sizeof(float);
}

absl::Status SquaredNorm(const OpContext& ctx, DType dtype,
                         absl::Span<const ConstTensorRef> tensors, float* out) {
  constexpr const char* kOp = "SquaredNorm";
  if (absl::Status s = CheckDType(kOp, "dtype", dtype); !s.ok()) return s;
  if (out == nullptr) return absl::InvalidArgumentError("SquaredNorm: out is null");
  for (size_t i = 0; i < tensors.size(); ++i) {
    if (tensors[i].n < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("SquaredNorm: tensors[", i, "].n = ", tensors[i].n, " is negative"));
    }
    if (tensors[i].n > 0 && tensors[i].data == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("SquaredNorm: tensors[", i, "].data is null (n = ", tensors[i].n, ")"));
    }
  }
  if (ctx.is_cpu()) {
    double acc[4] = {0, 0, 0, 0};
    DispatchDType(dtype, [&](auto tag) {
      using T = typename decltype(tag)::type;
      for (const ConstTensorRef& t : tensors) {
        AccumulateSquares(static_cast<const T*>(t.data), t.n, acc);
      }
    });
    *out = static_cast<float>((acc[0] + acc[1]) + (acc[2] + acc[3]));
    return absl::OkStatus();
  }
#if ZT_WITH_CUDA
  const size_t need = SquaredNormWorkspaceBytes(tensors);
  if (ctx.workspace_bytes < need || (need > 0 && ctx.workspace == nullptr)) {
    return absl::ResourceExhaustedError(
        absl::StrCat("SquaredNorm: workspace has ", ctx.workspace_bytes, " bytes, needs ", need,
                     " (SquaredNormWorkspaceBytes)"));
  }
  return internal::LaunchSquaredNorm(ctx.stream, dtype, tensors,
                                     static_cast<float*>(ctx.workspace), out);
#else
  return CudaNotBuilt(kOp);
#endif
}

absl::Status Cast(const OpContext& ctx, const void* src, DType src_dtype, void* dst,
                  DType dst_dtype, int64_t n) {
  constexpr const char* kOp = "Cast";
  if (absl::Status s = CheckDType(kOp, "src_dtype", src_dtype); !s.ok()) return s;
  if (absl::Status s = CheckDType(kOp, "dst_dtype", dst_dtype); !s.ok()) return s;
  if (absl::Status s = CheckCount(kOp, n); !s.ok()) return s;
  if (n == 0) return absl::OkStatus();
  if (src == nullptr) return absl::InvalidArgumentError("Cast: src is null");
  if (dst == nullptr) return absl::InvalidArgumentError("Cast: dst is null");
  if (src == dst && src_dtype == dst_dtype) return absl::OkStatus();
  const size_t src_bytes = static_cast<size_t>(n) * DTypeSize(src_dtype);
  const size_t dst_bytes = static_cast<size_t>(n) * DTypeSize(dst_dtype);
  const uintptr_t s0 = reinterpret_cast<uintptr_t>(src);
  const uintptr_t d0 = reinterpret_cast<uintptr_t>(dst);
  if (s0 < d0 + dst_bytes && d0 < s0 + src_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("Cast: src [", s0, ", +", src_bytes, ") and dst [", d0, ", +", dst_bytes,
                     ") overlap"));
  }
  if (ctx.is_cpu()) {
    // Equal dtypes copy bits, so NaN payloads survive as they would in
    // cudaMemcpy.
    if (src_dtype == dst_dtype) {
      std::memcpy(dst, src, src_bytes);
      return absl::OkStatus();
    }
    DispatchDType(src_dtype, [&](auto src_tag) {
      using Src = typename decltype(src_tag)::type;
      DispatchDType(dst_dtype, [&](auto dst_tag) {
        using Dst = typename decltype(dst_tag)::type;
        CastCpu(static_cast<const Src*>(src), static_cast<Dst*>(dst), n);
      });
    });
    return absl::OkStatus();
  }
#if ZT_WITH_CUDA
  if (src_dtype == dst_dtype) return internal::LaunchCopy(ctx.stream, dst, src, src_bytes);
  return internal::LaunchCast(ctx.stream, src, src_dtype, dst, dst_dtype, n);
#else
  return CudaNotBuilt(kOp);
#endif
}

}  // namespace zt::kernels
