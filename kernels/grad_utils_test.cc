#include "kernels/grad_utils.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "core/dtype.h"
#include "kernels/testutil.h"

namespace zt::kernels {
namespace {

using ::zt::kernels::testing::FromBytes;
using ::zt::kernels::testing::RandomFloats;
using ::zt::kernels::testing::ToBytes;

const std::vector<DType>& AllDTypes() {
  static const auto* all =
      new std::vector<DType>{DType::kFloat32, DType::kFloat16, DType::kBFloat16};
  return *all;
}

std::string Name(DType t) { return std::string(DTypeName(t)); }

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

class GradUtilsDTypeTest : public ::testing::TestWithParam<DType> {};

INSTANTIATE_TEST_SUITE_P(AllDTypes, GradUtilsDTypeTest,
                         ::testing::Values(DType::kFloat32, DType::kFloat16, DType::kBFloat16),
                         [](const ::testing::TestParamInfo<DType>& info) {
                           return Name(info.param);
                         });

// ------------------------------------------------------ ScaleAndCheckFinite

TEST_P(GradUtilsDTypeTest, ScaleRoundsEachProductToTheDType) {
  const DType dtype = GetParam();
  const std::vector<float> x = FromBytes(ToBytes(RandomFloats(1001, 1, -8, 8), dtype).data(),
                                         1001, dtype);
  std::vector<uint8_t> data = ToBytes(x, dtype);
  constexpr float kScale = 0.3f;
  int32_t flag = 0;
  ASSERT_TRUE(
      ScaleAndCheckFinite(OpContext::Cpu(), dtype, data.data(), 1001, kScale, &flag).ok());
  std::vector<float> want(x.size());
  for (size_t i = 0; i < x.size(); ++i) want[i] = x[i] * kScale;
  EXPECT_EQ(data, ToBytes(want, dtype));
  EXPECT_EQ(flag, 0);
}

TEST_P(GradUtilsDTypeTest, ScaleLeavesFlagAloneWhenAllFinite) {
  const DType dtype = GetParam();
  std::vector<uint8_t> data = ToBytes(RandomFloats(100, 2), dtype);
  int32_t flag = 0;
  ASSERT_TRUE(ScaleAndCheckFinite(OpContext::Cpu(), dtype, data.data(), 100, 2.0f, &flag).ok());
  EXPECT_EQ(flag, 0);
  // A flag set by an earlier call is never cleared.
  flag = 1;
  ASSERT_TRUE(ScaleAndCheckFinite(OpContext::Cpu(), dtype, data.data(), 100, 2.0f, &flag).ok());
  EXPECT_EQ(flag, 1);
}

TEST_P(GradUtilsDTypeTest, ScaleFlagsInfinity) {
  const DType dtype = GetParam();
  std::vector<float> x = RandomFloats(100, 3);
  x[57] = -kInf;
  std::vector<uint8_t> data = ToBytes(x, dtype);
  int32_t flag = 0;
  ASSERT_TRUE(ScaleAndCheckFinite(OpContext::Cpu(), dtype, data.data(), 100, 0.5f, &flag).ok());
  EXPECT_EQ(flag, 1);
}

TEST_P(GradUtilsDTypeTest, ScaleFlagsNaN) {
  const DType dtype = GetParam();
  std::vector<float> x = RandomFloats(100, 4);
  x[99] = kNaN;
  std::vector<uint8_t> data = ToBytes(x, dtype);
  int32_t flag = 0;
  ASSERT_TRUE(ScaleAndCheckFinite(OpContext::Cpu(), dtype, data.data(), 100, 0.5f, &flag).ok());
  EXPECT_EQ(flag, 1);
}

TEST(ScaleAndCheckFiniteTest, FlagsProductThatOverflowsFp16) {
  // 60000 is finite in fp16; twice that is not, though finite in fp32.
  std::vector<uint8_t> data = ToBytes({1.0f, 60000.0f, 3.0f}, DType::kFloat16);
  int32_t flag = 0;
  ASSERT_TRUE(
      ScaleAndCheckFinite(OpContext::Cpu(), DType::kFloat16, data.data(), 3, 2.0f, &flag).ok());
  EXPECT_EQ(flag, 1);
  EXPECT_TRUE(std::isinf(FromBytes(data.data(), 3, DType::kFloat16)[1]));
}

TEST(ScaleAndCheckFiniteTest, RejectsNullFlag) {
  std::vector<float> x(4, 1.0f);
  const absl::Status s =
      ScaleAndCheckFinite(OpContext::Cpu(), DType::kFloat32, x.data(), 4, 1.0f, nullptr);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("found_nonfinite"), std::string::npos) << s;
}

TEST(ScaleAndCheckFiniteTest, RejectsNegativeCount) {
  std::vector<float> x(4, 1.0f);
  int32_t flag = 0;
  const absl::Status s =
      ScaleAndCheckFinite(OpContext::Cpu(), DType::kFloat32, x.data(), -1, 1.0f, &flag);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("n = -1"), std::string::npos) << s;
}

