#include "kernels/matmul.h"

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "core/dtype.h"
#include "kernels/gelu.h"
#include "kernels/gelu_ref.h"
#include "kernels/matmul_ref.h"
#include "kernels/matmul_testutil.h"
#include "kernels/op_context.h"
#include "kernels/testutil.h"

namespace zt::kernels {
namespace {

using testing::ExpectAllClose;
using testing::FromBytes;
using testing::NumericalGradient;
using testing::RandomDoubles;
using testing::RandomFloats;
using testing::RunLinearLayerWithGelu;
using testing::ToBytes;

constexpr double kEps32 = 1.1920928955078125e-07;

struct Shape {
  int64_t M, N, K;
};

std::string Name(const Shape& s) { return absl::StrCat("M=", s.M, " N=", s.N, " K=", s.K); }

double Rms(const std::vector<double>& v) {
  double sum = 0;
  for (double x : v) sum += x * x;
  return v.empty() ? 0 : std::sqrt(sum / v.size());
}

// fp32 dot products of length K: the rounding error of a K-term sum grows
// like sqrt(K) times the size of the partial sums, which is about the
// output's RMS, so the absolute tolerance is scaled by sqrt(K) * RMS.
double SumAtol(double eps, int64_t K, const std::vector<double>& ref) {
  return 4 * eps * std::sqrt(static_cast<double>(std::max<int64_t>(K, 1))) * (Rms(ref) + 1e-3);
}

// ------------------------------------------------------------------ forward

class MatmulShapeTest : public ::testing::TestWithParam<Shape> {};

TEST_P(MatmulShapeTest, Fp32ForwardMatchesNaiveLoops) {
  const Shape s = GetParam();
  const std::vector<float> inp = RandomFloats(s.M * s.K, 1);
  const std::vector<float> weight = RandomFloats(s.N * s.K, 2);
  const std::vector<float> bias = RandomFloats(s.N, 3);
  std::vector<double> ref(s.M * s.N);
  for (int64_t m = 0; m < s.M; ++m) {
    for (int64_t n = 0; n < s.N; ++n) {
      double sum = bias[n];
      for (int64_t k = 0; k < s.K; ++k) sum += double{inp[m * s.K + k]} * weight[n * s.K + k];
      ref[m * s.N + n] = sum;
    }
  }
  std::vector<double> ref_gelu(ref.size());
  for (size_t i = 0; i < ref.size(); ++i) ref_gelu[i] = GeluValue(ref[i]);

  std::vector<float> out(s.M * s.N), pre(s.M * s.N), out_gelu(s.M * s.N);
  MatmulForwardParams p;
  p.inp = inp.data();
  p.weight = weight.data();
  p.bias = bias.data();
  p.out = out.data();
  p.M = s.M;
  p.N = s.N;
  p.K = s.K;
  ASSERT_TRUE(MatmulForward(OpContext::Cpu(), p).ok());
  p.out = out_gelu.data();
  p.pre_gelu = pre.data();
  ASSERT_TRUE(MatmulForward(OpContext::Cpu(), p).ok());

  const double atol = SumAtol(kEps32, s.K, ref);
  ExpectAllClose(out, ref, atol, 4 * kEps32, "out " + Name(s));
  ExpectAllClose(pre, ref, atol, 4 * kEps32, "pre_gelu " + Name(s));
  // gelu' is at most ~1.13, so the pre-activation error carries over.
  ExpectAllClose(out_gelu, ref_gelu, 2 * atol, 8 * kEps32, "gelu out " + Name(s));
}

TEST_P(MatmulShapeTest, Fp32ForwardWithoutBiasMatchesDoubleReference) {
  const Shape s = GetParam();
  const std::vector<float> inp = RandomFloats(s.M * s.K, 4);
  const std::vector<float> weight = RandomFloats(s.N * s.K, 5);
  const std::vector<double> inp64(inp.begin(), inp.end()), weight64(weight.begin(), weight.end());
  std::vector<double> ref(s.M * s.N);
  MatmulForwardRef<double>(inp64.data(), weight64.data(), nullptr, ref.data(), nullptr, s.M, s.N,
                           s.K);
  std::vector<float> out(s.M * s.N, 123.0f);
  MatmulForwardParams p;
  p.inp = inp.data();
  p.weight = weight.data();
  p.out = out.data();
  p.M = s.M;
  p.N = s.N;
  p.K = s.K;
  ASSERT_TRUE(MatmulForward(OpContext::Cpu(), p).ok());
  ExpectAllClose(out, ref, SumAtol(kEps32, s.K, ref), 4 * kEps32, "out " + Name(s));
}

// ----------------------------------------------------------------- backward
// In double: L = sum(w_out * out) for a fixed random w_out, so dL/dout =
// w_out, and each gradient the reference produces must match central
// differences of L.

struct DoubleProblem {
  Shape s;
  std::vector<double> inp, weight, bias, w_out;
  explicit DoubleProblem(Shape shape)
      : s(shape),
        inp(RandomDoubles(s.M * s.K, 11)),
        weight(RandomDoubles(s.N * s.K, 12)),
        bias(RandomDoubles(s.N, 13)),
        w_out(RandomDoubles(s.M * s.N, 14)) {}

