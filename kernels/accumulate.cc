#include "kernels/accumulate.h"

#include "kernels/ref_util.h"

namespace zt::kernels {

absl::Status Accumulate(const OpContext& ctx, DType dtype, void* dst, const void* src, int64_t n) {
  if (n < 0) return absl::InvalidArgumentError("Accumulate: n must be >= 0");
  if (n == 0) return absl::OkStatus();
  if (!ctx.is_cpu()) {
#if ZT_WITH_CUDA
    return AccumulateCuda(ctx, dtype, dst, src, n);
#else
    return CudaNotBuilt("Accumulate");
#endif
  }
  DispatchDType(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* d = static_cast<T*>(dst);
    const T* s = static_cast<const T*>(src);
    for (int64_t i = 0; i < n; ++i) d[i] = Store<T>(Load(d[i]) + Load(s[i]));
  });
  return absl::OkStatus();
}

}  // namespace zt::kernels
