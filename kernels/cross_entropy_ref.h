#ifndef ZEROTRAIN_KERNELS_CROSS_ENTROPY_REF_H_
#define ZEROTRAIN_KERNELS_CROSS_ENTROPY_REF_H_

// CPU reference for kernels/cross_entropy.h, a template over the storage type
// (float, Half, BFloat16, double); losses have type Acc<T>. Callers validate
// shapes and targets first (CheckCrossEntropyTargets).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "kernels/cross_entropy.h"
#include "kernels/ref_util.h"

namespace zt::kernels {

inline constexpr int32_t kIgnoreTarget = -1;

// InvalidArgument naming the first row whose target is neither -1 nor in
// [0, V).
inline absl::Status CheckCrossEntropyTargets(const CrossEntropyParams& p, const int32_t* targets) {
  for (int64_t r = 0; r < p.rows; ++r) {
    const int32_t t = targets[r];
    if (t != kIgnoreTarget && (t < 0 || t >= p.V)) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "SoftmaxCrossEntropy: target of row %d is %d, outside [0, V=%d) and not the ignore "
          "value -1",
          r, t, p.V));
    }
  }
  return absl::OkStatus();
}

template <typename T>
void SoftmaxCrossEntropyRef(const CrossEntropyParams& p, T* logits, const int32_t* targets,
                            Acc<T>* losses) {
  using A = Acc<T>;
  const A dloss = p.dloss;
  for (int64_t r = 0; r < p.rows; ++r) {
    T* x = logits + r * p.Vp;
    const int32_t t = targets[r];
    if (t == kIgnoreTarget) {
      losses[r] = 0;
      if (p.compute_grad) std::fill(x, x + p.Vp, Store<T>(0));
      continue;
    }
    A max = -std::numeric_limits<A>::infinity();
    for (int64_t c = 0; c < p.V; ++c) max = std::max(max, Load(x[c]));
    A sum = 0;
    for (int64_t c = 0; c < p.V; ++c) sum += std::exp(Load(x[c]) - max);
    // logsumexp - x[t], with the max taken out before the log.
    losses[r] = std::log(sum) + (max - Load(x[t]));
    if (!p.compute_grad) continue;
    for (int64_t c = 0; c < p.V; ++c) {
      const A prob = std::exp(Load(x[c]) - max) / sum;
      x[c] = Store<T>((prob - (c == t ? A(1) : A(0))) * dloss);
    }
    std::fill(x + p.V, x + p.Vp, Store<T>(0));
  }
}

}  // namespace zt::kernels

#endif  // ZEROTRAIN_KERNELS_CROSS_ENTROPY_REF_H_
