#include "kernels/gelu.h"

#include <cmath>
#include <cstring>
#include <vector>

#include "gtest/gtest.h"
#include "core/dtype.h"
#include "kernels/gelu_ref.h"
#include "kernels/op_context.h"
#include "kernels/testutil.h"

namespace zt::kernels {
namespace {

using testing::ExpectAllClose;
using testing::FromBytes;
using testing::NumericalGradient;
using testing::RandomDoubles;
using testing::RandomFloats;
using testing::ToBytes;

constexpr double kEps32 = 1.1920928955078125e-07;

// Values of 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) and its
// derivative, evaluated in double precision outside this code base.
struct Known {
  double x, gelu, grad;
};
constexpr Known kKnown[] = {
    {-3.0, -0.0036373920817729943, -0.011584166630969516},
    {-1.0, -0.15880800939172324, -0.08296408384578255},
    {-0.5, -0.15428599017485606, 0.13263009646535764},
    {0.0, 0.0, 0.5},
    {0.5, 0.34571400982514394, 0.8673699035346424},
    {1.0, 0.8411919906082768, 1.0829640838457826},
    {3.0, 2.996362607918227, 1.0115841666309695},
};

TEST(GeluTest, ScalarMatchesKnownValues) {
  for (const Known& k : kKnown) {
    const float x = static_cast<float>(k.x);
    // fp32: 1 + tanh(u) cancels for negative x, so the error is a few eps of
    // the O(|x|) intermediate terms, not of the (small) result.
    const double tol = 4 * kEps32 * (std::abs(k.x) + 1);
    EXPECT_NEAR(GeluScalar(x), k.gelu, tol) << "x=" << k.x;
    EXPECT_NEAR(GeluGradScalar(x), k.grad, tol) << "x=" << k.x;
    EXPECT_NEAR(GeluValue(k.x), k.gelu, 1e-15) << "x=" << k.x;
    EXPECT_NEAR(GeluGrad(k.x), k.grad, 1e-15) << "x=" << k.x;
  }
}

TEST(GeluTest, GradMatchesFiniteDifferencesInDouble) {
  const std::vector<double> x = RandomDoubles(101, /*seed=*/1, -5, 5);
  const std::vector<double> w = RandomDoubles(x.size(), /*seed=*/2);
  // L(x) = sum_i w_i gelu(x_i), so dL/dx_i = w_i gelu'(x_i): GeluBackwardRef
  // with dout = w.
  auto loss = [&](const std::vector<double>& v) {
    std::vector<double> y(v.size());
    GeluForwardRef(v.data(), y.data(), static_cast<int64_t>(v.size()));
    double sum = 0;
    for (size_t i = 0; i < y.size(); ++i) sum += w[i] * y[i];
    return sum;
  };
  std::vector<double> dx(x.size());
  GeluBackwardRef(w.data(), x.data(), dx.data(), static_cast<int64_t>(x.size()));
  ExpectAllClose(dx, NumericalGradient(loss, x), 1e-8, 1e-7, "dx vs finite differences");
}

TEST(GeluTest, Fp32EntryPointsMatchDoubleReference) {
  const size_t n = 1001;
  const std::vector<float> x = RandomFloats(n, 3, -6, 6);
  const std::vector<float> g = RandomFloats(n, 4);
  std::vector<float> y(n), dx(n);
  const OpContext ctx = OpContext::Cpu();
  ASSERT_TRUE(GeluForward(ctx, DType::kFloat32, x.data(), y.data(), n).ok());
  ASSERT_TRUE(GeluBackward(ctx, DType::kFloat32, g.data(), x.data(), dx.data(), n).ok());
  std::vector<double> y_ref(n), dx_ref(n);
  for (size_t i = 0; i < n; ++i) {
    y_ref[i] = GeluValue<double>(x[i]);
    dx_ref[i] = g[i] * GeluGrad<double>(x[i]);
  }
  // fp32 evaluation: a few roundings of O(1) intermediates, so errors are a
  // few eps of the O(1) terms even where the result itself is tiny.
  ExpectAllClose(y, y_ref, 8 * kEps32, 8 * kEps32, "forward");
  ExpectAllClose(dx, dx_ref, 8 * kEps32, 8 * kEps32, "backward");
}

// 16-bit storage computes in fp32 and rounds once: within one ulp
// (|ref| * eps) of the fp32 result on the same (16-bit) inputs.
class GeluDTypeTest : public ::testing::TestWithParam<DType> {};

TEST_P(GeluDTypeTest, SixteenBitMatchesFp32WithinOneRounding) {
  const DType dtype = GetParam();
  const size_t n = 517;
  const std::vector<uint8_t> x = ToBytes(RandomFloats(n, 5, -6, 6), dtype);
  const std::vector<uint8_t> g = ToBytes(RandomFloats(n, 6), dtype);
  const std::vector<float> x32 = FromBytes(x.data(), n, dtype);
  const std::vector<float> g32 = FromBytes(g.data(), n, dtype);
  const OpContext ctx = OpContext::Cpu();
  std::vector<uint8_t> y(n * 2), dx(n * 2);
  ASSERT_TRUE(GeluForward(ctx, dtype, x.data(), y.data(), n).ok());
  ASSERT_TRUE(GeluBackward(ctx, dtype, g.data(), x.data(), dx.data(), n).ok());
  std::vector<float> y32(n), dx32(n);
  ASSERT_TRUE(GeluForward(ctx, DType::kFloat32, x32.data(), y32.data(), n).ok());
  ASSERT_TRUE(GeluBackward(ctx, DType::kFloat32, g32.data(), x32.data(), dx32.data(), n).ok());
  // atol: below the 16-bit types' normal range the ulp is absolute.
  const double eps = DTypeEpsilon(dtype);
  ExpectAllClose(FromBytes(y.data(), n, dtype), y32, 1e-7, eps, "forward");
  ExpectAllClose(FromBytes(dx.data(), n, dtype), dx32, 1e-7, eps, "backward");
}

INSTANTIATE_TEST_SUITE_P(SixteenBit, GeluDTypeTest,
                         ::testing::Values(DType::kFloat16, DType::kBFloat16));

TEST(GeluTest, InPlaceMatchesOutOfPlace) {
  const size_t n = 64;
  const std::vector<float> x = RandomFloats(n, 7, -4, 4);
  const std::vector<float> g = RandomFloats(n, 8);
  const OpContext ctx = OpContext::Cpu();
  std::vector<float> y(n), dx(n);
  ASSERT_TRUE(GeluForward(ctx, DType::kFloat32, x.data(), y.data(), n).ok());
  ASSERT_TRUE(GeluBackward(ctx, DType::kFloat32, g.data(), x.data(), dx.data(), n).ok());
  std::vector<float> y_inplace = x, dx_inplace = g;
  ASSERT_TRUE(GeluForward(ctx, DType::kFloat32, y_inplace.data(), y_inplace.data(), n).ok());
  ASSERT_TRUE(
      GeluBackward(ctx, DType::kFloat32, dx_inplace.data(), x.data(), dx_inplace.data(), n).ok());
  EXPECT_EQ(y_inplace, y);
  EXPECT_EQ(dx_inplace, dx);
}

TEST(GeluTest, SameInputsGiveSameBits) {
  const size_t n = 300;
  const std::vector<uint8_t> x = ToBytes(RandomFloats(n, 9, -5, 5), DType::kBFloat16);
  const OpContext ctx = OpContext::Cpu();
  std::vector<uint8_t> a(2 * n), b(2 * n);
  ASSERT_TRUE(GeluForward(ctx, DType::kBFloat16, x.data(), a.data(), n).ok());
  ASSERT_TRUE(GeluForward(ctx, DType::kBFloat16, x.data(), b.data(), n).ok());
  EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size()));
}

