#include "tools/memory_estimate.h"

#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "glog/logging.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "core/device.h"
#include "trainer/config.h"
#include "trainer/trainer.h"
#include "zero/communicator.h"
#include "zero/engine.h"
#include "zero/local_communicator.h"

namespace zt {
namespace {

using ::testing::HasSubstr;

// Rank `rank` of `world` for allocation only: the engine's Setup issues no
// collective, so every Do* keeps the base class's "unsupported" answer.
class AllocationOnlyCommunicator final : public Communicator {
 public:
  AllocationOnlyCommunicator(int rank, int world)
      : Communicator("allocation-only", rank, world, Device::Cpu()) {}
};

ParamLayout TinyLayout() {
  GptShape s;
  s.n_layer = 2;
  s.n_head = 2;
  s.n_embd = 16;
  s.vocab_size = 50;
  s.padded_vocab_size = GptShape::PadVocab(50);
  s.max_seq_len = 8;
  auto layout = ParamLayout::ForGpt(s);
  CHECK(layout.ok()) << layout.status();
  return *layout;
}

TEST(MemoryEstimateTest, ReproducesZeroPaperExample) {
  // ZeRO paper, Figure 1: 7.5B parameters, 64 ranks, mixed-precision Adam.
  const MemoryEstimate e =
      EstimateFromParamCount(7'500'000'000, 64, DType::kFloat16);
  EXPECT_EQ(e.stages[0].total(), 120'000'000'000);
  EXPECT_EQ(e.stages[1].total(), 31'406'250'000);
  EXPECT_EQ(e.stages[2].total(), 16'640'625'000);
  EXPECT_EQ(e.stages[3].total(), 1'875'000'000);
  const std::string out = FormatEstimate(e);
  EXPECT_THAT(out, HasSubstr("120.0 GB"));
  EXPECT_THAT(out, HasSubstr("31.4 GB"));
  EXPECT_THAT(out, HasSubstr("16.6 GB"));
  EXPECT_THAT(out, HasSubstr("1.9 GB"));
  EXPECT_THAT(out, HasSubstr("111.8 GiB"));  // 120e9 / 2^30
  EXPECT_THAT(out, HasSubstr("16 Psi/N"));
  EXPECT_THAT(out, HasSubstr("not estimated"));  // activations
}

TEST(MemoryEstimateTest, CommandLineReproducesZeroPaperExample) {
  auto out = RunMemoryEstimator({"--params=7.5e9", "--world_size=64"});
  ASSERT_TRUE(out.ok()) << out.status();
  for (const char* want : {"120.0 GB", "31.4 GB", "16.6 GB", "1.9 GB",
                           "4 Psi + 12 Psi/N", "2 Psi + 14 Psi/N"}) {
    EXPECT_THAT(*out, HasSubstr(want));
  }
}

TEST(MemoryEstimateTest, Fp32CountsTwentyBytesPerParameter) {
  const MemoryEstimate e = EstimateFromParamCount(1000, 4, DType::kFloat32);
  EXPECT_EQ(e.stages[0].total(), 20 * 1000);
  EXPECT_EQ(e.stages[1].total(), 8 * 1000 + 12 * 250);
  EXPECT_EQ(e.stages[2].total(), 4 * 1000 + 16 * 250);
  EXPECT_EQ(e.stages[3].total(), 20 * 250);
  EXPECT_THAT(FormatEstimate(e), HasSubstr("20 bytes per parameter"));
}

TEST(MemoryEstimateTest, ShardsArePaddedToCeilPsiOverN) {
  // 10 parameters on 3 ranks: shards of 4 (the last holds 2 of padding).
  const ModelStateBytes b = ModelStatesPerRank(10, 3, 3, DType::kBFloat16);
  EXPECT_EQ(b.parameters, 4 * 2);
  EXPECT_EQ(b.gradients, 4 * 2);
  EXPECT_EQ(b.optimizer, 4 * 12);
  EXPECT_THAT(FormatEstimate(EstimateFromParamCount(10, 3, DType::kBFloat16)),
              HasSubstr("ceil(10 / 3) = 4 parameters per shard (padded"));
}

// The estimator against what the engine really allocates, on every rank of
// world sizes that do and do not divide Psi.
TEST(MemoryEstimateTest, MatchesEngineAllocationOnEveryRank) {
  const ParamLayout layout = TinyLayout();
  ASSERT_NE(layout.numel() % 3, 0) << "want a world size that pads";
  for (DType dtype : {DType::kFloat32, DType::kFloat16, DType::kBFloat16}) {
    for (int world : {1, 2, 3, 4}) {
      for (int stage = 0; stage < 4; ++stage) {
        for (int rank = 0; rank < world; ++rank) {
          SCOPED_TRACE(absl::StrCat(DTypeName(dtype), " N=", world, " stage ",
                                    stage, " rank ", rank));
          AllocationOnlyCommunicator comm(rank, world);
          auto allocator = NewAllocator(Device::Cpu());
          ASSERT_TRUE(allocator.ok());
          EngineOptions o;
          o.stage = stage;
          o.dtype = dtype;
          kernels::OpContext ctx;
          auto engine =
              ZeroEngine::Create(layout, o, &comm, allocator->get(), ctx);
          ASSERT_TRUE(engine.ok()) << engine.status();
          const ModelStateBytes want =
              ModelStatesPerRank(layout.numel(), world, stage, dtype);
          const MemoryStats s = (*allocator)->Stats();
          EXPECT_EQ(s.Live(MemoryCategory::kParameters), want.parameters);
          EXPECT_EQ(s.Live(MemoryCategory::kGradients), want.gradients);
          EXPECT_EQ(s.Live(MemoryCategory::kMasterWeights) +
                        s.Live(MemoryCategory::kOptimizerStates),
                    want.optimizer);
          EXPECT_EQ((*engine)->ModelStateBytes(), want.total());
          EXPECT_EQ(s.Live(MemoryCategory::kCommBuffers),
                    CommBuffersPerRank(layout, world, stage, dtype));
        }
      }
    }
  }
}

std::string WriteConfig(const std::string& name, const std::string& text) {
  const std::string path = absl::StrCat(std::getenv("TEST_TMPDIR"), "/", name);
  std::ofstream(path) << text;
  return path;
}

constexpr char kTinyConfig[] = R"pb(
  model { n_layer: 2 n_head: 2 n_embd: 32 vocab_size: 100 max_seq_len: 16 }
  batch { micro_batch_size: 3 seq_len: 12 }
  precision { dtype: FP16 }
  zero { stage: STAGE_2 }
  eval { batches: 0 }
  device: CPU
)pb";

TEST(MemoryEstimateTest, ConfigPathCountsParametersExactly) {
  const std::string path = WriteConfig("tiny.textproto", kTinyConfig);
  auto out =
      RunMemoryEstimator({absl::StrCat("--config=", path), "--world_size=3"});
  ASSERT_TRUE(out.ok()) << out.status();
  // Vp = 128; C = 32: wte 4096 + wpe 512 + 2 blocks x 12704 + ln_f 64.
  const int64_t psi = 4096 + 512 + 2 * 12704 + 64;
  auto config = ResolveConfig(path, {});
  ASSERT_TRUE(config.ok());
  auto e = EstimateFromConfig(*config, 3);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->num_params, psi);
  EXPECT_EQ(e->dtype, DType::kFloat16);
  EXPECT_EQ(e->shard, (psi + 2) / 3);
  EXPECT_EQ(e->configured_stage, 2);
  EXPECT_THAT(*out, HasSubstr(absl::StrCat(psi, " parameters (Psi), 3 ranks")));
  EXPECT_THAT(*out, HasSubstr("<- zero.stage"));
  EXPECT_THAT(*out, HasSubstr("Activations per rank, any stage"));
  EXPECT_THAT(*out, HasSubstr("one micro-batch of 3 x 12 tokens"));
}

TEST(MemoryEstimateTest, ConfigOverridesApply) {
  const std::string path = WriteConfig("tiny_set.textproto", kTinyConfig);
  auto e1 = RunMemoryEstimator({absl::StrCat("--config=", path),
                                "--set=model.n_layer=1", "--world_size=2"});
  ASSERT_TRUE(e1.ok()) << e1.status();
  EXPECT_THAT(*e1, HasSubstr(absl::StrCat(4096 + 512 + 12704 + 64,
                                          " parameters (Psi)")));
}

// A real run's allocator, world size 1, against the estimate of its config.
TEST(MemoryEstimateTest, MatchesTrainerAllocation) {
  for (const char* dtype : {"FP32", "FP16"}) {
    SCOPED_TRACE(dtype);
    const std::string path = WriteConfig("trainer.textproto", kTinyConfig);
    auto config = ResolveConfig(
        path, {absl::StrCat("precision.dtype=", dtype), "zero.stage=STAGE_3"});
    ASSERT_TRUE(config.ok()) << config.status();
    auto comm = CreateLocalCommunicator();
    ASSERT_TRUE(comm.ok());
    auto trainer = Trainer::Create(*config, comm->get());
    ASSERT_TRUE(trainer.ok()) << trainer.status();
    auto e = EstimateFromConfig(*config, 1);
    ASSERT_TRUE(e.ok());
    const MemoryStats s = (*trainer)->allocator().Stats();
    EXPECT_EQ((*trainer)->engine().ModelStateBytes(), e->stages[3].total());
    EXPECT_EQ(s.Live(MemoryCategory::kCommBuffers), (*e->comm_buffers)[3]);
    EXPECT_EQ((*trainer)->model().activation_bytes(), e->activations->total());
    EXPECT_EQ(s.Live(MemoryCategory::kActivations),
              e->activations->total() - e->activations->workspace);
    // And after a step, nothing in these categories has grown.
    ASSERT_TRUE((*trainer)->TrainStep().ok());
    const MemoryStats after = (*trainer)->allocator().Stats();
    EXPECT_EQ(after.Peak(MemoryCategory::kActivations),
              s.Live(MemoryCategory::kActivations));
    EXPECT_EQ(after.Peak(MemoryCategory::kParameters) +
                  after.Peak(MemoryCategory::kGradients) +
                  after.Peak(MemoryCategory::kMasterWeights) +
                  after.Peak(MemoryCategory::kOptimizerStates),
              e->stages[3].total());
  }
}

struct BadFlag {
  std::vector<std::string> args;
  absl::StatusCode code;
  std::string culprit;
};

TEST(MemoryEstimateTest, BadFlagsAreErrorsNamingTheFlag) {
  const std::vector<BadFlag> cases = {
      {{"--params=7.5e9"}, absl::StatusCode::kInvalidArgument, "--world_size"},
      {{"--params=7.5e9", "--world_size=0"},
       absl::StatusCode::kInvalidArgument,
       "--world_size=0"},
      {{"--params=7.5e9", "--world_size=two"},
       absl::StatusCode::kInvalidArgument,
       "--world_size=two"},
      {{"--params=7.5e9", "--world_size=2.5"},
       absl::StatusCode::kInvalidArgument,
       "--world_size=2.5"},
      {{"--params=lots", "--world_size=8"},
       absl::StatusCode::kInvalidArgument,
       "--params=lots"},
      {{"--params=-5", "--world_size=8"},
       absl::StatusCode::kInvalidArgument,
       "--params=-5"},
      {{"--params=1.5", "--world_size=8"},
       absl::StatusCode::kInvalidArgument,
       "--params=1.5"},
      {{"--params", "--world_size=8"},
       absl::StatusCode::kInvalidArgument,
       "--params needs a value"},
      {{"--params=1e9", "--world_size=8", "--dtype=int8"},
       absl::StatusCode::kInvalidArgument,
       "--dtype=int8"},
      {{"--params=1e9", "--world_size=8", "--world_size=4"},
       absl::StatusCode::kInvalidArgument,
       "--world_size is given more than once"},
      {{"--params=1e9", "--world_size=8", "--stage=2"},
       absl::StatusCode::kInvalidArgument,
       "--stage=2"},
      {{"--world_size=8"}, absl::StatusCode::kInvalidArgument, "--params"},
      {{"--params=1e9", "--config=x.textproto", "--world_size=8"},
       absl::StatusCode::kInvalidArgument,
       "--params cannot be combined"},
      {{"--config=no/such.textproto", "--world_size=8"},
       absl::StatusCode::kNotFound,
       "no/such.textproto"},
      {{"--config=no/such.textproto", "--world_size=8", "--dtype=fp32"},
       absl::StatusCode::kInvalidArgument,
       "--dtype"},
  };
  for (const BadFlag& c : cases) {
    SCOPED_TRACE(absl::StrJoin(c.args, " "));
    auto out = RunMemoryEstimator(c.args);
    ASSERT_FALSE(out.ok());
    EXPECT_EQ(out.status().code(), c.code) << out.status();
    EXPECT_THAT(out.status().message(), HasSubstr(c.culprit));
  }
  const std::string path = WriteConfig("bad.textproto", kTinyConfig);
  auto out = RunMemoryEstimator({absl::StrCat("--config=", path),
                                 "--set=model.n_wings=3", "--world_size=2"});
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(out.status().message(), HasSubstr("model.n_wings"));
}

}  // namespace
}  // namespace zt
