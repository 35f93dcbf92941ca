#include "kernels/adamw.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "core/dtype.h"
#include "kernels/testutil.h"

namespace zt::kernels {
namespace {

using ::zt::kernels::testing::ExpectAllClose;
using ::zt::kernels::testing::FromBytes;
using ::zt::kernels::testing::RandomFloats;
using ::zt::kernels::testing::ToBytes;

// One tensor's optimizer state on the host.
struct Problem {
  std::vector<float> master, m, v;
  std::vector<uint8_t> grad, param;
  DType grad_dtype = DType::kFloat32;
  DType param_dtype = DType::kFloat32;
  bool decay = true;

  int64_t n() const { return static_cast<int64_t>(master.size()); }
  void SetGrad(const std::vector<float>& g) { grad = ToBytes(g, grad_dtype); }
  AdamWTensor Tensor() {
    return AdamWTensor{master.data(), m.data(),
                       v.data(),      grad.data(),
                       param.empty() ? nullptr : param.data(), n(), decay};
  }
};

Problem MakeProblem(size_t n, uint64_t seed, DType grad_dtype = DType::kFloat32,
                    DType param_dtype = DType::kFloat32, bool decay = true) {
  Problem p;
  p.grad_dtype = grad_dtype;
  p.param_dtype = param_dtype;
  p.decay = decay;
  p.master = RandomFloats(n, seed);
  p.m.assign(n, 0.0f);
  p.v.assign(n, 0.0f);
  p.param = ToBytes(p.master, param_dtype);
  p.SetGrad(RandomFloats(n, seed + 1000));
  return p;
}

absl::Status Update(const AdamWHyper& h, Problem& p) {
  const AdamWTensor t = p.Tensor();
  return AdamWUpdate(OpContext::Cpu(), p.grad_dtype, p.param_dtype, h, {&t, 1});
}

AdamWHyper DefaultHyper() {
  AdamWHyper h;
  h.lr = 1e-2f;
  h.beta1 = 0.9f;
  h.beta2 = 0.95f;
  h.eps = 1e-8f;
  h.weight_decay = 0.1f;
  h.step = 1;
  h.grad_scale = 1.0f;
  return h;
}

// The header's formula in double, on the float hyperparameters.
struct Reference {
  std::vector<double> master, m, v;

  explicit Reference(const std::vector<float>& init)
      : master(init.begin(), init.end()), m(init.size(), 0.0), v(init.size(), 0.0) {}