TEST(GeluTest, NegativeLengthIsInvalidArgument) {
  float x = 0, y = 0;
  const absl::Status s = GeluForward(OpContext::Cpu(), DType::kFloat32, &x, &y, -1);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("n=-1"), std::string::npos) << s;
}

TEST(GeluTest, NullPointerIsInvalidArgumentNamingIt) {
  float x = 0, g = 0;
  const absl::Status s = GeluBackward(OpContext::Cpu(), DType::kFloat32, &g, &x, nullptr, 1);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("dinp"), std::string::npos) << s;
}

TEST(GeluTest, EmptyInputIsANoOp) {
  EXPECT_TRUE(GeluForward(OpContext::Cpu(), DType::kFloat32, nullptr, nullptr, 0).ok());
}

// In a CUDA build a CUDA context launches (which needs a GPU and device
// pointers, see gelu_gpu_test); in a CPU build it is refused up front.
#if !ZT_WITH_CUDA
TEST(GeluTest, CudaContextInCpuBuildIsFailedPrecondition) {
  OpContext ctx;
  ctx.device = Device::Cuda(0);
  float x = 1, y = 0;
  const absl::Status s = GeluForward(ctx, DType::kFloat32, &x, &y, 1);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("GeluForward"), std::string::npos) << s;
  EXPECT_EQ(y, 0.0f);
}
#endif

}  // namespace
}  // namespace zt::kernels
