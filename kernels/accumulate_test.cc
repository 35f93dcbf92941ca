#include "kernels/accumulate.h"

#include "gtest/gtest.h"
#include "kernels/testutil.h"

namespace zt::kernels {
namespace {

TEST(AccumulateTest, AddsInStorageDtypeWithOneRounding) {
  for (DType t : {DType::kFloat32, DType::kFloat16, DType::kBFloat16}) {
    const auto a = testing::RandomFloats(37, 1), b = testing::RandomFloats(37, 2);
    auto dst = testing::ToBytes(a, t);
    const auto src = testing::ToBytes(b, t);
    ASSERT_TRUE(Accumulate(OpContext::Cpu(), t, dst.data(), src.data(), 37).ok());
    const auto ra = testing::FromBytes(testing::ToBytes(a, t).data(), 37, t);
    const auto rb = testing::FromBytes(src.data(), 37, t);
    const auto got = testing::FromBytes(dst.data(), 37, t);
    for (int i = 0; i < 37; ++i) EXPECT_EQ(got[i], RoundTo(t, ra[i] + rb[i])) << i;
  }
}

TEST(AccumulateTest, NegativeCountIsAnError) {
  float x = 0;
  EXPECT_EQ(Accumulate(OpContext::Cpu(), DType::kFloat32, &x, &x, -1).code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace zt::kernels