  void Step(const AdamWHyper& h, bool decay, const std::vector<float>& grad) {
    const double b1 = h.beta1, b2 = h.beta2, t = static_cast<double>(h.step);
    for (size_t i = 0; i < master.size(); ++i) {
      const double g = static_cast<double>(grad[i]) * h.grad_scale;
      m[i] = b1 * m[i] + (1 - b1) * g;
      v[i] = b2 * v[i] + (1 - b2) * g * g;
      const double mhat = m[i] / (1 - std::pow(b1, t));
      const double vhat = v[i] / (1 - std::pow(b2, t));
      const double wd = decay ? static_cast<double>(h.weight_decay) : 0.0;
      master[i] -= static_cast<double>(h.lr) * (mhat / (std::sqrt(vhat) + h.eps) + wd * master[i]);
    }
  }
};

std::vector<uint32_t> Bits(const std::vector<float>& v) {
  std::vector<uint32_t> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = FloatBits(v[i]);
  return out;
}

class AdamWReferenceTest : public ::testing::TestWithParam<bool> {};

TEST_P(AdamWReferenceTest, MatchesDoublePrecisionReferenceOverSeveralSteps) {
  const bool decay = GetParam();
  constexpr size_t kN = 1000;
  Problem p = MakeProblem(kN, 1, DType::kFloat32, DType::kFloat32, decay);
  Reference ref(p.master);
  AdamWHyper h = DefaultHyper();
  h.grad_scale = 0.37f;
  for (int64_t step = 1; step <= 5; ++step) {
    h.step = step;
    const std::vector<float> g = RandomFloats(kN, 100 + step, -2, 2);
    p.SetGrad(g);
    ASSERT_TRUE(Update(h, p).ok());
    ref.Step(h, decay, g);
    const std::string what = "step " + std::to_string(step);
    // m = lerp(m, g, 1-b1) cancels, so its error is relative to the size of
    // the scaled gradients (|g| <= 0.74), not to m: half an fp32 ulp of that.
    ExpectAllClose(p.m, ref.m, 0.5 * DTypeEpsilon(DType::kFloat32) * 0.74, 1e-6, what + " m");
    ExpectAllClose(p.v, ref.v, 1e-12, 1e-6, what + " v");
    ExpectAllClose(p.master, ref.master, 1e-6, 1e-6, what + " master");
  }
}

INSTANTIATE_TEST_SUITE_P(WithAndWithoutDecay, AdamWReferenceTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "Decay" : "NoDecay";
                         });

// With bias correction, mhat = g and vhat = g^2 for a constant gradient, so
// every step moves a weight by lr against the gradient's sign; without it the
// first step would move by lr (1-b1)/sqrt(1-b2) ~ 0.45 lr.
TEST(AdamWTest, BiasCorrectionMakesEachStepMoveByLrForConstantGradient) {
  constexpr size_t kN = 64;
  Problem p = MakeProblem(kN, 2);
  std::fill(p.master.begin(), p.master.end(), 0.0f);  // deltas stay exact
  std::vector<float> g = RandomFloats(kN, 3, 0.1f, 1.0f);
  for (size_t i = 0; i < kN; i += 2) g[i] = -g[i];
  p.SetGrad(g);
  AdamWHyper h = DefaultHyper();
  h.lr = 1e-3f;
  h.weight_decay = 0;
  for (int64_t step = 1; step <= 3; ++step) {
    h.step = step;
    const std::vector<float> before = p.master;
    ASSERT_TRUE(Update(h, p).ok());
    for (size_t i = 0; i < kN; ++i) {
      const double delta = static_cast<double>(p.master[i]) - before[i];
      EXPECT_NEAR(delta, g[i] > 0 ? -1e-3 : 1e-3, 1e-3 * 1e-5) << "step " << step << " i " << i;
    }
  }
}

// Scaling the gradients by 1024 and grad_scale by 1/1024 is exact, so the
// moments (which would be 1024x larger if the scale were ignored) and the
// weights must be the same bits.
TEST(AdamWTest, GradScaleIsAppliedBeforeTheMoments) {
  constexpr size_t kN = 300;
  Problem plain = MakeProblem(kN, 4);
  Problem scaled = plain;
  const std::vector<float> g = RandomFloats(kN, 5);
  std::vector<float> g1024(kN);
  for (size_t i = 0; i < kN; ++i) g1024[i] = g[i] * 1024.0f;
  plain.SetGrad(g);
  scaled.SetGrad(g1024);
  AdamWHyper h = DefaultHyper();
  for (int64_t step = 1; step <= 2; ++step) {
    h.step = step;
    h.grad_scale = 1.0f;
    ASSERT_TRUE(Update(h, plain).ok());
    h.grad_scale = 1.0f / 1024.0f;
    ASSERT_TRUE(Update(h, scaled).ok());
  }
  EXPECT_EQ(Bits(scaled.m), Bits(plain.m));
  EXPECT_EQ(Bits(scaled.v), Bits(plain.v));
  EXPECT_EQ(Bits(scaled.master), Bits(plain.master));
}

class AdamWParamDTypeTest : public ::testing::TestWithParam<DType> {};

TEST_P(AdamWParamDTypeTest, ParamIsMasterRoundedToNearestEven) {
  const DType dtype = GetParam();
  constexpr size_t kN = 513;
  Problem p = MakeProblem(kN, 6, DType::kFloat32, dtype);
  AdamWHyper h = DefaultHyper();
  for (int64_t step = 1; step <= 2; ++step) {
    h.step = step;
    ASSERT_TRUE(Update(h, p).ok());
  }
  EXPECT_EQ(p.param, ToBytes(p.master, dtype));
  if (dtype != DType::kFloat32) {
    // The masters are not already representable, so rounding took place.
    EXPECT_NE(FromBytes(p.param.data(), kN, dtype), p.master);
  }
}

TEST_P(AdamWParamDTypeTest, LowPrecisionGradIsWidenedExactly) {
  const DType dtype = GetParam();
  constexpr size_t kN = 200;
  Problem narrow = MakeProblem(kN, 7, dtype, DType::kBFloat16);
  Problem wide = narrow;
  wide.grad_dtype = DType::kFloat32;
  wide.SetGrad(FromBytes(narrow.grad.data(), kN, dtype));
  const AdamWHyper h = DefaultHyper();
  ASSERT_TRUE(Update(h, narrow).ok());
  ASSERT_TRUE(Update(h, wide).ok());
  EXPECT_EQ(Bits(narrow.master), Bits(wide.master));
  EXPECT_EQ(Bits(narrow.m), Bits(wide.m));
  EXPECT_EQ(Bits(narrow.v), Bits(wide.v));
  EXPECT_EQ(narrow.param, wide.param);
}

INSTANTIATE_TEST_SUITE_P(AllDTypes, AdamWParamDTypeTest,
                         ::testing::Values(DType::kFloat32, DType::kFloat16, DType::kBFloat16),
                         [](const ::testing::TestParamInfo<DType>& info) {
                           return std::string(DTypeName(info.param));
                         });

TEST(AdamWTest, SeveralTensorsInOneCallEqualSeparateCalls) {
  const std::vector<size_t> sizes = {1, 7, 0, 300, 4097};
  std::vector<Problem> together, separate;
  for (size_t i = 0; i < sizes.size(); ++i) {
    together.push_back(
        MakeProblem(sizes[i], 10 + i, DType::kFloat16, DType::kBFloat16, /*decay=*/i % 2 == 0));
  }
  separate = together;
  AdamWHyper h = DefaultHyper();
  for (int64_t step = 1; step <= 3; ++step) {
    h.step = step;
    std::vector<AdamWTensor> list;
    for (Problem& p : together) list.push_back(p.Tensor());
    ASSERT_TRUE(
        AdamWUpdate(OpContext::Cpu(), DType::kFloat16, DType::kBFloat16, h, list).ok());
    for (Problem& p : separate) ASSERT_TRUE(Update(h, p).ok());
  }
  for (size_t i = 0; i < sizes.size(); ++i) {
    EXPECT_EQ(Bits(together[i].master), Bits(separate[i].master)) << "tensor " << i;
    EXPECT_EQ(Bits(together[i].m), Bits(separate[i].m)) << "tensor " << i;
    EXPECT_EQ(Bits(together[i].v), Bits(separate[i].v)) << "tensor " << i;
    EXPECT_EQ(together[i].param, separate[i].param) << "tensor " << i;
  }
}

TEST(AdamWTest, DecayFlagSelectsWeightDecayPerTensor) {
  Problem decayed = MakeProblem(100, 20, DType::kFloat32, DType::kFloat32, /*decay=*/true);
  Problem exempt = decayed;
  exempt.decay = false;
  Problem no_wd = decayed;
  AdamWHyper h = DefaultHyper();
  ASSERT_TRUE(Update(h, decayed).ok());
  ASSERT_TRUE(Update(h, exempt).ok());
  h.weight_decay = 0;
  ASSERT_TRUE(Update(h, no_wd).ok());
  EXPECT_EQ(Bits(exempt.master), Bits(no_wd.master));
  EXPECT_NE(Bits(decayed.master), Bits(no_wd.master));
}

TEST(AdamWTest, NullParamUpdatesMasterAndMomentsOnly) {
  Problem with_param = MakeProblem(50, 21);
  Problem without = with_param;
  without.param.clear();
  const AdamWHyper h = DefaultHyper();
  ASSERT_TRUE(Update(h, with_param).ok());
  ASSERT_TRUE(Update(h, without).ok());
  EXPECT_EQ(Bits(without.master), Bits(with_param.master));
  EXPECT_EQ(Bits(without.v), Bits(with_param.v));
}

TEST(AdamWTest, RejectsStepZero) {
  Problem p = MakeProblem(4, 30);
  AdamWHyper h = DefaultHyper();
  h.step = 0;
  const absl::Status s = Update(h, p);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("hyper.step"), std::string::npos) << s;
}

