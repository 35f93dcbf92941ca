#include "trainer/trainer.h"

#include <cmath>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu_parallel.h"
#include "trainer/config.h"
#include "zero/communicator_factory.h"

namespace zt {
namespace {

std::vector<std::string> TinyModel() {
  return {"model.n_layer=2",       "model.n_head=2",        "model.n_embd=32",
          "model.vocab_size=64",   "model.max_seq_len=16",  "batch.seq_len=16",
          "batch.micro_batch_size=4", "device=CPU",         "eval.batches=0",
          "optimizer.warmup_steps=0", "optimizer.min_lr_ratio=1", "max_steps=100"};
}

struct TrainerRun {
  std::unique_ptr<Communicator> comm;
  std::unique_ptr<Trainer> trainer;
};

TrainerRun MakeRun(std::vector<std::string> sets) {
  auto config = ResolveConfig("", sets);
  EXPECT_TRUE(config.ok()) << config.status();
  TrainerRun r;
  auto comm = CreateCommunicator(CommunicatorBackend::kLocal, Device::Cpu());
  EXPECT_TRUE(comm.ok()) << comm.status();
  r.comm = std::move(comm).value();
  auto t = Trainer::Create(*config, r.comm.get());
  EXPECT_TRUE(t.ok()) << t.status();
  r.trainer = std::move(t).value();
  return r;
}

std::vector<float> Master(Trainer& t) {
  const float* m = t.engine().master();
  return std::vector<float>(m, m + t.engine().opt_range().size());
}

bool AllFinite(const std::vector<float>& v) {
  for (float x : v) {
    if (!std::isfinite(x)) return false;
  }
  return true;
}

TEST(TrainerTest, Fp16InjectedInfSkipsStepHalvesScaleAndGrowsBack) {
  auto sets = TinyModel();
  sets.push_back("precision.dtype=FP16");
  sets.push_back("precision.loss_scaler.initial_scale_power=8");
  sets.push_back("precision.loss_scaler.hysteresis=1");
  sets.push_back("precision.loss_scaler.loss_scale_window=3");
  TrainerRun run = MakeRun(sets);
  Trainer& t = *run.trainer;
  ASSERT_EQ(t.loss_scaler().scale(), 256.0);
  auto r = t.TrainStep();
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_FALSE(r->skipped);
  const std::vector<float> before = Master(t);
  const int64_t adam_before = t.adam_steps();

  t.InjectNonFiniteGradientOnce();
  r = t.TrainStep();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->skipped);
  EXPECT_EQ(r->loss_scale, 256.0);          // The scale the step ran with...
  EXPECT_EQ(t.loss_scaler().scale(), 128.0);  // ...halved for the next one.
  EXPECT_EQ(Master(t), before) << "a skipped step must not touch the weights";
  EXPECT_EQ(t.adam_steps(), adam_before);