// -------------------------------------------------------------- SquaredNorm

TEST_P(GradUtilsDTypeTest, SquaredNormIsExactOnSmallIntegers) {
  const DType dtype = GetParam();
  // Integers up to 256 are exact in every dtype, and the sum stays below
  // 2^24, so every accumulation order gives the exact answer.
  std::vector<std::vector<uint8_t>> storage;
  std::vector<ConstTensorRef> tensors;
  double want = 0;
  for (int t = 0; t < 3; ++t) {
    std::vector<float> x(100 + 37 * t);
    for (size_t i = 0; i < x.size(); ++i) {
      x[i] = static_cast<float>(static_cast<int>((i * 7 + t * 13) % 41) - 20);
      want += static_cast<double>(x[i]) * x[i];
    }
    storage.push_back(ToBytes(x, dtype));
    tensors.push_back({storage.back().data(), static_cast<int64_t>(x.size())});
  }
  float out = -1;
  ASSERT_TRUE(SquaredNorm(OpContext::Cpu(), dtype, tensors, &out).ok());
  EXPECT_EQ(out, static_cast<float>(want));
}

TEST(SquaredNormTest, CloseToDoubleSumOnRandomData) {
  const std::vector<float> a = RandomFloats(100003, 5), b = RandomFloats(777, 6, -30, 30);
  double want = 0;
  for (float x : a) want += static_cast<double>(x) * x;
  for (float x : b) want += static_cast<double>(x) * x;
  const std::vector<ConstTensorRef> tensors = {{a.data(), 100003}, {b.data(), 777}};
  float out = 0;
  ASSERT_TRUE(SquaredNorm(OpContext::Cpu(), DType::kFloat32, tensors, &out).ok());
  EXPECT_NEAR(out, want, want * DTypeEpsilon(DType::kFloat32));
}

TEST(SquaredNormTest, SameBitsTwice) {
  const std::vector<float> a = RandomFloats(50001, 7);
  const std::vector<ConstTensorRef> tensors = {{a.data(), 50001}, {a.data() + 3, 1000}};
  float first = 0, second = 1;
  ASSERT_TRUE(SquaredNorm(OpContext::Cpu(), DType::kFloat32, tensors, &first).ok());
  ASSERT_TRUE(SquaredNorm(OpContext::Cpu(), DType::kFloat32, tensors, &second).ok());
  EXPECT_EQ(FloatBits(first), FloatBits(second));
}

TEST(SquaredNormTest, NoElementsGiveZero) {
  float out = -1;
  const std::vector<ConstTensorRef> tensors = {{nullptr, 0}};
  ASSERT_TRUE(SquaredNorm(OpContext::Cpu(), DType::kFloat16, tensors, &out).ok());
  EXPECT_EQ(out, 0.0f);
  EXPECT_EQ(SquaredNormWorkspaceBytes(tensors), 0u);
}

