#include "kernels/layernorm.h"

#include <cmath>
#include <cstdint>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/layernorm_ref.h"
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

constexpr int64_t kRows = 5, kC = 7;
const double kEps32 = DTypeEpsilon(DType::kFloat32);

// Rows centred away from zero so the mean subtraction matters.
std::vector<float> Inputs(uint64_t seed) { return RandomFloats(kRows * kC, seed, 2.0f, 4.0f); }

TEST(LayerNormTest, ForwardMatchesDoubleFormula) {
  const auto x = Inputs(1), w = RandomFloats(kC, 2), b = RandomFloats(kC, 3);
  std::vector<float> out(kRows * kC), mean(kRows), rstd(kRows);
  ASSERT_TRUE(LayerNormForward(OpContext::Cpu(), DType::kFloat32, kRows, kC, x.data(), w.data(),
                               b.data(), out.data(), mean.data(), rstd.data())
                  .ok());
  std::vector<double> want(kRows * kC), want_mean(kRows), want_rstd(kRows);
  for (int64_t r = 0; r < kRows; ++r) {
    double m = 0, v = 0;
    for (int64_t c = 0; c < kC; ++c) m += x[r * kC + c];
    m /= kC;
    for (int64_t c = 0; c < kC; ++c) v += (x[r * kC + c] - m) * (x[r * kC + c] - m);
    v /= kC;
    const double s = 1 / std::sqrt(v + double{kLayerNormEps});
    for (int64_t c = 0; c < kC; ++c) want[r * kC + c] = (x[r * kC + c] - m) * s * w[c] + b[c];
    want_mean[r] = m;
    want_rstd[r] = s;
  }
  ExpectAllClose(out, want, 1e-6, 16 * kEps32, "out");
  ExpectAllClose(mean, want_mean, 0, 4 * kEps32, "mean");
  ExpectAllClose(rstd, want_rstd, 0, 16 * kEps32, "rstd");
}

TEST(LayerNormTest, ResidualForwardStoresRoundedSumAndNormalizesIt) {
  const DType dt = DType::kFloat16;
  const auto a = ToBytes(Inputs(4), dt), b = ToBytes(RandomFloats(kRows * kC, 5), dt);
  const auto w = ToBytes(RandomFloats(kC, 6), dt), bias = ToBytes(RandomFloats(kC, 7), dt);
  std::vector<uint8_t> residual(a.size()), out(a.size()), out2(a.size());
  std::vector<float> mean(kRows), rstd(kRows), mean2(kRows), rstd2(kRows);
  ASSERT_TRUE(ResidualLayerNormForward(OpContext::Cpu(), dt, kRows, kC, a.data(), b.data(),
                                       w.data(), bias.data(), residual.data(), out.data(),
                                       mean.data(), rstd.data())
                  .ok());
  const auto af = FromBytes(a.data(), kRows * kC, dt), bf = FromBytes(b.data(), kRows * kC, dt);
  const auto rf = FromBytes(residual.data(), kRows * kC, dt);
  for (int64_t i = 0; i < kRows * kC; ++i) EXPECT_EQ(rf[i], RoundTo(dt, af[i] + bf[i])) << i;
  ASSERT_TRUE(LayerNormForward(OpContext::Cpu(), dt, kRows, kC, residual.data(), w.data(),
                               bias.data(), out2.data(), mean2.data(), rstd2.data())
                  .ok());
  EXPECT_EQ(out, out2);
  EXPECT_EQ(mean, mean2);
  EXPECT_EQ(rstd, rstd2);
}

TEST(LayerNormTest, BackwardMatchesFiniteDifferences) {
  const size_t n = kRows * kC;
  const auto g = RandomDoubles(n, 8);  // dL/dout for L = sum(out * g).
  auto loss = [&](const std::vector<double>& v) {
    std::vector<double> out(n), mean(kRows), rstd(kRows);
    LayerNormForwardRef<double>(kRows, kC, v.data(), v.data() + n, v.data() + n + kC, out.data(),
                                mean.data(), rstd.data());
    double l = 0;
    for (size_t i = 0; i < n; ++i) l += out[i] * g[i];
    return l;
  };
  auto v = RandomDoubles(n + 2 * kC, 9);
  for (size_t i = 0; i < n; ++i) v[i] += 3.0;
  const auto numeric = NumericalGradient(loss, v);

  std::vector<double> out(n), mean(kRows), rstd(kRows), grads(n + 2 * kC, 0.0);
  LayerNormForwardRef<double>(kRows, kC, v.data(), v.data() + n, v.data() + n + kC, out.data(),
                              mean.data(), rstd.data());
  LayerNormBackwardRef<double>(kRows, kC, g.data(), v.data(), v.data() + n, mean.data(),
                               rstd.data(), grads.data(), grads.data() + n, grads.data() + n + kC);
  ExpectAllClose(grads, numeric, 1e-7, 1e-6, "d(inp, weight, bias)");
}

