#include "kernels/embedding.h"

#include <cstdint>
#include <cstring>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/embedding_ref.h"
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

// Small odd sizes; token 3 appears three times, and wpe has one more row
// (maxT = 4) than the sequence uses, which must never be touched.
constexpr int64_t kB = 2, kT = 3, kC = 5, kV = 11, kMaxT = 4;
const std::vector<int32_t> kTokens = {3, 7, 3, 10, 3, 0};

EmbeddingParams Params(DType dtype = DType::kFloat32) {
  EmbeddingParams p;
  p.B = kB;
  p.T = kT;
  p.C = kC;
  p.V = kV;
  p.dtype = dtype;
  return p;
}

std::vector<float> ToFloats(const std::vector<double>& v) { return {v.begin(), v.end()}; }

TEST(EmbeddingTest, ForwardIsTokenRowPlusPositionRow) {
  const auto wte = RandomFloats(kV * kC, 1), wpe = RandomFloats(kMaxT * kC, 2);
  std::vector<float> out(kB * kT * kC, -7.0f);
  ASSERT_TRUE(EmbeddingForward(OpContext::Cpu(), Params(), kTokens.data(), wte.data(), wpe.data(),
                               out.data())
                  .ok());
  std::vector<float> want(out.size());
  for (int64_t b = 0; b < kB; ++b) {
    for (int64_t t = 0; t < kT; ++t) {
      for (int64_t c = 0; c < kC; ++c) {
        // One float addition, rounded once: exactly the double sum rounded.
        want[(b * kT + t) * kC + c] =
            static_cast<float>(double{wte[kTokens[b * kT + t] * kC + c]} + double{wpe[t * kC + c]});
      }
    }
  }
  EXPECT_EQ(out, want);
}

TEST(EmbeddingTest, BackwardMatchesFiniteDifferences) {
  const EmbeddingParams p = Params();
  const size_t n_wte = kV * kC, n_wpe = kMaxT * kC, n_out = kB * kT * kC;
  const auto g = RandomDoubles(n_out, 3);  // dL/dout for L = sum(out * g).
  auto loss = [&](const std::vector<double>& params) {
    std::vector<double> out(n_out);
    EmbeddingForwardRef<double>(p, kTokens.data(), params.data(), params.data() + n_wte,
                                out.data());
    double l = 0;
    for (size_t i = 0; i < n_out; ++i) l += out[i] * g[i];
    return l;
  };
  const auto params = RandomDoubles(n_wte + n_wpe, 4);
  const auto numeric = NumericalGradient(loss, params);

  std::vector<double> grads(n_wte + n_wpe, 0.0);
  EmbeddingBackwardRef<double>(p, kTokens.data(), g.data(), grads.data(), grads.data() + n_wte);
  ExpectAllClose(grads, numeric, 1e-8, 1e-6, "d(wte, wpe)");
}

TEST(EmbeddingTest, BackwardAccumulatesIntoExistingGradients) {
  const auto dout = RandomFloats(kB * kT * kC, 5);
  const auto dwte0 = RandomFloats(kV * kC, 6), dwpe0 = RandomFloats(kMaxT * kC, 7);
  auto dwte = dwte0, dwpe = dwpe0;
  ASSERT_TRUE(EmbeddingBackward(OpContext::Cpu(), Params(), kTokens.data(), dout.data(),
                                dwte.data(), dwpe.data())
                  .ok());

  std::vector<double> want_wte(dwte0.begin(), dwte0.end()), want_wpe(dwpe0.begin(), dwpe0.end());
  for (int64_t pos = 0; pos < kB * kT; ++pos) {
    for (int64_t c = 0; c < kC; ++c) {
      want_wte[kTokens[pos] * kC + c] += dout[pos * kC + c];
      want_wpe[(pos % kT) * kC + c] += dout[pos * kC + c];
    }
  }
  const double eps = DTypeEpsilon(DType::kFloat32);
  ExpectAllClose(dwte, want_wte, 1e-6, 4 * eps, "dwte");
  ExpectAllClose(dwpe, want_wpe, 1e-6, 4 * eps, "dwpe");
  // Rows of tokens that do not occur, and the unused position row, are left
  // exactly as they were.
  for (int32_t v : {1, 2, 4, 5, 6, 8, 9}) {
    for (int64_t c = 0; c < kC; ++c) EXPECT_EQ(dwte[v * kC + c], dwte0[v * kC + c]) << v;
  }
  for (int64_t c = 0; c < kC; ++c) EXPECT_EQ(dwpe[kT * kC + c], dwpe0[kT * kC + c]);
}

