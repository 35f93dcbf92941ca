#ifndef ZEROTRAIN_KERNELS_REF_UTIL_H_
#define ZEROTRAIN_KERNELS_REF_UTIL_H_

// Helpers for the CPU references. References are templates over the storage
// type T (float, Half, BFloat16, and double for finite-difference tests);
// arithmetic happens in Acc<T>: double for double, float otherwise, so the
// fp32 reference is what the CUDA kernels are compared with and the double
// instantiation is what finite differences check.

#include <type_traits>

#include "absl/status/status.h"
#include "core/dtype.h"

namespace zt::kernels {

template <typename T>
using Acc = std::conditional_t<std::is_same_v<T, double>, double, float>;

template <typename T>
inline Acc<T> Load(const T& v) {
  if constexpr (std::is_same_v<T, double> || std::is_same_v<T, float>) {
    return v;
  } else {
    return v.ToFloat();
  }
}

template <typename T>
inline T Store(Acc<T> v) {
  if constexpr (std::is_same_v<T, double> || std::is_same_v<T, float>) {
    return v;
  } else {
    return T::FromFloat(v);
  }
}

// Calls fn.template operator()<T>() with T the storage type for `dtype`:
//   return DispatchDType(dtype, [&](auto tag) { using T = typename
//   decltype(tag)::type; ... });
template <typename T>
struct TypeTag {
  using type = T;
};

template <typename Fn>
inline auto DispatchDType(DType dtype, Fn&& fn) {
  switch (dtype) {
    case DType::kFloat16:
      return fn(TypeTag<Half>{});
    case DType::kBFloat16:
      return fn(TypeTag<BFloat16>{});
    case DType::kFloat32:
    default:
      return fn(TypeTag<float>{});
  }
}

}  // namespace zt::kernels

#endif  // ZEROTRAIN_KERNELS_REF_UTIL_H_
