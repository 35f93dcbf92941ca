// Needs a GPU: CUDA GELU against the CPU reference, every dtype, lengths that
// do and do not fill whole 16-byte vectors, aligned and misaligned pointers.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "core/dtype.h"
#include "kernels/gelu.h"
#include "kernels/gpu_testutil.h"
#include "kernels/op_context.h"
#include "kernels/testutil.h"

namespace zt::kernels {
namespace {

using testing::DeviceBuffer;
using testing::ExpectAllClose;
using testing::FromBytes;
using testing::RandomFloats;
using testing::ToBytes;

constexpr double kEps32 = 1.1920928955078125e-07;
constexpr float kRange = 6.0f;

class GeluGpuTest : public ::testing::TestWithParam<std::tuple<DType, int64_t, int>>,
                    public testing::CudaBuffers {};

// Both sides compute in fp32 and round once. tanhf and std::tanh differ in
// the last bits, and 1 + tanh(u) cancels for negative x, so the fp32 error is
// a few eps of the O(|x|) terms (atol over |x| <= kRange); 16-bit results may
// then round to neighbouring values, one ulp = |ref| * eps(dtype).
TEST_P(GeluGpuTest, MatchesCpuReference) {
  const auto [dtype, n, offset] = GetParam();
  const size_t e = DTypeSize(dtype);
  const std::vector<uint8_t> x = ToBytes(RandomFloats(n, 1, -kRange, kRange), dtype);
  const std::vector<uint8_t> g = ToBytes(RandomFloats(n, 2), dtype);
  // `offset` elements past a cudaMalloc'd base: 0 takes the vector path,
  // 1 the misaligned element-wise one.
  DeviceBuffer x_dev = Alloc((n + offset) * e), g_dev = Alloc((n + offset) * e),
               y_dev = Alloc((n + offset) * e), dx_dev = Alloc((n + offset) * e);
  auto at = [&](const DeviceBuffer& b) { return static_cast<uint8_t*>(b.get()) + offset * e; };
  Upload(at(x_dev), x);
  Upload(at(g_dev), g);
  ASSERT_TRUE(GeluForward(ctx_, dtype, at(x_dev), at(y_dev), n).ok());
  ASSERT_TRUE(GeluBackward(ctx_, dtype, at(g_dev), at(x_dev), at(dx_dev), n).ok());
  const std::vector<uint8_t> y = Download(at(y_dev), n * e);
  const std::vector<uint8_t> dx = Download(at(dx_dev), n * e);

  std::vector<uint8_t> y_ref(n * e), dx_ref(n * e);
  ASSERT_TRUE(GeluForward(OpContext::Cpu(), dtype, x.data(), y_ref.data(), n).ok());
  ASSERT_TRUE(GeluBackward(OpContext::Cpu(), dtype, g.data(), x.data(), dx_ref.data(), n).ok());

  const double atol = 4 * kEps32 * (kRange + 1);
  const double rtol = dtype == DType::kFloat32 ? 4 * kEps32 : DTypeEpsilon(dtype);
  const std::string what = absl::StrCat(DTypeName(dtype), " n=", n, " offset=", offset);
  ExpectAllClose(FromBytes(y.data(), n, dtype), FromBytes(y_ref.data(), n, dtype), atol, rtol,
                 "forward " + what);
  ExpectAllClose(FromBytes(dx.data(), n, dtype), FromBytes(dx_ref.data(), n, dtype), atol, rtol,
                 "backward " + what);

  // In place (out = inp, dinp = dout), a second run, gives the same bits.
  ASSERT_TRUE(GeluForward(ctx_, dtype, at(x_dev), at(x_dev), n).ok());
  EXPECT_EQ(Download(at(x_dev), n * e), y) << what;
  Upload(at(x_dev), x);
  ASSERT_TRUE(GeluBackward(ctx_, dtype, at(g_dev), at(x_dev), at(g_dev), n).ok());
  EXPECT_EQ(Download(at(g_dev), n * e), dx) << what;
}

INSTANTIATE_TEST_SUITE_P(
    AllDTypes, GeluGpuTest,
    ::testing::Combine(::testing::Values(DType::kFloat32, DType::kFloat16, DType::kBFloat16),
                       ::testing::Values(int64_t{1}, int64_t{7}, int64_t{8}, int64_t{1000},
                                         int64_t{4099}, int64_t{(1 << 20) + 5}),
                       ::testing::Values(0, 1)),
    [](const ::testing::TestParamInfo<GeluGpuTest::ParamType>& info) {
      return absl::StrCat(DTypeName(std::get<0>(info.param)), "_n", std::get<1>(info.param),
                          "_offset", std::get<2>(info.param));
    });

}  // namespace
}  // namespace zt::kernels