  // L as a function of one input, the others fixed. With gelu_input, inp is
  // the pre-activation and the layer sees gelu(inp).
  double Loss(const std::vector<double>& x, const std::vector<double>& w,
              const std::vector<double>& b, bool gelu_input) const {
    std::vector<double> layer_inp = x;
    if (gelu_input) GeluForwardRef(x.data(), layer_inp.data(), static_cast<int64_t>(x.size()));
    std::vector<double> out(s.M * s.N);
    MatmulForwardRef<double>(layer_inp.data(), w.data(), b.data(), out.data(), nullptr, s.M, s.N,
                             s.K);
    double sum = 0;
    for (size_t i = 0; i < out.size(); ++i) sum += w_out[i] * out[i];
    return sum;
  }
};

// Finite differences of an O(10) loss in double: roundoff ~1e-16 * |L| / h.
// Kept to small shapes, where that is far below the tolerance and the
// O(M N K) loss per perturbed element stays cheap.
class MatmulGradCheckTest : public ::testing::TestWithParam<Shape> {};

constexpr double kFdAtol = 1e-7;
constexpr double kFdRtol = 1e-6;

TEST_P(MatmulGradCheckTest, BackwardMatchesFiniteDifferences) {
  const DoubleProblem d(GetParam());
  const Shape s = d.s;
  std::vector<double> dinp(s.M * s.K), dweight(s.N * s.K, 0.0), dbias(s.N, 0.0);
  MatmulBackwardRef<double>(d.w_out.data(), d.inp.data(), d.weight.data(), dinp.data(), nullptr,
                            dweight.data(), dbias.data(), s.M, s.N, s.K);
  const auto num_dinp = NumericalGradient(
      [&](const std::vector<double>& x) { return d.Loss(x, d.weight, d.bias, false); }, d.inp);
  const auto num_dweight = NumericalGradient(
      [&](const std::vector<double>& w) { return d.Loss(d.inp, w, d.bias, false); }, d.weight);
  const auto num_dbias = NumericalGradient(
      [&](const std::vector<double>& b) { return d.Loss(d.inp, d.weight, b, false); }, d.bias);
  ExpectAllClose(dinp, num_dinp, kFdAtol, kFdRtol, "dinp " + Name(s));
  ExpectAllClose(dweight, num_dweight, kFdAtol, kFdRtol, "dweight " + Name(s));
  ExpectAllClose(dbias, num_dbias, kFdAtol, kFdRtol, "dbias " + Name(s));
}

TEST_P(MatmulGradCheckTest, FusedGeluBackwardMatchesFiniteDifferences) {
  DoubleProblem d(GetParam());
  const Shape s = d.s;
  // The layer input is gelu(pre); spread pre over GELU's curved region.
  const std::vector<double> pre = RandomDoubles(s.M * s.K, 15, -3, 3);
  std::vector<double> layer_inp(pre.size());
  GeluForwardRef(pre.data(), layer_inp.data(), static_cast<int64_t>(pre.size()));
  std::vector<double> dpre(s.M * s.K), dweight(s.N * s.K, 0.0);
  MatmulBackwardRef<double>(d.w_out.data(), layer_inp.data(), d.weight.data(), dpre.data(),
                            pre.data(), dweight.data(), nullptr, s.M, s.N, s.K);
  const auto num_dpre = NumericalGradient(
      [&](const std::vector<double>& x) { return d.Loss(x, d.weight, d.bias, true); }, pre);
  const auto num_dweight = NumericalGradient(
      [&](const std::vector<double>& w) { return d.Loss(pre, w, d.bias, true); }, d.weight);
  ExpectAllClose(dpre, num_dpre, kFdAtol, kFdRtol, "d(inp_pre_gelu) " + Name(s));
  ExpectAllClose(dweight, num_dweight, kFdAtol, kFdRtol, "dweight with gelu input " + Name(s));
}

TEST_P(MatmulGradCheckTest, ForwardGeluEpilogueIsGeluOfPreActivation) {
  const DoubleProblem d(GetParam());
  const Shape s = d.s;
  std::vector<double> out(s.M * s.N), pre(s.M * s.N), plain(s.M * s.N);
  MatmulForwardRef<double>(d.inp.data(), d.weight.data(), d.bias.data(), out.data(), pre.data(),
                           s.M, s.N, s.K);
  MatmulForwardRef<double>(d.inp.data(), d.weight.data(), d.bias.data(), plain.data(), nullptr, s.M,
                           s.N, s.K);
  EXPECT_EQ(pre, plain);
  for (size_t i = 0; i < out.size(); ++i) ASSERT_EQ(out[i], GeluValue(pre[i])) << i;
}

// The fp32 entry point's gradients agree with the double reference.
TEST_P(MatmulShapeTest, Fp32BackwardMatchesDoubleReference) {
  const Shape s = GetParam();
  const std::vector<float> dout = RandomFloats(s.M * s.N, 21);
  const std::vector<float> inp = RandomFloats(s.M * s.K, 22);
  const std::vector<float> weight = RandomFloats(s.N * s.K, 23);
  const std::vector<float> pre = RandomFloats(s.M * s.K, 24, -3, 3);
  auto wide = [](const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); };
  std::vector<double> ref_dinp(s.M * s.K), ref_dpre(s.M * s.K), ref_dweight(s.N * s.K, 0.0),
      ref_dbias(s.N, 0.0);
  const auto dout64 = wide(dout), inp64 = wide(inp), weight64 = wide(weight), pre64 = wide(pre);
  MatmulBackwardRef<double>(dout64.data(), inp64.data(), weight64.data(), ref_dinp.data(), nullptr,
                            ref_dweight.data(), ref_dbias.data(), s.M, s.N, s.K);
  MatmulBackwardRef<double>(dout64.data(), inp64.data(), weight64.data(), ref_dpre.data(),
                            pre64.data(), nullptr, nullptr, s.M, s.N, s.K);

