#include "optim/loss_scaler.h"

#include "gtest/gtest.h"

namespace zt {
namespace {

TEST(LossScalerTest, OverflowHalvesAfterHysteresisAndSkips) {
  LossScalerOptions o;
  o.initial_scale_power = 10;
  o.hysteresis = 2;
  o.window = 1000;
  LossScaler s(o);
  EXPECT_EQ(s.scale(), 1024.0);
  EXPECT_TRUE(s.Update(true));   // First overflow: absorbed by hysteresis.
  EXPECT_EQ(s.scale(), 1024.0);
  EXPECT_TRUE(s.Update(true));   // Second: halves.
  EXPECT_EQ(s.scale(), 512.0);
  EXPECT_TRUE(s.Update(true));   // Budget stays spent until a window passes.
  EXPECT_EQ(s.scale(), 256.0);
  EXPECT_FALSE(s.Update(false));
  EXPECT_EQ(s.scale(), 256.0);
}

TEST(LossScalerTest, GrowsBackAfterWindowOfCleanSteps) {
  LossScalerOptions o;
  o.initial_scale_power = 4;
  o.hysteresis = 1;
  o.window = 3;
  LossScaler s(o);
  s.Update(true);  // iteration 0 overflows: 16 -> 8.
  EXPECT_EQ(s.scale(), 8.0);
  s.Update(false);  // 1
  s.Update(false);  // 2
  EXPECT_EQ(s.scale(), 8.0);
  s.Update(false);  // 3: three clean steps since the overflow.
  EXPECT_EQ(s.scale(), 16.0);
  s.Update(false);
  s.Update(false);
  s.Update(false);  // 6
  EXPECT_EQ(s.scale(), 32.0);
}

TEST(LossScalerTest, ConsecutiveHysteresisRefillsAfterACleanStep) {
  LossScalerOptions o;
  o.initial_scale_power = 10;
  o.hysteresis = 2;
  o.consecutive_hysteresis = true;
  LossScaler s(o);
  s.Update(true);   // Absorbed.
  s.Update(false);  // Refills the budget.
  s.Update(true);   // Absorbed again.
  EXPECT_EQ(s.scale(), 1024.0);
  s.Update(true);   // Two in a row: halves.
  EXPECT_EQ(s.scale(), 512.0);
}

TEST(LossScalerTest, NeverBelowMinScale) {
  LossScalerOptions o;
  o.initial_scale_power = 2;
  o.hysteresis = 1;
  o.min_scale = 2.0;
  LossScaler s(o);
  for (int i = 0; i < 5; ++i) s.Update(true);
  EXPECT_EQ(s.scale(), 2.0);
}

TEST(LossScalerTest, StaticScaleSkipsButNeverChanges) {
  LossScalerOptions o;
  o.dynamic = false;
  o.static_scale = 128.0;
  o.window = 1;
  LossScaler s(o);
  EXPECT_TRUE(s.Update(true));
  EXPECT_FALSE(s.Update(false));
  EXPECT_FALSE(s.Update(false));
  EXPECT_EQ(s.scale(), 128.0);
}

TEST(LossScalerTest, RestoreContinuesIdentically) {
  LossScalerOptions o;
  o.initial_scale_power = 8;
  o.window = 2;
  LossScaler a(o), b(o);
  const bool pattern[] = {false, true, true, false, false, false, true, false, false};
  for (int i = 0; i < 4; ++i) a.Update(pattern[i]);
  b.Restore(a.state());
  for (int i = 4; i < 9; ++i) {
    a.Update(pattern[i]);
    b.Update(pattern[i]);
    EXPECT_EQ(a.scale(), b.scale());
  }
}

}  // namespace
}  // namespace zt
