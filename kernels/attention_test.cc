#include "kernels/attention.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kernels/attention_ref.h"
#include "core/dtype.h"
#include "kernels/op_context.h"
#include "kernels/testutil.h"

namespace zt::kernels {
namespace {

using ::zt::kernels::testing::ExpectAllClose;
using ::zt::kernels::testing::FromBytes;
using ::zt::kernels::testing::NumericalGradient;
using ::zt::kernels::testing::RandomDoubles;
using ::zt::kernels::testing::RandomFloats;
using ::zt::kernels::testing::ToBytes;

AttentionParams Params(int64_t B, int64_t T, int64_t C, int64_t NH, DType dtype = DType::kFloat32) {
  AttentionParams p;
  p.B = B;
  p.T = T;
  p.C = C;
  p.NH = NH;
  p.dtype = dtype;
  return p;
}

std::string Name(const AttentionParams& p) {
  return absl::StrCat("B=", p.B, " T=", p.T, " C=", p.C, " NH=", p.NH);
}

// Textbook attention in double: the full [T, T] score matrix, masked,
// softmaxed row by row, times V. Shares no code with the reference.
struct Naive {
  std::vector<double> out;  // [B, T, C]
  std::vector<double> lse;  // [B, NH, T]
};

Naive NaiveAttention(const AttentionParams& p, const std::vector<double>& qkv) {
  const int64_t T = p.T, C = p.C, hs = p.C / p.NH;
  const double scale = 1.0 / std::sqrt(static_cast<double>(hs));
  const auto at = [&](int64_t b, int64_t t, int64_t part, int64_t h, int64_t d) {
    return qkv[(b * T + t) * 3 * C + part * C + h * hs + d];
  };
  Naive r{std::vector<double>(p.B * T * C), std::vector<double>(p.B * p.NH * T)};
  std::vector<double> att(T * T);
  for (int64_t b = 0; b < p.B; ++b) {
    for (int64_t h = 0; h < p.NH; ++h) {
      for (int64_t i = 0; i < T; ++i) {
        for (int64_t j = 0; j < T; ++j) {
          double s = 0;
          for (int64_t d = 0; d < hs; ++d) s += at(b, i, 0, h, d) * at(b, j, 1, h, d);
          att[i * T + j] = j <= i ? s * scale : -std::numeric_limits<double>::infinity();
        }
      }
      for (int64_t i = 0; i < T; ++i) {
        double* row = &att[i * T];
        double mx = row[0];
        for (int64_t j = 1; j < T; ++j) mx = std::max(mx, row[j]);
        double sum = 0;
        for (int64_t j = 0; j < T; ++j) sum += std::exp(row[j] - mx);
        for (int64_t j = 0; j < T; ++j) row[j] = std::exp(row[j] - mx) / sum;
        r.lse[(b * p.NH + h) * T + i] = mx + std::log(sum);
        for (int64_t d = 0; d < hs; ++d) {
          double o = 0;
          for (int64_t j = 0; j < T; ++j) o += row[j] * at(b, j, 2, h, d);
          r.out[(b * T + i) * C + h * hs + d] = o;
        }
      }
    }
  }
  return r;
}

std::vector<AttentionParams> SmallShapes() {
  return {Params(2, 5, 6, 2), Params(1, 7, 8, 4), Params(1, 1, 4, 1), Params(2, 33, 16, 2)};
}

TEST(AttentionTest, DoubleForwardMatchesNaiveSoftmax) {
  for (const AttentionParams& p : SmallShapes()) {
    const auto qkv = RandomDoubles(p.B * p.T * 3 * p.C, 1, -2, 2);
    std::vector<double> out(p.B * p.T * p.C), lse(p.B * p.NH * p.T);
    AttentionForwardCpu<double>(p, qkv.data(), out.data(), lse.data());
    const Naive want = NaiveAttention(p, qkv);
    ExpectAllClose(out, want.out, 1e-13, 1e-12, "out " + Name(p));
    ExpectAllClose(lse, want.lse, 1e-13, 1e-12, "lse " + Name(p));
  }
}

TEST(AttentionTest, Fp32ForwardMatchesNaiveSoftmax) {
  for (const AttentionParams& p : SmallShapes()) {
    const auto qkv_f = RandomFloats(p.B * p.T * 3 * p.C, 2, -2, 2);
    const std::vector<double> qkv(qkv_f.begin(), qkv_f.end());
    std::vector<float> out(p.B * p.T * p.C), lse(p.B * p.NH * p.T);
    ASSERT_TRUE(AttentionForward(OpContext::Cpu(), p, qkv_f.data(), out.data(), lse.data()).ok());
    const Naive want = NaiveAttention(p, qkv);
    // fp32 arithmetic over at most 33 terms of magnitude <= ~4.
    ExpectAllClose(out, want.out, 2e-6, 1e-5, "out " + Name(p));
    ExpectAllClose(lse, want.lse, 2e-6, 1e-5, "lse " + Name(p));
  }
}

TEST(AttentionTest, SingleTokenOutputIsItsValue) {
  const AttentionParams p = Params(1, 1, 8, 2);
  const auto qkv = RandomFloats(3 * p.C, 3);
  std::vector<float> out(p.C), lse(p.NH);
  ASSERT_TRUE(AttentionForward(OpContext::Cpu(), p, qkv.data(), out.data(), lse.data()).ok());
  for (int64_t c = 0; c < p.C; ++c) EXPECT_EQ(out[c], qkv[2 * p.C + c]) << c;
}

// loss = sum(out * w); backward with dout = w must equal d loss / d qkv.
TEST(AttentionTest, DoubleBackwardMatchesFiniteDifferences) {
  for (const AttentionParams& p : {Params(2, 5, 6, 2), Params(1, 7, 8, 4)}) {
    const int64_t n_qkv = p.B * p.T * 3 * p.C, n_out = p.B * p.T * p.C;
    const auto qkv = RandomDoubles(n_qkv, 4, -1.5, 1.5);
    const auto w = RandomDoubles(n_out, 5);
    const auto loss = [&](const std::vector<double>& x) {
      std::vector<double> out(n_out), lse(p.B * p.NH * p.T);
      AttentionForwardCpu<double>(p, x.data(), out.data(), lse.data());
      double sum = 0;
      for (int64_t i = 0; i < n_out; ++i) sum += out[i] * w[i];
      return sum;
    };
    std::vector<double> out(n_out), lse(p.B * p.NH * p.T), dqkv(n_qkv, 123.0);
    AttentionForwardCpu<double>(p, qkv.data(), out.data(), lse.data());
    AttentionBackwardCpu<double>(p, w.data(), qkv.data(), out.data(), lse.data(), dqkv.data());
    ExpectAllClose(dqkv, NumericalGradient(loss, qkv), 1e-8, 1e-6, "dqkv " + Name(p));
  }
}

// T = 150 spans three 64-row query blocks of the fp32 path, the last one
// partial.
TEST(AttentionTest, Fp32ForwardAndBackwardMatchDouble) {
  for (const AttentionParams& p : {Params(2, 33, 16, 2), Params(1, 150, 32, 2)}) {
    SCOPED_TRACE(Name(p));
    const int64_t n_qkv = p.B * p.T * 3 * p.C, n_out = p.B * p.T * p.C, n_lse = p.B * p.NH * p.T;
    const auto qkv_f = RandomFloats(n_qkv, 6, -2, 2);
    const auto dout_f = RandomFloats(n_out, 7);
    const std::vector<double> qkv(qkv_f.begin(), qkv_f.end()), dout(dout_f.begin(), dout_f.end());

    std::vector<double> out(n_out), lse(n_lse), dqkv(n_qkv);
    AttentionForwardCpu<double>(p, qkv.data(), out.data(), lse.data());
    AttentionBackwardCpu<double>(p, dout.data(), qkv.data(), out.data(), lse.data(), dqkv.data());

    std::vector<float> out_f(n_out), lse_f(n_lse), dqkv_f(n_qkv, 123.0f);
    const OpContext ctx = OpContext::Cpu();
    ASSERT_TRUE(AttentionForward(ctx, p, qkv_f.data(), out_f.data(), lse_f.data()).ok());
    ASSERT_TRUE(AttentionBackward(ctx, p, dout_f.data(), qkv_f.data(), out_f.data(), lse_f.data(),
                                  dqkv_f.data())
                    .ok());
    ExpectAllClose(out_f, out, 1e-5, 1e-4, "out fp32 vs double");
    ExpectAllClose(lse_f, lse, 1e-5, 1e-4, "lse fp32 vs double");
    ExpectAllClose(dqkv_f, dqkv, 1e-5, 1e-4, "dqkv fp32 vs double");
  }
}

// Changing token s's q, k and v may change outputs at s and later only.
TEST(AttentionTest, FutureTokensDoNotChangeEarlierOutputs) {
  const AttentionParams p = Params(1, 9, 8, 2);
  const int64_t s = 5;
  auto qkv = RandomFloats(p.T * 3 * p.C, 8);
  std::vector<float> out1(p.T * p.C), lse1(p.NH * p.T), out2(out1.size()), lse2(lse1.size());
  ASSERT_TRUE(AttentionForward(OpContext::Cpu(), p, qkv.data(), out1.data(), lse1.data()).ok());
  for (int64_t c = 0; c < 3 * p.C; ++c) qkv[s * 3 * p.C + c] += 0.5f;
  ASSERT_TRUE(AttentionForward(OpContext::Cpu(), p, qkv.data(), out2.data(), lse2.data()).ok());
  for (int64_t t = 0; t < p.T; ++t) {
    bool same = true;
    for (int64_t c = 0; c < p.C; ++c) same &= out1[t * p.C + c] == out2[t * p.C + c];
    for (int64_t h = 0; h < p.NH; ++h) same &= lse1[h * p.T + t] == lse2[h * p.T + t];
    EXPECT_EQ(same, t < s) << "token " << t;
  }
}

// With inputs already representable in the 16-bit type, the 16-bit path does
// the same fp32 math and rounds once on store: within eps(dtype) * |ref| of
// fp32 (half an ulp, doubled for slack), plus an atol for fp16 subnormals.
TEST(AttentionTest, SixteenBitStorageMatchesFp32WithinOneRounding) {
  const AttentionParams base = Params(2, 19, 16, 4);
  const int64_t n_qkv = base.B * base.T * 3 * base.C, n_out = base.B * base.T * base.C,
                n_lse = base.B * base.NH * base.T;
  for (DType dtype : {DType::kFloat16, DType::kBFloat16}) {
    AttentionParams p = base;
    p.dtype = dtype;
    const std::string what(DTypeName(dtype));
    const auto qkv_bytes = ToBytes(RandomFloats(n_qkv, 9, -2, 2), dtype);
    const auto dout_bytes = ToBytes(RandomFloats(n_out, 10), dtype);
    const auto qkv = FromBytes(qkv_bytes.data(), n_qkv, dtype);
    const auto dout = FromBytes(dout_bytes.data(), n_out, dtype);
    const OpContext ctx = OpContext::Cpu();
    const double eps = DTypeEpsilon(dtype);

    std::vector<uint8_t> out_bytes(n_out * 2), dqkv_bytes(n_qkv * 2);
    std::vector<float> lse(n_lse);
    ASSERT_TRUE(AttentionForward(ctx, p, qkv_bytes.data(), out_bytes.data(), lse.data()).ok());
    std::vector<float> out_ref(n_out), lse_ref(n_lse);
    ASSERT_TRUE(AttentionForward(ctx, base, qkv.data(), out_ref.data(), lse_ref.data()).ok());
    const auto out = FromBytes(out_bytes.data(), n_out, dtype);
    ExpectAllClose(out, out_ref, 1e-7, eps, "out " + what);
    ExpectAllClose(lse, lse_ref, 0, 1e-6, "lse " + what);

    // Both backward runs see the same (16-bit) out and the same lse.
    ASSERT_TRUE(AttentionBackward(ctx, p, dout_bytes.data(), qkv_bytes.data(), out_bytes.data(),
                                  lse.data(), dqkv_bytes.data())
                    .ok());
    std::vector<float> dqkv_ref(n_qkv);
    ASSERT_TRUE(AttentionBackward(ctx, base, dout.data(), qkv.data(), out.data(), lse.data(),
                                  dqkv_ref.data())
                    .ok());
    ExpectAllClose(FromBytes(dqkv_bytes.data(), n_qkv, dtype), dqkv_ref, 1e-7, eps, "dqkv " + what);
  }
}

// Large enough that the reference spreads (batch, head) pairs over threads.
TEST(AttentionTest, RepeatedCallsGiveIdenticalBitsAndMatchPerBatchCalls) {
  const AttentionParams p = Params(4, 128, 128, 4);
  const int64_t n_qkv = p.B * p.T * 3 * p.C, n_out = p.B * p.T * p.C, n_lse = p.B * p.NH * p.T;
  const auto qkv = RandomFloats(n_qkv, 11, -2, 2);
  const auto dout = RandomFloats(n_out, 12);
  const OpContext ctx = OpContext::Cpu();
  const auto run = [&](const AttentionParams& q, const float* x, const float* dy,
                       std::vector<float>& out, std::vector<float>& lse, std::vector<float>& dqkv) {
    ASSERT_TRUE(AttentionForward(ctx, q, x, out.data(), lse.data()).ok());
    ASSERT_TRUE(AttentionBackward(ctx, q, dy, x, out.data(), lse.data(), dqkv.data()).ok());
  };
  std::vector<float> out1(n_out), lse1(n_lse), dqkv1(n_qkv);
  std::vector<float> out2(n_out), lse2(n_lse), dqkv2(n_qkv, 7.0f);
  run(p, qkv.data(), dout.data(), out1, lse1, dqkv1);
  run(p, qkv.data(), dout.data(), out2, lse2, dqkv2);
  EXPECT_EQ(std::memcmp(out1.data(), out2.data(), n_out * 4), 0);
  EXPECT_EQ(std::memcmp(lse1.data(), lse2.data(), n_lse * 4), 0);
  EXPECT_EQ(std::memcmp(dqkv1.data(), dqkv2.data(), n_qkv * 4), 0);

  // How the work is split must not change any bit: one batch at a time.
  const AttentionParams one = Params(1, p.T, p.C, p.NH);
  const int64_t per_qkv = n_qkv / p.B, per_out = n_out / p.B, per_lse = n_lse / p.B;
  for (int64_t b = 0; b < p.B; ++b) {
    std::vector<float> out(per_out), lse(per_lse), dqkv(per_qkv);
    run(one, qkv.data() + b * per_qkv, dout.data() + b * per_out, out, lse, dqkv);
    EXPECT_EQ(std::memcmp(out.data(), out1.data() + b * per_out, per_out * 4), 0) << b;
    EXPECT_EQ(std::memcmp(lse.data(), lse1.data() + b * per_lse, per_lse * 4), 0) << b;
    EXPECT_EQ(std::memcmp(dqkv.data(), dqkv1.data() + b * per_qkv, per_qkv * 4), 0) << b;
  }
}

TEST(AttentionTest, BackwardOverwritesDqkv) {
  const AttentionParams p = Params(1, 6, 8, 2);
  const auto qkv = RandomFloats(p.T * 3 * p.C, 13);
  const auto dout = RandomFloats(p.T * p.C, 14);
  std::vector<float> out(p.T * p.C), lse(p.NH * p.T), a(qkv.size(), 0.0f), b(qkv.size(), 1e3f);
  const OpContext ctx = OpContext::Cpu();
  ASSERT_TRUE(AttentionForward(ctx, p, qkv.data(), out.data(), lse.data()).ok());
  ASSERT_TRUE(
      AttentionBackward(ctx, p, dout.data(), qkv.data(), out.data(), lse.data(), a.data()).ok());
  ASSERT_TRUE(
      AttentionBackward(ctx, p, dout.data(), qkv.data(), out.data(), lse.data(), b.data()).ok());
  EXPECT_EQ(a, b);
}

TEST(AttentionTest, WorkspaceHoldsOneFloatPerRow) {
  EXPECT_EQ(AttentionBackwardWorkspaceBytes(Params(2, 37, 768, 12)), 2u * 12 * 37 * 4);
}

void ExpectInvalid(const absl::Status& s, const std::string& culprit) {
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_NE(s.message().find(culprit), std::string::npos) << s;
}

TEST(AttentionTest, RejectsBadShapesNamingTheParameter) {
  std::vector<float> buf(4096);
  float* x = buf.data();
  const OpContext ctx = OpContext::Cpu();
  const struct {
    AttentionParams p;
    std::string culprit;
  } cases[] = {
      {Params(2, 4, 10, 4), "AttentionParams.C (10) must be a multiple of AttentionParams.NH (4)"},
      {Params(0, 4, 8, 2), "AttentionParams.B"},
      {Params(1, -1, 8, 2), "AttentionParams.T"},
      {Params(1, 4, 0, 2), "AttentionParams.C"},
      {Params(1, 4, 8, 0), "AttentionParams.NH"},
      {Params(1, 4, 8, 2, static_cast<DType>(7)), "AttentionParams.dtype"},
  };
  for (const auto& c : cases) {
    ExpectInvalid(AttentionForward(ctx, c.p, x, x, x), c.culprit);
    ExpectInvalid(AttentionBackward(ctx, c.p, x, x, x, x, x), c.culprit);
  }
}

TEST(AttentionTest, RejectsNullPointersNamingTheArgument) {
  std::vector<float> buf(4096);
  float* x = buf.data();
  const AttentionParams p = Params(1, 4, 8, 2);
  const OpContext ctx = OpContext::Cpu();
  ExpectInvalid(AttentionForward(ctx, p, nullptr, x, x), "qkv");
  ExpectInvalid(AttentionForward(ctx, p, x, nullptr, x), "out");
  ExpectInvalid(AttentionForward(ctx, p, x, x, nullptr), "lse");
  ExpectInvalid(AttentionBackward(ctx, p, nullptr, x, x, x, x), "dout");
  ExpectInvalid(AttentionBackward(ctx, p, x, x, x, x, nullptr), "dqkv");
}

#if !ZT_WITH_CUDA
TEST(AttentionTest, CudaContextInCpuBuildIsFailedPrecondition) {
  std::vector<float> buf(4096);
  float* x = buf.data();
  OpContext ctx;
  ctx.device = Device::Cuda(0);
  const AttentionParams p = Params(1, 4, 8, 2);
  for (const absl::Status& s :
       {AttentionForward(ctx, p, x, x, x), AttentionBackward(ctx, p, x, x, x, x, x)}) {
    EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
    EXPECT_NE(s.message().find("Attention"), std::string::npos) << s;
  }
}
#endif

}  // namespace
}  // namespace zt::kernels