  std::vector<float> dinp(s.M * s.K, -7.0f), dpre(s.M * s.K, -7.0f), dweight(s.N * s.K, 0.0f),
      dbias(s.N, 0.0f);
  MatmulBackwardParams p;
  p.dout = dout.data();
  p.inp = inp.data();
  p.weight = weight.data();
  p.dinp = dinp.data();
  p.dweight = dweight.data();
  p.dbias = dbias.data();
  p.M = s.M;
  p.N = s.N;
  p.K = s.K;
  ASSERT_TRUE(MatmulBackward(OpContext::Cpu(), p).ok());
  MatmulBackwardParams q = p;
  q.dinp = dpre.data();
  q.inp_pre_gelu = pre.data();
  q.dweight = nullptr;
  q.dbias = nullptr;
  ASSERT_TRUE(MatmulBackward(OpContext::Cpu(), q).ok());

  ExpectAllClose(dinp, ref_dinp, SumAtol(kEps32, s.N, ref_dinp), 4 * kEps32, "dinp " + Name(s));
  ExpectAllClose(dpre, ref_dpre, SumAtol(kEps32, s.N, ref_dinp), 8 * kEps32,
                 "d(inp_pre_gelu) " + Name(s));
  ExpectAllClose(dweight, ref_dweight, SumAtol(kEps32, s.M, ref_dweight), 4 * kEps32,
                 "dweight " + Name(s));
  ExpectAllClose(dbias, ref_dbias, SumAtol(kEps32, s.M, ref_dbias), 4 * kEps32, "dbias " + Name(s));
}

std::string ShapeName(const ::testing::TestParamInfo<Shape>& info) {
  return absl::StrCat("M", info.param.M, "N", info.param.N, "K", info.param.K);
}

INSTANTIATE_TEST_SUITE_P(OddShapes, MatmulShapeTest,
                         ::testing::Values(Shape{5, 7, 3}, Shape{13, 9, 17}, Shape{1, 1, 1},
                                           Shape{2, 1, 4}, Shape{37, 129, 65}),
                         ShapeName);
INSTANTIATE_TEST_SUITE_P(SmallOddShapes, MatmulGradCheckTest,
                         ::testing::Values(Shape{5, 7, 3}, Shape{13, 9, 17}, Shape{1, 1, 1},
                                           Shape{2, 1, 4}),
                         ShapeName);

// ------------------------------------------------------------- semantics

TEST(MatmulTest, ParameterGradientsAccumulateAndDinpIsOverwritten) {
  const Shape s{6, 5, 4};
  const std::vector<float> dout = RandomFloats(s.M * s.N, 31);
  const std::vector<float> inp = RandomFloats(s.M * s.K, 32);
  const std::vector<float> weight = RandomFloats(s.N * s.K, 33);
  const std::vector<float> dweight0 = RandomFloats(s.N * s.K, 34);
  const std::vector<float> dbias0 = RandomFloats(s.N, 35);

  // One pass from zero gives the gradient g.
  std::vector<float> g_dinp(s.M * s.K), g_dweight(s.N * s.K, 0.0f), g_dbias(s.N, 0.0f);
  MatmulBackwardParams p;
  p.dout = dout.data();
  p.inp = inp.data();
  p.weight = weight.data();
  p.dinp = g_dinp.data();
  p.dweight = g_dweight.data();
  p.dbias = g_dbias.data();
  p.M = s.M;
  p.N = s.N;
  p.K = s.K;
  ASSERT_TRUE(MatmulBackward(OpContext::Cpu(), p).ok());

  // Two passes onto nonzero starting values give start + 2g; dinp, filled
  // with garbage, is just g.
  std::vector<float> dinp(s.M * s.K, 99.0f), dweight = dweight0, dbias = dbias0;
  p.dinp = dinp.data();
  p.dweight = dweight.data();
  p.dbias = dbias.data();
  ASSERT_TRUE(MatmulBackward(OpContext::Cpu(), p).ok());
  ASSERT_TRUE(MatmulBackward(OpContext::Cpu(), p).ok());

  std::vector<float> want_dweight(dweight0.size()), want_dbias(dbias0.size());
  for (size_t i = 0; i < want_dweight.size(); ++i) want_dweight[i] = dweight0[i] + 2 * g_dweight[i];
  for (size_t i = 0; i < want_dbias.size(); ++i) want_dbias[i] = dbias0[i] + 2 * g_dbias[i];
  EXPECT_EQ(dinp, g_dinp);
  ExpectAllClose(dweight, want_dweight, 4 * kEps32, 4 * kEps32, "dweight after two passes");
  ExpectAllClose(dbias, want_dbias, 4 * kEps32, 4 * kEps32, "dbias after two passes");
}

// accumulate = false: dweight and dbias come out as the gradient of this
// pass alone, bit for bit what accumulating onto zeros gives, whatever they
// held (NaN here: a read of the old contents would show), in every dtype;
// with no rows they are zero.
TEST(MatmulTest, OverwrittenParameterGradientsIgnoreOldContents) {
  const Shape s{37, 21, 13};
  for (const DType dtype : {DType::kFloat32, DType::kBFloat16, DType::kFloat16}) {
    const size_t es = DTypeSize(dtype);
    const std::vector<uint8_t> dout = ToBytes(RandomFloats(s.M * s.N, 41), dtype),
                               inp = ToBytes(RandomFloats(s.M * s.K, 42), dtype),
                               weight = ToBytes(RandomFloats(s.N * s.K, 43), dtype);
    auto run = [&](bool accumulate, uint8_t fill, int64_t M) {
      std::vector<uint8_t> dw(s.N * s.K * es, fill), db(s.N * es, fill);
      MatmulBackwardParams p;
      p.dout = dout.data();
      p.inp = inp.data();
      p.weight = weight.data();
      p.dweight = dw.data();
      p.dbias = db.data();
      p.M = M;
      p.N = s.N;
      p.K = s.K;
      p.dtype = dtype;
      p.accumulate = accumulate;
      EXPECT_TRUE(MatmulBackward(OpContext::Cpu(), p).ok());
      dw.insert(dw.end(), db.begin(), db.end());
      return FromBytes(dw.data(), dw.size() / es, dtype);
    };
    const std::vector<float> onto_zeros = run(/*accumulate=*/true, 0x00, s.M);
    const std::vector<float> overwritten = run(/*accumulate=*/false, 0xff, s.M);
    ASSERT_EQ(onto_zeros.size(), overwritten.size());
    for (size_t i = 0; i < onto_zeros.size(); ++i) {
      ASSERT_EQ(overwritten[i], onto_zeros[i]) << DTypeName(dtype) << " element " << i;
    }
    EXPECT_EQ(run(/*accumulate=*/false, 0xff, /*M=*/0),
              std::vector<float>(onto_zeros.size(), 0.0f))
        << DTypeName(dtype) << ": no rows";
  }
}

// 16-bit storage is fp32 math on the widened inputs plus one rounding per
// output, so it is within one ulp (|ref| * eps(dtype)) of fp32 run on the
// same 16-bit-representable inputs. The tiny atol covers results below the
// 16-bit types' normal range, where the ulp is absolute.
class MatmulDTypeTest : public ::testing::TestWithParam<DType> {};

TEST_P(MatmulDTypeTest, SixteenBitMatchesFp32WithinOneRounding) {
  const DType dtype = GetParam();
  const double eps = DTypeEpsilon(dtype);
  constexpr double kTinyAtol = 1e-7;
  const Shape s{13, 9, 17};
  auto bytes = [&](size_t n, uint64_t seed, float lo = -1, float hi = 1) {
    return ToBytes(RandomFloats(n, seed, lo, hi), dtype);
  };
  auto floats = [&](const std::vector<uint8_t>& b) {
    return FromBytes(b.data(), b.size() / DTypeSize(dtype), dtype);
  };
  const auto inp = bytes(s.M * s.K, 41), weight = bytes(s.N * s.K, 42), bias = bytes(s.N, 43);
  const auto dout = bytes(s.M * s.N, 44), pre = bytes(s.M * s.K, 45, -3, 3);
  const auto dweight0 = bytes(s.N * s.K, 46), dbias0 = bytes(s.N, 47);

  // 16-bit run.
  std::vector<uint8_t> out(s.M * s.N * 2), pre_gelu(s.M * s.N * 2), dpre(s.M * s.K * 2);
  std::vector<uint8_t> dweight = dweight0, dbias = dbias0;
  ASSERT_TRUE(
      RunLinearLayerWithGelu(OpContext::Cpu(), dtype, s.M, s.N, s.K,
                             {inp.data(), weight.data(), bias.data(), out.data(), pre_gelu.data(),
                              dout.data(), pre.data(), dpre.data(), dweight.data(), dbias.data()})
          .ok());

  // fp32 run on the same values.
  const auto inp32 = floats(inp), weight32 = floats(weight), bias32 = floats(bias);
  const auto dout32 = floats(dout), pre32 = floats(pre);
  std::vector<float> out32(s.M * s.N), pre_gelu32(s.M * s.N), dpre32(s.M * s.K);
  std::vector<float> dweight32 = floats(dweight0), dbias32 = floats(dbias0);
  ASSERT_TRUE(RunLinearLayerWithGelu(
                  OpContext::Cpu(), DType::kFloat32, s.M, s.N, s.K,
                  {inp32.data(), weight32.data(), bias32.data(), out32.data(), pre_gelu32.data(),
                   dout32.data(), pre32.data(), dpre32.data(), dweight32.data(), dbias32.data()})
                  .ok());

  const std::string name(DTypeName(dtype));
  ExpectAllClose(floats(out), out32, kTinyAtol, eps, name + " out");
  ExpectAllClose(floats(pre_gelu), pre_gelu32, kTinyAtol, eps, name + " pre_gelu");
  ExpectAllClose(floats(dpre), dpre32, kTinyAtol, eps, name + " d(inp_pre_gelu)");
  ExpectAllClose(floats(dweight), dweight32, kTinyAtol, eps, name + " dweight");
  ExpectAllClose(floats(dbias), dbias32, kTinyAtol, eps, name + " dbias");
}

INSTANTIATE_TEST_SUITE_P(SixteenBit, MatmulDTypeTest,
                         ::testing::Values(DType::kFloat16, DType::kBFloat16));

TEST(MatmulTest, SameInputsGiveSameBits) {
  for (const DType dtype : {DType::kFloat32, DType::kBFloat16}) {
    const Shape s{64, 96, 80};
    const size_t e = DTypeSize(dtype);
    const auto inp = ToBytes(RandomFloats(s.M * s.K, 51), dtype);
    const auto weight = ToBytes(RandomFloats(s.N * s.K, 52), dtype);
    const auto bias = ToBytes(RandomFloats(s.N, 53), dtype);
    const auto dout = ToBytes(RandomFloats(s.M * s.N, 54), dtype);
    auto run = [&](std::vector<uint8_t>& out, std::vector<uint8_t>& pre, std::vector<uint8_t>& dinp,
                   std::vector<uint8_t>& dweight, std::vector<uint8_t>& dbias) {
      out.assign(s.M * s.N * e, 0);
      pre.assign(s.M * s.N * e, 0);
      dinp.assign(s.M * s.K * e, 0);
      dweight.assign(s.N * s.K * e, 0);
      dbias.assign(s.N * e, 0);
      ASSERT_TRUE(RunLinearLayerWithGelu(
                      OpContext::Cpu(), dtype, s.M, s.N, s.K,
                      {inp.data(), weight.data(), bias.data(), out.data(), pre.data(), dout.data(),
                       inp.data(), dinp.data(), dweight.data(), dbias.data()})
                      .ok());
    };
    std::vector<uint8_t> out1, pre1, dinp1, dweight1, dbias1, out2, pre2, dinp2, dweight2, dbias2;
    run(out1, pre1, dinp1, dweight1, dbias1);
    run(out2, pre2, dinp2, dweight2, dbias2);
    const std::string name(DTypeName(dtype));
    EXPECT_EQ(out1, out2) << name;
    EXPECT_EQ(pre1, pre2) << name;
    EXPECT_EQ(dinp1, dinp2) << name;
    EXPECT_EQ(dweight1, dweight2) << name;
    EXPECT_EQ(dbias1, dbias2) << name;
  }
}

TEST(MatmulTest, ZeroInnerDimensionGivesBiasAndZeroGradients) {
  const int64_t M = 3, N = 4;
  const std::vector<float> bias = {0.5f, -1.0f, 2.0f, 0.0f};
  std::vector<float> out(M * N, 9.0f), pre(M * N, 9.0f);
  MatmulForwardParams f;
  f.bias = bias.data();
  f.out = out.data();
  f.pre_gelu = pre.data();
  f.M = M;
  f.N = N;
  f.K = 0;
  ASSERT_TRUE(MatmulForward(OpContext::Cpu(), f).ok());
  for (int64_t i = 0; i < M * N; ++i) {
    EXPECT_EQ(pre[i], bias[i % N]) << i;
    EXPECT_EQ(out[i], GeluScalar(bias[i % N])) << i;
  }
  // N = 0: dinp = dout @ weight is an empty sum.
  std::vector<float> dinp(M * 2, 9.0f);
  MatmulBackwardParams b;
  b.dinp = dinp.data();
  b.M = M;
  b.N = 0;
  b.K = 2;
  ASSERT_TRUE(MatmulBackward(OpContext::Cpu(), b).ok());
  EXPECT_EQ(dinp, std::vector<float>(M * 2, 0.0f));
}

// ------------------------------------------------------------------ errors

TEST(MatmulTest, NegativeDimensionIsInvalidArgumentNamingIt) {
  MatmulForwardParams p;
  p.M = 2;
  p.N = -3;
  p.K = 1;
  const absl::Status s = MatmulForward(OpContext::Cpu(), p);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("N=-3"), std::string::npos) << s;
}