struct BackwardOut {
  std::vector<uint8_t> dinp, dweight, dbias;
};

BackwardOut Backward(DType dt, const std::vector<float>& dout, const std::vector<float>& x,
                     const std::vector<float>& w, const std::vector<float>& b,
                     const std::vector<float>& dinp0, const std::vector<float>& dw0,
                     const std::vector<float>& db0) {
  const auto dout_b = ToBytes(dout, dt), x_b = ToBytes(x, dt), w_b = ToBytes(w, dt),
             b_b = ToBytes(b, dt);
  std::vector<uint8_t> out(x_b.size());
  std::vector<float> mean(kRows), rstd(kRows);
  EXPECT_TRUE(LayerNormForward(OpContext::Cpu(), dt, kRows, kC, x_b.data(), w_b.data(), b_b.data(),
                               out.data(), mean.data(), rstd.data())
                  .ok());
  BackwardOut r{ToBytes(dinp0, dt), ToBytes(dw0, dt), ToBytes(db0, dt)};
  EXPECT_TRUE(LayerNormBackward(OpContext::Cpu(), dt, kRows, kC, dout_b.data(), x_b.data(),
                                w_b.data(), mean.data(), rstd.data(), r.dinp.data(),
                                r.dweight.data(), r.dbias.data())
                  .ok());
  return r;
}

std::vector<float> F(const std::vector<uint8_t>& bytes, DType dt) {
  return FromBytes(bytes.data(), bytes.size() / DTypeSize(dt), dt);
}

TEST(LayerNormTest, BackwardAccumulatesIntoAllThreeGradients) {
  const DType f32 = DType::kFloat32;
  const auto x = Inputs(10), w = RandomFloats(kC, 11), b = RandomFloats(kC, 12);
  const auto dout = RandomFloats(kRows * kC, 13);
  const auto dinp0 = RandomFloats(kRows * kC, 14), dw0 = RandomFloats(kC, 15),
             db0 = RandomFloats(kC, 16);
  const std::vector<float> zn(kRows * kC, 0.0f), zc(kC, 0.0f);
  const BackwardOut fresh = Backward(f32, dout, x, w, b, zn, zc, zc);
  const BackwardOut acc = Backward(f32, dout, x, w, b, dinp0, dw0, db0);
  auto plus = [](const std::vector<float>& a, const std::vector<float>& b) {
    std::vector<double> s(a.size());
    for (size_t i = 0; i < a.size(); ++i) s[i] = double{a[i]} + b[i];
    return s;
  };
  ExpectAllClose(F(acc.dinp, f32), plus(dinp0, F(fresh.dinp, f32)), 1e-6, kEps32, "dinp");
  ExpectAllClose(F(acc.dweight, f32), plus(dw0, F(fresh.dweight, f32)), 1e-6, kEps32, "dweight");
  ExpectAllClose(F(acc.dbias, f32), plus(db0, F(fresh.dbias, f32)), 1e-6, kEps32, "dbias");
  // And the fresh gradients are the finite-difference-checked formula, here
  // for dbias, whose value is plain: the column sums of dout.
  std::vector<double> colsum(kC, 0.0);
  for (int64_t r = 0; r < kRows; ++r) {
    for (int64_t c = 0; c < kC; ++c) colsum[c] += dout[r * kC + c];
  }
  ExpectAllClose(F(fresh.dbias, f32), colsum, 1e-6, 4 * kEps32, "dbias = column sums");
}

class LayerNormLowPrecisionTest : public ::testing::TestWithParam<DType> {};