struct Results {
  std::vector<uint8_t> out, dwte, dwpe;
};

// Forward and backward through the public API on `dtype` storage.
Results RunOps(DType dtype, const std::vector<float>& wte, const std::vector<float>& wpe,
               const std::vector<float>& dout, const std::vector<float>& dwte0,
               const std::vector<float>& dwpe0) {
  Results r;
  const auto wte_b = ToBytes(wte, dtype), wpe_b = ToBytes(wpe, dtype),
             dout_b = ToBytes(dout, dtype);
  r.out.resize(kB * kT * kC * DTypeSize(dtype));
  r.dwte = ToBytes(dwte0, dtype);
  r.dwpe = ToBytes(dwpe0, dtype);
  const EmbeddingParams p = Params(dtype);
  EXPECT_TRUE(EmbeddingForward(OpContext::Cpu(), p, kTokens.data(), wte_b.data(), wpe_b.data(),
                               r.out.data())
                  .ok());
  EXPECT_TRUE(EmbeddingBackward(OpContext::Cpu(), p, kTokens.data(), dout_b.data(), r.dwte.data(),
                                r.dwpe.data())
                  .ok());
  return r;
}

class EmbeddingLowPrecisionTest : public ::testing::TestWithParam<DType> {};

TEST_P(EmbeddingLowPrecisionTest, MatchesFloatOnTheSameRoundedInputs) {
  const DType dtype = GetParam();
  auto rounded = [&](std::vector<float> v) {
    return FromBytes(ToBytes(v, dtype).data(), v.size(), dtype);
  };
  const auto wte = rounded(RandomFloats(kV * kC, 8)), wpe = rounded(RandomFloats(kMaxT * kC, 9));
  const auto dout = rounded(RandomFloats(kB * kT * kC, 10));
  const auto dwte0 = rounded(RandomFloats(kV * kC, 11)),
             dwpe0 = rounded(RandomFloats(kMaxT * kC, 12));
  const Results low = RunOps(dtype, wte, wpe, dout, dwte0, dwpe0);
  const Results ref = RunOps(DType::kFloat32, wte, wpe, dout, dwte0, dwpe0);
  // fp32 math on identical inputs: the only difference is the final
  // rounding to `dtype`, at most half an ulp.
  const double eps = DTypeEpsilon(dtype);
  auto f32 = [](const std::vector<uint8_t>& b) {
    return FromBytes(b.data(), b.size() / 4, DType::kFloat32);
  };
  auto low_f = [&](const std::vector<uint8_t>& b) {
    return FromBytes(b.data(), b.size() / 2, dtype);
  };
  ExpectAllClose(low_f(low.out), f32(ref.out), 1e-6, eps, "out");
  ExpectAllClose(low_f(low.dwte), f32(ref.dwte), 1e-6, eps, "dwte");
  ExpectAllClose(low_f(low.dwpe), f32(ref.dwpe), 1e-6, eps, "dwpe");
}

TEST_P(EmbeddingLowPrecisionTest, SameInputsGiveSameBits) {
  const DType dtype = GetParam();
  const auto wte = RandomFloats(kV * kC, 13), wpe = RandomFloats(kMaxT * kC, 14);
  const auto dout = RandomFloats(kB * kT * kC, 15);
  const auto dwte0 = RandomFloats(kV * kC, 16), dwpe0 = RandomFloats(kMaxT * kC, 17);
  const Results a = RunOps(dtype, wte, wpe, dout, dwte0, dwpe0);
  const Results b = RunOps(dtype, wte, wpe, dout, dwte0, dwpe0);
  EXPECT_EQ(a.out, b.out);
  EXPECT_EQ(a.dwte, b.dwte);
  EXPECT_EQ(a.dwpe, b.dwpe);
}

