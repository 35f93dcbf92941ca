#include "kernels/embedding.h"

#include <cstdint>
#include <initializer_list>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "kernels/embedding_ref.h"
#include "kernels/ref_util.h"

#if ZT_WITH_CUDA
#include "kernels/embedding_cuda.h"
#endif

namespace zt::kernels {
namespace {

absl::Status CheckParams(const EmbeddingParams& p) {
  const std::pair<const char*, int64_t> sizes[] = {{"B", p.B}, {"T", p.T}, {"C", p.C}, {"V", p.V}};
  for (const auto& [name, value] : sizes) {
    if (value <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("embedding: EmbeddingParams.", name, " must be positive, got ", value));
    }
  }
  if (p.dtype != DType::kFloat32 && p.dtype != DType::kFloat16 && p.dtype != DType::kBFloat16) {
    return absl::InvalidArgumentError(absl::StrCat(
        "embedding: EmbeddingParams.dtype has unknown value ", static_cast<int>(p.dtype)));
  }
  return absl::OkStatus();
}

absl::Status CheckPointers(std::initializer_list<std::pair<const char*, const void*>> ptrs) {
  for (const auto& [name, ptr] : ptrs) {
    if (ptr == nullptr)
      return absl::InvalidArgumentError(absl::StrCat("embedding: ", name, " is null"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status EmbeddingForward(const OpContext& ctx, const EmbeddingParams& p, const int32_t* tokens,
                              const void* wte, const void* wpe, void* out) {
  ZT_RETURN_IF_ERROR(CheckParams(p));
  ZT_RETURN_IF_ERROR(CheckPointers({{"tokens", tokens}, {"wte", wte}, {"wpe", wpe}, {"out", out}}));
  if (!ctx.is_cpu()) {
#if ZT_WITH_CUDA
    return internal::EmbeddingForwardCuda(ctx.stream, p.dtype, p.B, p.T, p.C, p.V, tokens, wte, wpe,
                                          out);
#else
    return CudaNotBuilt("EmbeddingForward");
#endif
  }
  ZT_RETURN_IF_ERROR(CheckEmbeddingTokens(p, tokens));
  DispatchDType(p.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    EmbeddingForwardRef<T>(p, tokens, static_cast<const T*>(wte), static_cast<const T*>(wpe),
                           static_cast<T*>(out));
  });
  return absl::OkStatus();
}

size_t EmbeddingBackwardWorkspaceBytes(const EmbeddingParams& p) {
  if (!CheckParams(p).ok()) return 0;
#if ZT_WITH_CUDA
  return internal::EmbeddingBackwardCudaWorkspaceBytes(p.B, p.T, p.V);
#else
  return 0;  // The CPU reference needs no scratch.
#endif
}

absl::Status EmbeddingBackward(const OpContext& ctx, const EmbeddingParams& p,
                               const int32_t* tokens, const void* dout, void* dwte, void* dwpe) {
  ZT_RETURN_IF_ERROR(CheckParams(p));
  ZT_RETURN_IF_ERROR(
      CheckPointers({{"tokens", tokens}, {"dout", dout}, {"dwte", dwte}, {"dwpe", dwpe}}));
  if (!ctx.is_cpu()) {
#if ZT_WITH_CUDA
    return internal::EmbeddingBackwardCuda(ctx.stream, ctx.workspace, ctx.workspace_bytes, p.dtype,
                                           p.B, p.T, p.C, p.V, tokens, dout, dwte, dwpe);
#else
    return CudaNotBuilt("EmbeddingBackward");
#endif
  }
  ZT_RETURN_IF_ERROR(CheckEmbeddingTokens(p, tokens));
  DispatchDType(p.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    EmbeddingBackwardRef<T>(p, tokens, static_cast<const T*>(dout), static_cast<T*>(dwte),
                            static_cast<T*>(dwpe));
  });
  return absl::OkStatus();
}

}  // namespace zt::kernels