  for (int i = 0; i < 3; ++i) {
    r = t.TrainStep();
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_FALSE(r->skipped);
    EXPECT_TRUE(std::isfinite(r->loss));
  }
  EXPECT_EQ(t.loss_scaler().scale(), 256.0) << "grows back after a window of clean steps";
  EXPECT_TRUE(AllFinite(Master(t)));
  EXPECT_NE(Master(t), before);
}

TEST(TrainerTest, GradientAccumulationEqualsOneLargerBatch) {
  auto small = TinyModel();
  small.push_back("batch.micro_batch_size=4");
  small.push_back("batch.grad_accum_steps=2");
  auto large = TinyModel();
  large.push_back("batch.micro_batch_size=8");
  large.push_back("batch.grad_accum_steps=1");
  TrainerRun a = MakeRun(small), b = MakeRun(large);
  for (int step = 0; step < 3; ++step) {
    auto ra = a.trainer->TrainStep();
    auto rb = b.trainer->TrainStep();
    ASSERT_TRUE(ra.ok() && rb.ok());
    EXPECT_NEAR(ra->loss, rb->loss, 1e-6 * rb->loss) << "step " << step;
    EXPECT_NEAR(ra->grad_norm, rb->grad_norm, 1e-5 * rb->grad_norm) << "step " << step;
  }
  const auto ma = Master(*a.trainer), mb = Master(*b.trainer);
  ASSERT_EQ(ma.size(), mb.size());
  double diff = 0, norm = 0;
  for (size_t i = 0; i < ma.size(); ++i) {
    diff += double(ma[i] - mb[i]) * (ma[i] - mb[i]);
    norm += double(mb[i]) * mb[i];
  }
  // Only the order of additions differs: rounding-level agreement.
  EXPECT_LE(std::sqrt(diff / norm), 1e-6);
}

TEST(TrainerTest, SameSeedSameBits) {
  TrainerRun a = MakeRun(TinyModel()), b = MakeRun(TinyModel());
  for (int i = 0; i < 3; ++i) {
    auto ra = a.trainer->TrainStep();
    auto rb = b.trainer->TrainStep();
    ASSERT_TRUE(ra.ok() && rb.ok());
    EXPECT_EQ(ra->loss, rb->loss);
  }
  EXPECT_EQ(Master(*a.trainer), Master(*b.trainer));
}

// A run resumed with another thread count (another OMP_NUM_THREADS, ranks
// sharing a machine) continues with the same bits. The batch is large enough
// that every parallel op splits into several chunks.
TEST(TrainerTest, SameBitsOnOneAndThreeCpuThreads) {
  std::vector<std::string> sets = TinyModel();
  sets.push_back("batch.micro_batch_size=16");
  const int saved = kernels::CpuThreads();
  std::vector<std::vector<double>> losses;
  std::vector<std::vector<float>> masters;
  for (int threads : {1, 3}) {
    kernels::SetCpuThreads(threads);
    TrainerRun r = MakeRun(sets);
    std::vector<double> l;
    for (int i = 0; i < 3; ++i) {
      auto step = r.trainer->TrainStep();
      ASSERT_TRUE(step.ok()) << step.status();
      l.push_back(step->loss);
    }
    losses.push_back(l);
    masters.push_back(Master(*r.trainer));
  }
  kernels::SetCpuThreads(saved);
  EXPECT_EQ(losses[0], losses[1]);
  EXPECT_EQ(masters[0], masters[1]);
}

TEST(TrainerTest, EveryStageOnOneRankMatchesStageZero) {
  std::vector<double> reference;
  for (int stage = 0; stage <= 3; ++stage) {
    auto sets = TinyModel();
    sets.push_back("zero.stage=STAGE_" + std::to_string(stage));
    TrainerRun run = MakeRun(sets);
    for (int i = 0; i < 4; ++i) {
      auto r = run.trainer->TrainStep();
      ASSERT_TRUE(r.ok()) << r.status();
      EXPECT_GT(r->grad_norm, 0) << "stage " << stage << " step " << i;
      if (stage == 0) {
        reference.push_back(r->loss);
      } else {
        EXPECT_EQ(r->loss, reference[i]) << "stage " << stage << " step " << i;
      }
    }
  }
}

TEST(TrainerTest, LearnsTheSyntheticCorpus) {
  auto sets = TinyModel();
  sets.push_back("optimizer.lr=0.003");
  TrainerRun run = MakeRun(sets);
  double first = 0, last = 0;
  for (int i = 0; i < 60; ++i) {
    auto r = run.trainer->TrainStep();
    ASSERT_TRUE(r.ok()) << r.status();
    if (i == 0) first = r->loss;
    last = r->loss;
  }
  ASSERT_TRUE(run.trainer->entropy_floor().has_value());
  // From ln(64) ~ 4.16 at the start most of the way to the entropy floor.
  EXPECT_GT(first, 3.9);
  EXPECT_LT(last, 0.5 * (first + *run.trainer->entropy_floor()));
}

TEST(TrainerTest, Bf16TrainsWithoutScaling) {
  auto sets = TinyModel();
  sets.push_back("precision.dtype=BF16");
  TrainerRun run = MakeRun(sets);
  for (int i = 0; i < 5; ++i) {
    auto r = run.trainer->TrainStep();
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_FALSE(r->skipped);
    EXPECT_EQ(r->loss_scale, 1.0);
  }
  EXPECT_TRUE(AllFinite(Master(*run.trainer)));
}

}  // namespace
}  // namespace zt