INSTANTIATE_TEST_SUITE_P(Dtypes, EmbeddingLowPrecisionTest,
                         ::testing::Values(DType::kFloat16, DType::kBFloat16),
                         [](const auto& info) { return std::string(DTypeName(info.param)); });

TEST(EmbeddingTest, ForwardRejectsTokenAtOrAboveVocabNamingPosition) {
  auto tokens = kTokens;
  tokens[4] = kV;  // (b=1, t=1)
  const auto wte = RandomFloats(kV * kC, 1), wpe = RandomFloats(kMaxT * kC, 2);
  std::vector<float> out(kB * kT * kC, 0.0f);
  const absl::Status s = EmbeddingForward(OpContext::Cpu(), Params(), tokens.data(), wte.data(),
                                          wpe.data(), out.data());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("(b=1, t=1) is 11"));
}

TEST(EmbeddingTest, BackwardRejectsNegativeTokenAndLeavesGradientsAlone) {
  auto tokens = kTokens;
  tokens[2] = -1;  // (b=0, t=2)
  const auto dout = RandomFloats(kB * kT * kC, 5);
  const std::vector<float> dwte0(kV * kC, 0.5f), dwpe0(kMaxT * kC, 0.25f);
  auto dwte = dwte0, dwpe = dwpe0;
  const absl::Status s = EmbeddingBackward(OpContext::Cpu(), Params(), tokens.data(), dout.data(),
                                           dwte.data(), dwpe.data());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("(b=0, t=2) is -1"));
  EXPECT_EQ(dwte, dwte0);
  EXPECT_EQ(dwpe, dwpe0);
}

TEST(EmbeddingTest, RejectsNonPositiveSizesNamingTheField) {
  const auto wte = RandomFloats(kV * kC, 1), wpe = RandomFloats(kMaxT * kC, 2);
  std::vector<float> out(kB * kT * kC);
  for (const char* field : {"B", "T", "C", "V"}) {
    EmbeddingParams p = Params();
    if (field[0] == 'B') p.B = 0;
    if (field[0] == 'T') p.T = -2;
    if (field[0] == 'C') p.C = 0;
    if (field[0] == 'V') p.V = 0;
    const absl::Status s =
        EmbeddingForward(OpContext::Cpu(), p, kTokens.data(), wte.data(), wpe.data(), out.data());
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << field;
    EXPECT_THAT(s.message(),
                HasSubstr(std::string("EmbeddingParams.") + field + " must be positive"));
    EXPECT_EQ(EmbeddingBackwardWorkspaceBytes(p), 0u) << field;
  }
}

TEST(EmbeddingTest, RejectsNullBufferNamingIt) {
  const auto dout = RandomFloats(kB * kT * kC, 5);
  std::vector<float> dwte(kV * kC);
  const absl::Status s = EmbeddingBackward(OpContext::Cpu(), Params(), kTokens.data(), dout.data(),
                                           dwte.data(), nullptr);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("dwpe is null"));
}

#if !ZT_WITH_CUDA
TEST(EmbeddingTest, CudaContextInCpuBuildIsFailedPrecondition) {
  OpContext ctx;
  ctx.device = Device::Cuda(0);
  const auto wte = RandomFloats(kV * kC, 1), wpe = RandomFloats(kMaxT * kC, 2);
  std::vector<float> out(kB * kT * kC);
  const absl::Status s =
      EmbeddingForward(ctx, Params(), kTokens.data(), wte.data(), wpe.data(), out.data());
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.message(), HasSubstr("EmbeddingForward"));
}
#endif

}  // namespace
}  // namespace zt::kernels