TEST(SquaredNormTest, WorkspaceHoldsOneFloatPerPartial) {
  const std::vector<ConstTensorRef> one = {{nullptr, 1}};
  EXPECT_EQ(SquaredNormWorkspaceBytes(one), sizeof(float));
  // Many chunks are capped at a fixed number of partials per launch.
  const std::vector<ConstTensorRef> huge = {{nullptr, int64_t{1} << 40}};
  const size_t bytes = SquaredNormWorkspaceBytes(huge);
  EXPECT_GT(bytes, sizeof(float));
  EXPECT_LE(bytes, 64u * 1024);
}

TEST(SquaredNormTest, RejectsNullDataNamingTheTensor) {
  std::vector<float> x(4, 1.0f);
  const std::vector<ConstTensorRef> tensors = {{x.data(), 4}, {nullptr, 2}};
  float out = 0;
  const absl::Status s = SquaredNorm(OpContext::Cpu(), DType::kFloat32, tensors, &out);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("tensors[1].data"), std::string::npos) << s;
}

// --------------------------------------------------------------------- Cast

// Random values across the fp16 range plus the awkward ones: zeros, ties,
// subnormals of both 16-bit types, overflow, infinities.
std::vector<float> CastInputs() {
  std::vector<float> x = RandomFloats(1000, 8, -70000, 70000);
  const std::vector<float> small = RandomFloats(200, 9, -1e-3f, 1e-3f);
  x.insert(x.end(), small.begin(), small.end());
  const std::vector<float> special = {0.0f,         -0.0f,      1.0f + 0x1p-11f, 1.0f + 3 * 0x1p-11f,
                                      1.0f + 0x1p-8f, 0x1p-24f, 0x1p-25f,        3e-8f,
                                      1e-40f,       65504.0f,   65520.0f,        1e30f,
                                      kInf,         -kInf};
  x.insert(x.end(), special.begin(), special.end());
  return x;
}

TEST(CastTest, AllPairsRoundToNearestEven) {
  const std::vector<float> values = CastInputs();
  const int64_t n = static_cast<int64_t>(values.size());
  for (DType src_dtype : AllDTypes()) {
    const std::vector<uint8_t> src = ToBytes(values, src_dtype);
    const std::vector<float> src_values = FromBytes(src.data(), n, src_dtype);
    for (DType dst_dtype : AllDTypes()) {
      std::vector<uint8_t> dst(n * DTypeSize(dst_dtype), 0xab);
      ASSERT_TRUE(
          Cast(OpContext::Cpu(), src.data(), src_dtype, dst.data(), dst_dtype, n).ok());
      EXPECT_EQ(dst, ToBytes(src_values, dst_dtype))
          << Name(src_dtype) << " -> " << Name(dst_dtype);
    }
  }
}

TEST(CastTest, KnownRoundings) {
  // Ties go to the even neighbour; beyond 65520 fp16 overflows; below 2^-25
  // it underflows to zero; bf16 keeps fp32's range.
  const std::vector<float> in = {1.0f + 0x1p-11f, 1.0f + 3 * 0x1p-11f, 65520.0f, 0x1p-26f, 1e30f,
                                 1.0f + 0x1p-8f};
  std::vector<uint8_t> half(in.size() * 2), bf16(in.size() * 2);
  ASSERT_TRUE(Cast(OpContext::Cpu(), in.data(), DType::kFloat32, half.data(), DType::kFloat16,
                   in.size())
                  .ok());
  ASSERT_TRUE(Cast(OpContext::Cpu(), in.data(), DType::kFloat32, bf16.data(), DType::kBFloat16,
                   in.size())
                  .ok());
  const std::vector<float> h = FromBytes(half.data(), in.size(), DType::kFloat16);
  EXPECT_EQ(h[0], 1.0f);
  EXPECT_EQ(h[1], 1.0f + 0x1p-9f);
  EXPECT_EQ(h[2], kInf);
  EXPECT_EQ(h[3], 0.0f);
  EXPECT_EQ(h[4], kInf);
  const std::vector<float> b = FromBytes(bf16.data(), in.size(), DType::kBFloat16);
  EXPECT_TRUE(std::isfinite(b[4]));
  EXPECT_NEAR(b[4], 1e30f, 1e30f * 0x1p-8f);
  EXPECT_EQ(b[5], 1.0f);  // tie between 1 and 1 + 2^-7 goes to 1
}

