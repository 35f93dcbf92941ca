// Host-staged MPI on a GPU fails every collective issued without the stream
// that produced its buffers, while the CPU backends ignore the stream: a
// caller that forgets it passes every CPU test and fails on the first GPU
// run. These tests catch that on the CPU.

#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "core/device.h"
#include "kernels/op_context.h"
#include "trainer/config.h"
#include "trainer/param_layout.h"
#include "trainer/trainer.h"
#include "zero/engine.h"
#include "zero/stream_checking_communicator.h"

namespace zt {
namespace {

std::vector<std::string> TinyModel() {
  return {"model.n_layer=2",       "model.n_head=2",        "model.n_embd=32",
          "model.vocab_size=64",   "model.max_seq_len=16",  "batch.seq_len=16",
          "batch.micro_batch_size=2", "device=CPU",         "eval.batches=1",
          "optimizer.warmup_steps=0", "max_steps=10"};
}

// Two ranks (the second imaginary), so the engine and trainer take their
// multi-rank paths: stage 0's gradient all-reduce, the agreed overflow
// check, the loss all-reduce, all of which one real rank skips.
TEST(CollectiveStreamTest, EveryStageGivesEveryCollectiveTheComputeStream) {
  for (int stage = 0; stage <= 3; ++stage) {
    SCOPED_TRACE("stage " + std::to_string(stage));
    std::vector<std::string> sets = TinyModel();
    sets.push_back("zero.stage=STAGE_" + std::to_string(stage));
    auto config = ResolveConfig("", sets);
    ASSERT_TRUE(config.ok()) << config.status();
    std::unique_ptr<Communicator> comm = NewStreamCheckingCommunicator(2);
    auto trainer = Trainer::Create(*config, comm.get());
    ASSERT_TRUE(trainer.ok()) << trainer.status();
    Trainer& t = **trainer;

    auto step = t.TrainStep();
    ASSERT_TRUE(step.ok()) << step.status();
    // The paths under test ran (the engine resets the counts each step).
    const TrafficStats traffic = comm->traffic();
    EXPECT_GE(traffic[Collective::kAllReduce].calls, stage == 0 ? 2 : 1) << traffic.ToString();
    if (stage > 0) {
      EXPECT_GT(traffic[Collective::kReduceScatter].calls, 0) << traffic.ToString();
      EXPECT_GT(traffic[Collective::kAllGather].calls, 0) << traffic.ToString();
    }
    // Checkpoint loading's all-gather (stages 1 and 2).
    const absl::Status refreshed = t.engine().RefreshParamsFromMaster();
    EXPECT_TRUE(refreshed.ok()) << refreshed;
    auto eval = t.Evaluate();
    EXPECT_TRUE(eval.ok()) << eval.status();
  }
}

// A Stream with a made-up native handle: only compared, never used.
class FakeGpuStream final : public Stream {
 public:
  Device device() const override { return Device::Cuda(0); }
  absl::Status Synchronize() override { return absl::OkStatus(); }
  void* native_handle() const override { return reinterpret_cast<void*>(0x1); }
};

TEST(CollectiveStreamTest, EngineRejectsAStreamOtherThanTheComputeStream) {
  GptShape shape;
  shape.n_layer = 1;
  shape.n_head = 1;
  shape.n_embd = 8;
  shape.vocab_size = 16;
  shape.padded_vocab_size = GptShape::PadVocab(16);
  shape.max_seq_len = 4;
  auto layout = ParamLayout::ForGpt(shape);
  ASSERT_TRUE(layout.ok()) << layout.status();
  std::unique_ptr<Communicator> comm = NewStreamCheckingCommunicator(1);
  std::unique_ptr<Allocator> allocator = NewCpuAllocator();
  FakeGpuStream stream;
  EngineOptions o;
  o.stream = &stream;
  kernels::OpContext ctx;  // ctx.stream is nullptr: a mismatch
  auto engine = ZeroEngine::Create(*layout, o, comm.get(), allocator.get(), ctx);
  ASSERT_FALSE(engine.ok());
  EXPECT_EQ(engine.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(engine.status().message().find("EngineOptions.stream"), std::string::npos)
      << engine.status();
}

}  // namespace
}  // namespace zt