TEST(AdamWTest, RejectsBetaOfOne) {
  Problem p = MakeProblem(4, 31);
  AdamWHyper h = DefaultHyper();
  h.beta2 = 1.0f;
  const absl::Status s = Update(h, p);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("hyper.beta2"), std::string::npos) << s;
}

TEST(AdamWTest, RejectsNullStateNamingTheTensor) {
  Problem a = MakeProblem(4, 32), b = MakeProblem(4, 33);
  std::vector<AdamWTensor> list = {a.Tensor(), b.Tensor()};
  list[1].v = nullptr;
  const absl::Status s =
      AdamWUpdate(OpContext::Cpu(), DType::kFloat32, DType::kFloat32, DefaultHyper(), list);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("tensors[1].v"), std::string::npos) << s;
}

TEST(AdamWTest, RejectsNegativeSizeNamingTheTensor) {
  Problem a = MakeProblem(4, 34);
  std::vector<AdamWTensor> list = {a.Tensor(), a.Tensor()};
  list[1].n = -3;
  const absl::Status s =
      AdamWUpdate(OpContext::Cpu(), DType::kFloat32, DType::kFloat32, DefaultHyper(), list);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("tensors[1].n = -3"), std::string::npos) << s;
}

#if !ZT_WITH_CUDA
TEST(AdamWTest, CudaContextFailsInCpuBuild) {
  Problem p = MakeProblem(4, 35);
  OpContext ctx;
  ctx.device = Device::Cuda(0);
  const AdamWTensor t = p.Tensor();
  const absl::Status s =
      AdamWUpdate(ctx, DType::kFloat32, DType::kFloat32, DefaultHyper(), {&t, 1});
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("AdamWUpdate"), std::string::npos) << s;
}
#endif

}  // namespace
}  // namespace zt::kernels