TEST(CastTest, SixteenBitValuesSurviveTheTripThroughFp32) {
  // Every 16-bit pattern that is not a NaN.
  for (DType narrow : {DType::kFloat16, DType::kBFloat16}) {
    std::vector<uint16_t> bits;
    for (uint32_t b = 0; b < 65536; ++b) {
      const float f = narrow == DType::kFloat16 ? HalfBitsToFloat(b) : BFloat16BitsToFloat(b);
      if (!std::isnan(f)) bits.push_back(static_cast<uint16_t>(b));
    }
    const int64_t n = static_cast<int64_t>(bits.size());
    std::vector<float> wide(n);
    std::vector<uint16_t> back(n);
    ASSERT_TRUE(Cast(OpContext::Cpu(), bits.data(), narrow, wide.data(), DType::kFloat32, n).ok());
    ASSERT_TRUE(Cast(OpContext::Cpu(), wide.data(), DType::kFloat32, back.data(), narrow, n).ok());
    EXPECT_EQ(back, bits) << Name(narrow);
  }
}

TEST(CastTest, Fp16ValuesWithinBf16PrecisionSurviveTheTripThroughBf16) {
  // fp16 values with at most 8 significant bits and an exponent bf16 covers.
  std::vector<float> values;
  for (int mantissa = -256; mantissa <= 256; ++mantissa) {
    for (int e = -14; e <= 7; e += 3) values.push_back(std::ldexp(static_cast<float>(mantissa), e));
  }
  const int64_t n = static_cast<int64_t>(values.size());
  const std::vector<uint8_t> half = ToBytes(values, DType::kFloat16);
  std::vector<uint8_t> bf16(n * 2), back(n * 2);
  ASSERT_TRUE(
      Cast(OpContext::Cpu(), half.data(), DType::kFloat16, bf16.data(), DType::kBFloat16, n).ok());
  ASSERT_TRUE(
      Cast(OpContext::Cpu(), bf16.data(), DType::kBFloat16, back.data(), DType::kFloat16, n).ok());
  EXPECT_EQ(back, half);
}

TEST(CastTest, EqualDTypesCopyBitsIncludingNaNPayloads) {
  const std::vector<uint16_t> src = {0x7e01, 0xfd55, 0x3c00, 0x0001};
  std::vector<uint16_t> dst(4, 0);
  ASSERT_TRUE(Cast(OpContext::Cpu(), src.data(), DType::kFloat16, dst.data(), DType::kFloat16, 4)
                  .ok());
  EXPECT_EQ(dst, src);
}

TEST(CastTest, SamePointerSameDTypeIsANoOp) {
  std::vector<float> x = {1.5f, kNaN, -2.0f};
  const std::vector<uint8_t> before = ToBytes(x, DType::kFloat32);
  ASSERT_TRUE(Cast(OpContext::Cpu(), x.data(), DType::kFloat32, x.data(), DType::kFloat32, 3).ok());
  EXPECT_EQ(ToBytes(x, DType::kFloat32), before);
}

TEST(CastTest, RejectsOverlappingBuffers) {
  std::vector<float> x(16, 1.0f);
  const absl::Status s =
      Cast(OpContext::Cpu(), x.data(), DType::kFloat32, x.data() + 2, DType::kFloat16, 8);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("overlap"), std::string::npos) << s;
}

TEST(CastTest, RejectsNegativeCount) {
  std::vector<float> x(4), y(4);
  const absl::Status s =
      Cast(OpContext::Cpu(), x.data(), DType::kFloat32, y.data(), DType::kFloat32, -5);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("n = -5"), std::string::npos) << s;
}

#if !ZT_WITH_CUDA
TEST(GradUtilsTest, CudaContextFailsInCpuBuild) {
  OpContext ctx;
  ctx.device = Device::Cuda(0);
  std::vector<float> x(4, 1.0f), y(4);
  const absl::Status s = Cast(ctx, x.data(), DType::kFloat32, y.data(), DType::kFloat16, 4);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("Cast"), std::string::npos) << s;
}
#endif

}  // namespace
}  // namespace zt::kernels
