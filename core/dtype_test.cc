#include "core/dtype.h"

#include <cmath>
#include <cstdint>
#include <random>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "gtest/gtest.h"

namespace zt {
namespace {

// CUDA's host-side conversions are the reference: device kernels use the
// same rounding, so host and device must agree bit for bit.
uint16_t CudaFloatToHalf(float f) {
  const __half h = __float2half_rn(f);
  return __half_as_ushort(h);
}
float CudaHalfToFloat(uint16_t bits) { return __half2float(__ushort_as_half(bits)); }
uint16_t CudaFloatToBf16(float f) {
  const __nv_bfloat16 b = __float2bfloat16_rn(f);
  return __bfloat16_as_ushort(b);
}
float CudaBf16ToFloat(uint16_t bits) { return __bfloat162float(__ushort_as_bfloat16(bits)); }

bool SameFloat(float a, float b) {
  if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
  return FloatBits(a) == FloatBits(b);
}

// Every 16-bit pattern, the float it denotes, and the floats that stress
// rounding near it: exact midpoints to both neighbours and one float ulp to
// either side of those midpoints.
template <typename ToFloatFn, typename FromFloatFn, typename RefToFloat, typename RefFromFloat>
void CheckExhaustive(ToFloatFn to_float, FromFloatFn from_float, RefToFloat ref_to_float,
                     RefFromFloat ref_from_float) {
  int checked = 0;
  for (uint32_t bits = 0; bits <= 0xffff; ++bits) {
    const float ours = to_float(static_cast<uint16_t>(bits));
    const float ref = ref_to_float(static_cast<uint16_t>(bits));
    ASSERT_TRUE(SameFloat(ours, ref)) << std::hex << "bits 0x" << bits;
    if (std::isnan(ours)) {
      ASSERT_EQ(from_float(ours), ref_from_float(ours)) << std::hex << "NaN 0x" << bits;
      continue;
    }
    const float next = to_float(static_cast<uint16_t>(bits + 1));
    std::vector<float> probes = {ours};
    if (std::isfinite(ours) && std::isfinite(next) && bits != 0x7fff && bits != 0xffff) {
      const float mid = static_cast<float>((static_cast<double>(ours) + next) / 2);
      probes.push_back(mid);
      probes.push_back(std::nextafter(mid, 0.0f));
      probes.push_back(std::nextafter(mid, std::copysign(INFINITY, mid)));
    }
    for (float p : probes) {
      ASSERT_EQ(from_float(p), ref_from_float(p))
          << std::hex << "bits 0x" << bits << " probe " << std::hexfloat << p;
      ++checked;
    }
  }
  EXPECT_GT(checked, 4 * 60000);
}

TEST(DTypeTest, HalfMatchesCudaOnAllPatternsAndMidpoints) {
  CheckExhaustive(HalfBitsToFloat, FloatToHalfBits, CudaHalfToFloat, CudaFloatToHalf);
}

TEST(DTypeTest, BFloat16MatchesCudaOnAllPatternsAndMidpoints) {
  CheckExhaustive(BFloat16BitsToFloat, FloatToBFloat16Bits, CudaBf16ToFloat, CudaFloatToBf16);
}

TEST(DTypeTest, RandomFloatBitPatternsMatchCuda) {
  std::mt19937 rng(1234);
  for (int i = 0; i < 2000000; ++i) {
    const float f = BitsToFloat(rng());
    ASSERT_EQ(FloatToHalfBits(f), CudaFloatToHalf(f)) << std::hexfloat << f;
    ASSERT_EQ(FloatToBFloat16Bits(f), CudaFloatToBf16(f)) << std::hexfloat << f;
  }
}

TEST(DTypeTest, EdgeCasesRoundAsIeeeSays) {
  EXPECT_EQ(FloatToHalfBits(65504.0f), 0x7bffu);      // Largest finite half.
  EXPECT_EQ(FloatToHalfBits(65519.996f), 0x7bffu);    // Just below the overflow midpoint.
  EXPECT_EQ(FloatToHalfBits(65520.0f), 0x7c00u);      // Midpoint to "65536": infinity.
  EXPECT_EQ(FloatToHalfBits(std::ldexp(1.0f, -24)), 0x0001u);  // Smallest subnormal.
  EXPECT_EQ(FloatToHalfBits(std::ldexp(1.0f, -25)), 0x0000u);  // Tie to even (zero).
  EXPECT_EQ(FloatToHalfBits(-0.0f), 0x8000u);
  EXPECT_EQ(FloatToHalfBits(NAN), 0x7fffu);
  EXPECT_EQ(FloatToBFloat16Bits(1.0f + std::ldexp(1.0f, -8)), 0x3f80u);  // Tie to even, down.
  EXPECT_EQ(FloatToBFloat16Bits(-INFINITY), 0xff80u);
  EXPECT_EQ(FloatToBFloat16Bits(3.4028235e38f), 0x7f80u);  // Rounds up to infinity.
  EXPECT_EQ(Half::FromFloat(0.1f).ToFloat(), 0.0999755859375f);
}

TEST(DTypeTest, ParseDTypeAcceptsAliasesAndRejectsOthers) {
  EXPECT_EQ(*ParseDType("bf16"), DType::kBFloat16);
  EXPECT_EQ(*ParseDType("float16"), DType::kFloat16);
  const auto bad = ParseDType("fp8");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("fp8"), std::string::npos);
  EXPECT_EQ(DTypeName(DType::kFloat32), "fp32");
  EXPECT_EQ(DTypeSize(DType::kBFloat16), 2u);
}

}  // namespace
}  // namespace zt
