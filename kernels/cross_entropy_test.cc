#include "kernels/cross_entropy.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/cross_entropy_ref.h"
#include "kernels/testutil.h"

namespace zt::kernels {
namespace {

using testing::ExpectAllClose;
using testing::FromBytes;
using ::testing::HasSubstr;
using testing::NumericalGradient;
using testing::RandomDoubles;
using testing::RandomFloats;
using testing::ToBytes;

// Odd sizes with padding: V = 11 real columns in rows of Vp = 16.
constexpr int64_t kRows = 5, kV = 11, kVp = 16;
const std::vector<int32_t> kTargets = {3, 0, 10, 3, 7};
constexpr float kDloss = 0.37f;
const double kEps32 = DTypeEpsilon(DType::kFloat32);

CrossEntropyParams Params(DType dtype = DType::kFloat32, bool grad = true) {
  CrossEntropyParams p;
  p.rows = kRows;
  p.V = kV;
  p.Vp = kVp;
  p.dtype = dtype;
  p.dloss = grad ? kDloss : 0.0f;
  p.compute_grad = grad;
  return p;
}

// Logits in [-4, 4]; the padding columns hold garbage the op must ignore.
std::vector<float> Logits(uint64_t seed) {
  auto x = RandomFloats(kRows * kVp, seed, -4, 4);
  for (int64_t r = 0; r < kRows; ++r) {
    for (int64_t c = kV; c < kVp; ++c) x[r * kVp + c] = 1000.0f + c;
  }
  return x;
}

TEST(CrossEntropyTest, LossAndGradientMatchDoubleFormula) {
  const auto x0 = Logits(1);
  auto x = x0;
  std::vector<float> losses(kRows, -1.0f);
  ASSERT_TRUE(
      SoftmaxCrossEntropy(OpContext::Cpu(), Params(), x.data(), kTargets.data(), losses.data())
          .ok());
  std::vector<double> want_loss(kRows), want_grad(kRows * kVp, 0.0);
  for (int64_t r = 0; r < kRows; ++r) {
    double z = 0;
    for (int64_t c = 0; c < kV; ++c) z += std::exp(double{x0[r * kVp + c]});
    want_loss[r] = std::log(z) - x0[r * kVp + kTargets[r]];
    for (int64_t c = 0; c < kV; ++c) {
      want_grad[r * kVp + c] =
          (std::exp(double{x0[r * kVp + c]}) / z - (c == kTargets[r] ? 1 : 0)) * kDloss;
    }
  }
  ExpectAllClose(losses, want_loss, 1e-6, 8 * kEps32, "losses");
  // Padding columns come back as exact zeros (they are in want_grad too).
  ExpectAllClose(x, want_grad, 1e-7, 8 * kEps32, "dlogits");
  for (int64_t r = 0; r < kRows; ++r) {
    for (int64_t c = kV; c < kVp; ++c) EXPECT_EQ(x[r * kVp + c], 0.0f) << r << "," << c;
  }
}

TEST(CrossEntropyTest, GradientMatchesFiniteDifferences) {
  CrossEntropyParams p = Params();
  const auto x = RandomDoubles(kRows * kVp, 2, -4, 4);
  // L = dloss * sum of row losses; the reference overwrites its input, so
  // the loss function works on a copy without computing gradients.
  auto loss = [&](const std::vector<double>& v) {
    CrossEntropyParams q = p;
    q.compute_grad = false;
    std::vector<double> copy = v, losses(kRows);
    SoftmaxCrossEntropyRef<double>(q, copy.data(), kTargets.data(), losses.data());
    double l = 0;
    for (double li : losses) l += li;
    return l * double{kDloss};
  };
  const auto numeric = NumericalGradient(loss, x);
  std::vector<double> grad = x, losses(kRows);
  SoftmaxCrossEntropyRef<double>(p, grad.data(), kTargets.data(), losses.data());
  ExpectAllClose(grad, numeric, 1e-8, 1e-6, "dlogits");
}

TEST(CrossEntropyTest, IgnoredTargetGivesZeroLossAndZeroRow) {
  auto targets = kTargets;
  targets[1] = -1;
  auto x = Logits(3);
  const auto x0 = x;
  std::vector<float> losses(kRows, -1.0f), losses_all(kRows);
  ASSERT_TRUE(
      SoftmaxCrossEntropy(OpContext::Cpu(), Params(), x.data(), targets.data(), losses.data())
          .ok());
  EXPECT_EQ(losses[1], 0.0f);
  for (int64_t c = 0; c < kVp; ++c) EXPECT_EQ(x[1 * kVp + c], 0.0f) << c;
  // The other rows are unaffected by the ignored one.
  auto y = x0;
  ASSERT_TRUE(
      SoftmaxCrossEntropy(OpContext::Cpu(), Params(), y.data(), kTargets.data(), losses_all.data())
          .ok());
  for (int64_t r : {0, 2, 3, 4}) {
    EXPECT_EQ(losses[r], losses_all[r]) << r;
    for (int64_t c = 0; c < kVp; ++c) EXPECT_EQ(x[r * kVp + c], y[r * kVp + c]);
  }
}

TEST(CrossEntropyTest, WithoutGradientLogitsAreUntouched) {
  auto x = Logits(4);
  const auto x0 = x;
  std::vector<float> losses(kRows), losses_grad(kRows);
  ASSERT_TRUE(SoftmaxCrossEntropy(OpContext::Cpu(), Params(DType::kFloat32, false), x.data(),
                                  kTargets.data(), losses.data())
                  .ok());
  EXPECT_EQ(x, x0);
  ASSERT_TRUE(
      SoftmaxCrossEntropy(OpContext::Cpu(), Params(), x.data(), kTargets.data(), losses_grad.data())
          .ok());
  EXPECT_EQ(losses, losses_grad);
}

class CrossEntropyLowPrecisionTest : public ::testing::TestWithParam<DType> {};

TEST_P(CrossEntropyLowPrecisionTest, MatchesFloatOnTheSameRoundedInputs) {
  const DType dt = GetParam();
  const auto x16 = ToBytes(Logits(5), dt);
  auto x32 = FromBytes(x16.data(), kRows * kVp, dt);
  auto y16 = x16;
  std::vector<float> l16(kRows), l32(kRows);
  ASSERT_TRUE(
      SoftmaxCrossEntropy(OpContext::Cpu(), Params(dt), y16.data(), kTargets.data(), l16.data())
          .ok());
  ASSERT_TRUE(
      SoftmaxCrossEntropy(OpContext::Cpu(), Params(), x32.data(), kTargets.data(), l32.data())
          .ok());
  // Same fp32 math on the same values: equal losses, and gradients that
  // differ only by their rounding to `dt`.
  EXPECT_EQ(l16, l32);
  ExpectAllClose(FromBytes(y16.data(), kRows * kVp, dt), x32, 1e-7, DTypeEpsilon(dt), "dlogits");
}

TEST_P(CrossEntropyLowPrecisionTest, SameInputsGiveSameBits) {
  const DType dt = GetParam();
  const auto x = ToBytes(Logits(6), dt);
  auto a = x, b = x;
  std::vector<float> la(kRows), lb(kRows);
  ASSERT_TRUE(
      SoftmaxCrossEntropy(OpContext::Cpu(), Params(dt), a.data(), kTargets.data(), la.data()).ok());
  ASSERT_TRUE(
      SoftmaxCrossEntropy(OpContext::Cpu(), Params(dt), b.data(), kTargets.data(), lb.data()).ok());
  EXPECT_EQ(a, b);
  EXPECT_EQ(std::memcmp(la.data(), lb.data(), kRows * sizeof(float)), 0);
}

INSTANTIATE_TEST_SUITE_P(Dtypes, CrossEntropyLowPrecisionTest,
                         ::testing::Values(DType::kFloat16, DType::kBFloat16),
                         [](const auto& info) { return std::string(DTypeName(info.param)); });

TEST(CrossEntropyTest, TargetOutOfRangeIsInvalidArgumentNamingRowAndValue) {
  for (int32_t bad : {static_cast<int32_t>(kV), -2}) {
    auto targets = kTargets;
    targets[3] = bad;
    auto x = Logits(7);
    const auto x0 = x;
    std::vector<float> losses(kRows, -1.0f);
    const absl::Status s =
        SoftmaxCrossEntropy(OpContext::Cpu(), Params(), x.data(), targets.data(), losses.data());
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(s.message(), HasSubstr(absl::StrCat("target of row 3 is ", bad)));
    // Checked up front: no row was overwritten, no loss written.
    EXPECT_EQ(x, x0);
    EXPECT_EQ(losses, std::vector<float>(kRows, -1.0f));
  }
}

TEST(CrossEntropyTest, RejectsBadShapesNamingTheField) {
  auto x = Logits(8);
  std::vector<float> losses(kRows);
  auto check = [&](CrossEntropyParams p, const std::string& field) {
    const absl::Status s =
        SoftmaxCrossEntropy(OpContext::Cpu(), p, x.data(), kTargets.data(), losses.data());
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << field;
    EXPECT_THAT(s.message(), HasSubstr("CrossEntropyParams." + field)) << field;
  };
  CrossEntropyParams p = Params();
  p.rows = 0;
  check(p, "rows must be positive");
  p = Params();
  p.V = -1;
  check(p, "V must be positive");
  p = Params();
  p.Vp = kV - 1;
  check(p, "Vp (10) must be at least V (11)");
  const absl::Status s =
      SoftmaxCrossEntropy(OpContext::Cpu(), Params(), x.data(), kTargets.data(), nullptr);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("losses is null"));
}

#if !ZT_WITH_CUDA
TEST(CrossEntropyTest, CudaContextInCpuBuildIsFailedPrecondition) {
  OpContext ctx;
  ctx.device = Device::Cuda(0);
  auto x = Logits(9);
  std::vector<float> losses(kRows);
  const absl::Status s =
      SoftmaxCrossEntropy(ctx, Params(), x.data(), kTargets.data(), losses.data());
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.message(), HasSubstr("SoftmaxCrossEntropy"));
}
#endif

}  // namespace
}  // namespace zt::kernels