TEST_P(LayerNormLowPrecisionTest, MatchesFloatOnTheSameRoundedInputs) {
  const DType dt = GetParam(), f32 = DType::kFloat32;
  auto rounded = [&](const std::vector<float>& v) {
    return FromBytes(ToBytes(v, dt).data(), v.size(), dt);
  };
  const auto x = rounded(Inputs(20)), w = rounded(RandomFloats(kC, 21)),
             b = rounded(RandomFloats(kC, 22)), dout = rounded(RandomFloats(kRows * kC, 23));
  const auto dinp0 = rounded(RandomFloats(kRows * kC, 24)), dw0 = rounded(RandomFloats(kC, 25)),
             db0 = rounded(RandomFloats(kC, 26));

  // Forward: identical fp32 math, so identical statistics; outputs differ by
  // the final rounding only.
  const auto x16 = ToBytes(x, dt), w16 = ToBytes(w, dt), b16 = ToBytes(b, dt);
  std::vector<uint8_t> out16(x16.size());
  std::vector<float> out32(x.size()), mean16(kRows), rstd16(kRows), mean32(kRows), rstd32(kRows);
  ASSERT_TRUE(LayerNormForward(OpContext::Cpu(), dt, kRows, kC, x16.data(), w16.data(), b16.data(),
                               out16.data(), mean16.data(), rstd16.data())
                  .ok());
  ASSERT_TRUE(LayerNormForward(OpContext::Cpu(), f32, kRows, kC, x.data(), w.data(), b.data(),
                               out32.data(), mean32.data(), rstd32.data())
                  .ok());
  const double eps = DTypeEpsilon(dt);
  ExpectAllClose(F(out16, dt), out32, 1e-7, eps, "out");
  EXPECT_EQ(mean16, mean32);
  EXPECT_EQ(rstd16, rstd32);

  const BackwardOut low = Backward(dt, dout, x, w, b, dinp0, dw0, db0);
  const BackwardOut ref = Backward(f32, dout, x, w, b, dinp0, dw0, db0);
  ExpectAllClose(F(low.dinp, dt), F(ref.dinp, f32), 1e-7, eps, "dinp");
  ExpectAllClose(F(low.dweight, dt), F(ref.dweight, f32), 1e-7, eps, "dweight");
  ExpectAllClose(F(low.dbias, dt), F(ref.dbias, f32), 1e-7, eps, "dbias");
}

TEST_P(LayerNormLowPrecisionTest, SameInputsGiveSameBits) {
  const DType dt = GetParam();
  const auto x = Inputs(30), w = RandomFloats(kC, 31), b = RandomFloats(kC, 32),
             dout = RandomFloats(kRows * kC, 33), dinp0 = RandomFloats(kRows * kC, 34),
             dw0 = RandomFloats(kC, 35), db0 = RandomFloats(kC, 36);
  const BackwardOut r1 = Backward(dt, dout, x, w, b, dinp0, dw0, db0);
  const BackwardOut r2 = Backward(dt, dout, x, w, b, dinp0, dw0, db0);
  EXPECT_EQ(r1.dinp, r2.dinp);
  EXPECT_EQ(r1.dweight, r2.dweight);
  EXPECT_EQ(r1.dbias, r2.dbias);
}

INSTANTIATE_TEST_SUITE_P(Dtypes, LayerNormLowPrecisionTest,
                         ::testing::Values(DType::kFloat16, DType::kBFloat16),
                         [](const auto& info) { return std::string(DTypeName(info.param)); });

TEST(LayerNormTest, RejectsNonPositiveSizesAndNullBuffersNamingThem) {
  const auto x = Inputs(1), w = RandomFloats(kC, 2), b = RandomFloats(kC, 3);
  std::vector<float> out(kRows * kC), mean(kRows), rstd(kRows);
  const OpContext cpu = OpContext::Cpu();
  absl::Status s = LayerNormForward(cpu, DType::kFloat32, 0, kC, x.data(), w.data(), b.data(),
                                    out.data(), mean.data(), rstd.data());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("rows must be positive, got 0"));
  s = ResidualLayerNormForward(cpu, DType::kFloat32, kRows, -3, x.data(), x.data(), w.data(),
                               b.data(), out.data(), out.data(), mean.data(), rstd.data());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("C must be positive, got -3"));
  s = LayerNormBackward(cpu, DType::kFloat32, kRows, kC, out.data(), x.data(), w.data(),
                        mean.data(), rstd.data(), out.data(), nullptr, out.data());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("LayerNormBackward: dweight is null"));
}

TEST(LayerNormTest, WorkspaceHoldsAtLeastOnePartialRowAndIsZeroForBadShapes) {
  EXPECT_GE(LayerNormBackwardWorkspaceBytes(37, 769), 2 * 769 * sizeof(float));
  EXPECT_GE(LayerNormBackwardWorkspaceBytes(1, 8), 2 * 8 * sizeof(float));
  EXPECT_EQ(LayerNormBackwardWorkspaceBytes(0, 8), 0u);
  EXPECT_EQ(LayerNormBackwardWorkspaceBytes(8, 0), 0u);
}

#if !ZT_WITH_CUDA
TEST(LayerNormTest, CudaContextInCpuBuildIsFailedPrecondition) {
  OpContext ctx;
  ctx.device = Device::Cuda(0);
  const auto x = Inputs(1), w = RandomFloats(kC, 2), b = RandomFloats(kC, 3);
  std::vector<float> out(kRows * kC), mean(kRows), rstd(kRows);
  const absl::Status s = LayerNormForward(ctx, DType::kFloat32, kRows, kC, x.data(), w.data(),
                                          b.data(), out.data(), mean.data(), rstd.data());
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.message(), HasSubstr("LayerNormForward"));
}
#endif

}  // namespace
}  // namespace zt::kernels
