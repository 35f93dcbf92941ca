#include "optim/lr_schedule.h"

#include "gtest/gtest.h"

namespace zt {
namespace {

TEST(LrScheduleTest, WarmupThenCosineToMin) {
  LrSchedule s{1e-3, 1e-4, 10, 110};
  EXPECT_DOUBLE_EQ(s.At(0), 1e-4);
  EXPECT_DOUBLE_EQ(s.At(9), 1e-3);
  EXPECT_DOUBLE_EQ(s.At(10), 1e-3);
  EXPECT_NEAR(s.At(60), 0.5 * (1e-3 + 1e-4), 1e-15);  // Halfway through the decay.
  EXPECT_DOUBLE_EQ(s.At(110), 1e-4);
  EXPECT_DOUBLE_EQ(s.At(500), 1e-4);  // Past the end it stays at the minimum.
  for (int i = 11; i < 110; ++i) EXPECT_LT(s.At(i), s.At(i - 1));
}

TEST(LrScheduleTest, NoWarmupStartsAtMax) {
  LrSchedule s{2e-3, 0, 0, 100};
  EXPECT_DOUBLE_EQ(s.At(0), 2e-3);
}

}  // namespace
}  // namespace zt