TEST(MatmulTest, MissingWeightIsInvalidArgumentNamingIt) {
  std::vector<float> inp(6), out(6);
  MatmulForwardParams p;
  p.inp = inp.data();
  p.out = out.data();
  p.M = 2;
  p.N = 3;
  p.K = 3;
  const absl::Status s = MatmulForward(OpContext::Cpu(), p);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("weight"), std::string::npos) << s;
}

TEST(MatmulTest, PreGeluAliasingOutIsInvalidArgument) {
  std::vector<float> inp(4), weight(4), out(4);
  MatmulForwardParams p;
  p.inp = inp.data();
  p.weight = weight.data();
  p.out = out.data();
  p.pre_gelu = out.data();
  p.M = p.N = p.K = 2;
  const absl::Status s = MatmulForward(OpContext::Cpu(), p);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("pre_gelu"), std::string::npos) << s;
}

TEST(MatmulTest, BackwardMissingDoutIsInvalidArgumentNamingIt) {
  std::vector<float> inp(4), weight(4), dweight(4);
  MatmulBackwardParams p;
  p.inp = inp.data();
  p.weight = weight.data();
  p.dweight = dweight.data();
  p.M = p.N = p.K = 2;
  const absl::Status s = MatmulBackward(OpContext::Cpu(), p);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("dout"), std::string::npos) << s;
}

