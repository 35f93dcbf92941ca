// Saving and loading through the Trainer on one rank: bit-exact resume at
// every ZeRO stage and dtype, loading at another stage, the async snapshot,
// and how many checkpoints are kept. Built twice: on the CPU, and with
// ZT_CKPT_TEST_ON_GPU=1 on a GPU (checkpointer_gpu_test), where the state is
// copied between device and host memory.
#include "checkpoint/checkpointer.h"

#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "checkpoint/file_io.h"
#include "checkpoint/format.h"
#include "checkpoint/testutil.h"
#include "glog/logging.h"
#include "gtest/gtest.h"
#include "trainer/config.h"
#include "trainer/trainer.h"
#include "zero/communicator_factory.h"

#if ZT_CKPT_TEST_ON_GPU
#include <cuda_runtime.h>
#endif

namespace zt {
namespace ckpt {
namespace {

#if ZT_CKPT_TEST_ON_GPU
constexpr char kDevice[] = "device=CUDA";
#else
constexpr char kDevice[] = "device=CPU";
#endif

// Host copy of `n` elements of engine memory (device memory on a GPU; the
// trainer's stream is non-blocking, so wait for the whole device first).
template <typename T>
std::vector<T> ToHost(const ZeroEngine& e, const void* src, int64_t n) {
#if ZT_CKPT_TEST_ON_GPU
  CHECK_EQ(cudaDeviceSynchronize(), cudaSuccess);
#endif
  std::vector<T> out(n);
  CHECK(CopyBytes(out.data(), Device::Cpu(), src, e.allocator()->device(),
                  n * sizeof(T), nullptr)
            .ok());
  CHECK(SynchronizeStream(e.allocator()->device(), nullptr).ok());
  return out;
}

const char* const kStages[] = {"STAGE_0", "STAGE_1", "STAGE_2", "STAGE_3"};

TrainConfig Config(const std::string& stage, const std::string& dtype,
                   const std::string& dir) {
  std::vector<std::string> sets = {
      "model.n_layer=2", "model.n_head=2", "model.n_embd=16",
      "model.max_seq_len=16", "batch.micro_batch_size=2", "batch.seq_len=16",
      "batch.grad_accum_steps=2", kDevice, "eval.batches=0",
      "optimizer.warmup_steps=2", "optimizer.weight_decay=0.1", "max_steps=8",
      "zero.stage=" + stage, "precision.dtype=" + dtype,
      // A small fp16 scale window, so the scaler's state moves.
      "precision.loss_scaler={initial_scale_power: 8 loss_scale_window: 2}",
      "checkpoint.dir=" + dir};
  auto c = ResolveConfig("", sets);
  CHECK(c.ok()) << c.status();
  return *c;
}

std::unique_ptr<Communicator> Comm() {
  auto c = CreateCommunicator(CommunicatorBackend::kLocal, Device::Cpu());
  CHECK(c.ok()) << c.status();
  return std::move(*c);
}

struct State {
  std::vector<float> master, m, v;
};

State StateOf(ZeroEngine& e) {
  const int64_t n = e.opt_range().size();
  return {ToHost<float>(e, e.master(), n), ToHost<float>(e, e.moment1(), n),
          ToHost<float>(e, e.moment2(), n)};
}

bool BitwiseEqual(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() &&
         std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

std::vector<double> Steps(Trainer& t, int n) {
  std::vector<double> losses;
  for (int i = 0; i < n; ++i) {
    auto r = t.TrainStep();
    CHECK(r.ok()) << r.status();
    losses.push_back(r->loss);
  }
  return losses;
}

class ResumeTest
    : public ::testing::TestWithParam<std::tuple<const char*, const char*>> {};

TEST_P(ResumeTest, ResumedRunRepeatsTheUninterruptedLossesBitForBit) {
  const auto [stage, dtype] = GetParam();
  const std::string dir =
      testing::NewTempDir(absl::StrCat("resume_", stage, "_", dtype));
  const TrainConfig config = Config(stage, dtype, dir);
  auto comm = Comm();
  std::vector<double> straight;
  {
    auto t = Trainer::Create(config, comm.get());
    ASSERT_TRUE(t.ok()) << t.status();
    straight = Steps(**t, 8);
  }
  {
    auto t = Trainer::Create(config, comm.get());
    ASSERT_TRUE(t.ok()) << t.status();
    Steps(**t, 3);
    ASSERT_TRUE((*t)->SaveCheckpoint().ok());
    ASSERT_TRUE((*t)->FinishCheckpoints().ok());
  }
  TrainerOptions o;
  o.resume = true;
  auto t = Trainer::Create(config, comm.get(), o);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ((*t)->step(), 3);
  const std::vector<double> resumed = Steps(**t, 5);
  for (int i = 0; i < 5; ++i) {
    // Exact: equal doubles, not nearly equal.
    EXPECT_EQ(resumed[i], straight[3 + i]) << "step " << 4 + i;
  }
}

INSTANTIATE_TEST_SUITE_P(
    EveryStageAndDtype, ResumeTest,
    ::testing::Combine(::testing::ValuesIn(kStages),
                       ::testing::Values("FP32", "BF16", "FP16")));

TEST(CheckpointerTest, LoadsAtAnyStageWithIdenticalMasterAndMoments) {
  const std::string dir = testing::NewTempDir("stages");
  auto comm = Comm();
  State saved;
  {
    auto t = Trainer::Create(Config("STAGE_2", "BF16", dir), comm.get());
    ASSERT_TRUE(t.ok()) << t.status();
    Steps(**t, 3);
    ASSERT_TRUE((*t)->SaveCheckpoint().ok());
    ASSERT_TRUE((*t)->FinishCheckpoints().ok());
    saved = StateOf((*t)->engine());
  }
  for (const char* stage : {"STAGE_3", "STAGE_1", "STAGE_0"}) {
    TrainerOptions o;
    o.resume_from = dir;
    auto t = Trainer::Create(Config(stage, "BF16", dir + "_unused"),
                             comm.get(), o);
    ASSERT_TRUE(t.ok()) << stage << ": " << t.status();
    const State loaded = StateOf((*t)->engine());
    EXPECT_TRUE(BitwiseEqual(loaded.master, saved.master)) << stage;
    EXPECT_TRUE(BitwiseEqual(loaded.m, saved.m)) << stage;
    EXPECT_TRUE(BitwiseEqual(loaded.v, saved.v)) << stage;
    // The working parameters are the bf16 rounding of the loaded master.
    const std::vector<uint16_t> p =
        ToHost<uint16_t>((*t)->engine(), (*t)->engine().parameters(), 100);
    for (int64_t i = 0; i < 100; ++i) {
      EXPECT_EQ(p[i], FloatToBFloat16Bits(saved.master[i])) << stage;
    }
    EXPECT_EQ((*t)->step(), 3);
    EXPECT_EQ((*t)->adam_steps(), 3);
    auto r = (*t)->TrainStep();
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_TRUE(std::isfinite(r->loss));
  }
}

TEST(CheckpointerTest, AsyncSaveWritesTheStateAtTheTimeOfTheCall) {
  const std::string dir = testing::NewTempDir("snapshot");
  auto comm = Comm();
  auto t = Trainer::Create(Config("STAGE_1", "FP32", dir), comm.get());
  ASSERT_TRUE(t.ok()) << t.status();
  Steps(**t, 2);
  const State at_save = StateOf((*t)->engine());
  const DataPosition position = (*t)->train_data().position();
  ASSERT_TRUE((*t)->SaveCheckpoint().ok());
  // Training changes the state while the write may still be running.
  Steps(**t, 2);
  ASSERT_TRUE((*t)->FinishCheckpoints().ok());
  EXPECT_EQ((*t)->checkpoint_writer()->last_committed_step(), 2);

  auto reader = CheckpointReader::Open(JoinPath(dir, "step_2"));
  ASSERT_TRUE(reader.ok()) << reader.status();
  const int64_t n = reader->manifest().numel();
  State read{std::vector<float>(n), std::vector<float>(n),
             std::vector<float>(n)};
  ASSERT_TRUE(
      reader->Read({0, n}, read.master.data(), read.m.data(), read.v.data())
          .ok());
  EXPECT_TRUE(BitwiseEqual(read.master, at_save.master));
  EXPECT_TRUE(BitwiseEqual(read.m, at_save.m));
  EXPECT_TRUE(BitwiseEqual(read.v, at_save.v));
  EXPECT_EQ(reader->manifest().step(), 2);
  EXPECT_EQ(reader->manifest().adam_steps(), 2);
  EXPECT_EQ(reader->manifest().data(0).offset(), position.offset);
  EXPECT_EQ(reader->manifest().world_size(), 1);
  EXPECT_EQ(reader->manifest().stage(), 1);
  EXPECT_EQ(reader->manifest().config().zero().stage(), ZeroConfig::STAGE_1);
}

TEST(CheckpointerTest, KeepsOnlyTheNewestCheckpoints) {
  const std::string dir = testing::NewTempDir("keep");
  TrainConfig config = Config("STAGE_0", "FP32", dir);
  config.mutable_checkpoint()->set_keep(2);
  auto comm = Comm();
  auto t = Trainer::Create(config, comm.get());
  ASSERT_TRUE(t.ok()) << t.status();
  for (int i = 0; i < 5; ++i) {
    Steps(**t, 1);
    ASSERT_TRUE((*t)->SaveCheckpoint().ok());
  }
  ASSERT_TRUE((*t)->FinishCheckpoints().ok());
  auto names = ListDirectory(dir);
  ASSERT_TRUE(names.ok());
  std::sort(names->begin(), names->end());
  EXPECT_EQ(*names, (std::vector<std::string>{"latest", "step_4", "step_5"}));
  auto latest = FindLatest(dir);
  ASSERT_TRUE(latest.ok() && latest->has_value());
  EXPECT_EQ(**latest, JoinPath(dir, "step_5"));
}

TEST(CheckpointerTest, ResumeWithNothingCommittedStartsAtStepZero) {
  const std::string dir = testing::NewTempDir("fresh");
  auto comm = Comm();
  TrainerOptions o;
  o.resume = true;
  auto t = Trainer::Create(Config("STAGE_0", "FP32", dir), comm.get(), o);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ((*t)->step(), 0);
}

TEST(CheckpointerTest, ResumeFromAMissingDirectoryIsNotFound) {
  const std::string dir = testing::NewTempDir("missing");
  auto comm = Comm();
  TrainerOptions o;
  o.resume_from = dir + "/step_9";
  auto t = Trainer::Create(Config("STAGE_0", "FP32", dir), comm.get(), o);
  EXPECT_EQ(t.status().code(), absl::StatusCode::kNotFound) << t.status();
  EXPECT_TRUE(absl::StrContains(t.status().message(), dir + "/step_9"))
      << t.status();
}

TEST(CheckpointerTest, SaveWithoutADirectoryIsFailedPrecondition) {
  auto comm = Comm();
  TrainConfig config = Config("STAGE_0", "FP32", "");
  auto t = Trainer::Create(config, comm.get());
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ((*t)->SaveCheckpoint().code(),
            absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace ckpt
}  // namespace zt
