#ifndef ZEROTRAIN_KERNELS_TESTUTIL_H_
#define ZEROTRAIN_KERNELS_TESTUTIL_H_

// Test helpers shared by the kernel tests: random data, dtype round trips,
// finite-difference gradients in double, and the tolerance rule
// |got - ref| <= atol + |ref| * eps(dtype) * factor.

#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "core/dtype.h"

namespace zt::kernels::testing {

inline std::vector<double> RandomDoubles(size_t n, uint64_t seed, double lo = -1, double hi = 1) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  std::vector<double> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

inline std::vector<float> RandomFloats(size_t n, uint64_t seed, float lo = -1, float hi = 1) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

// Host bytes holding `values` converted to `dtype`.
inline std::vector<uint8_t> ToBytes(const std::vector<float>& values, DType dtype) {
  std::vector<uint8_t> out(values.size() * DTypeSize(dtype));
  for (size_t i = 0; i < values.size(); ++i) {
    if (dtype == DType::kFloat32) {
      std::memcpy(out.data() + 4 * i, &values[i], 4);
    } else {
      const uint16_t b = dtype == DType::kFloat16 ? FloatToHalfBits(values[i])
                                                  : FloatToBFloat16Bits(values[i]);
      std::memcpy(out.data() + 2 * i, &b, 2);
    }
  }
  return out;
}

inline std::vector<float> FromBytes(const void* data, size_t n, DType dtype) {
  std::vector<float> out(n);
  const uint8_t* p = static_cast<const uint8_t*>(data);
  for (size_t i = 0; i < n; ++i) {
    if (dtype == DType::kFloat32) {
      std::memcpy(&out[i], p + 4 * i, 4);
    } else {
      uint16_t b;
      std::memcpy(&b, p + 2 * i, 2);
      out[i] = dtype == DType::kFloat16 ? HalfBitsToFloat(b) : BFloat16BitsToFloat(b);
    }
  }
  return out;
}

// Central differences of a scalar function at x, in double.
inline std::vector<double> NumericalGradient(const std::function<double(const std::vector<double>&)>& f,
                                             std::vector<double> x, double h = 1e-6) {
  std::vector<double> g(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const double saved = x[i];
    x[i] = saved + h;
    const double fp = f(x);
    x[i] = saved - h;
    const double fm = f(x);
    x[i] = saved;
    g[i] = (fp - fm) / (2 * h);
  }
  return g;
}

// Expects |got - want| <= atol + rtol * |want| elementwise; reports the worst.
template <typename A, typename B>
void ExpectAllClose(const std::vector<A>& got, const std::vector<B>& want, double atol, double rtol,
                    const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  double worst = 0;
  size_t worst_i = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double g = got[i], w = want[i];
    ASSERT_FALSE(std::isnan(g)) << what << " NaN at " << i;
    const double excess = std::abs(g - w) - (atol + rtol * std::abs(w));
    if (excess > worst) {
      worst = excess;
      worst_i = i;
    }
  }
  EXPECT_EQ(worst, 0.0) << what << ": index " << worst_i << " got " << got[worst_i] << " want "
                        << want[worst_i] << " (atol " << atol << ", rtol " << rtol << ")";
}

}  // namespace zt::kernels::testing

#endif  // ZEROTRAIN_KERNELS_TESTUTIL_H_