TEST(MatmulTest, CudaContextIsRefusedBeforeAnyLaunch) {
  std::vector<float> inp(4), weight(4), out(4, 5.0f);
  MatmulForwardParams p;
  p.inp = inp.data();
  p.weight = weight.data();
  p.out = out.data();
  p.M = p.N = p.K = 2;
  OpContext ctx;
  ctx.device = Device::Cuda(0);
  const absl::Status s = MatmulForward(ctx, p);
#if ZT_WITH_CUDA
  // CUDA build: the context has no cuBLASLt handle.
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("cublaslt_handle"), std::string::npos) << s;
#else
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("MatmulForward"), std::string::npos) << s;
#endif
  EXPECT_EQ(out, std::vector<float>(4, 5.0f));
}

// The backward's workspace holds one float per column per chunk of rows for
// the bias gradient; both ops also stage 16-bit results in fp32 there.
TEST(MatmulTest, WorkspaceBytesCoverBiasPartialsAndFp32Staging) {
  EXPECT_EQ(MatmulBackwardWorkspaceBytes(0, 10), 0u);
  EXPECT_EQ(MatmulForwardWorkspaceBytes(0, 10), 0u);
  for (const int64_t N : {10, 50304}) {
    for (const int64_t M : {1, 256, 257, 8192}) {
      const size_t partials = (M + 255) / 256 * N * sizeof(float);
      EXPECT_GE(MatmulBackwardWorkspaceBytes(M, N), partials) << M << " " << N;
      // One fp32 row of the forward's [M, N] output.
      EXPECT_GE(MatmulForwardWorkspaceBytes(M, N), N * sizeof(float)) << M << " " << N;
      EXPECT_GE(MatmulBackwardWorkspaceBytes(M, N), MatmulForwardWorkspaceBytes(M, N))
          << M << " " << N;
    }
  }
}

}  // namespace
}  // namespace zt::kernels
