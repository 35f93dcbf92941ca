#include "trainer/config.h"

#include <cstdlib>
#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"

namespace zt {
namespace {

using ::testing::HasSubstr;

std::string TempPath(const std::string& name) {
  const char* dir = std::getenv("TEST_TMPDIR");
  return std::string(dir ? dir : "/tmp") + "/" + name;
}

std::string WriteFile(const std::string& name, const std::string& text) {
  const std::string path = TempPath(name);
  std::ofstream(path) << text;
  return path;
}

TEST(ConfigTest, GoodFileLoadsAndKeepsDefaultsForUnsetFields) {
  const std::string path = WriteFile("good.textproto", R"pb(
    # a comment
    model { n_layer: 2 n_embd: 64 }
    precision { dtype: BF16 }
    zero { stage: STAGE_2 }
    data { shards { train_glob: "/data/train_*.bin" } }
  )pb");
  absl::StatusOr<TrainConfig> config = LoadConfig(path);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->model().n_layer(), 2);
  EXPECT_EQ(config->model().n_embd(), 64);
  EXPECT_EQ(config->model().n_head(), 4);  // default
  EXPECT_EQ(config->precision().dtype(), PrecisionConfig::BF16);
  EXPECT_EQ(config->zero().stage(), ZeroConfig::STAGE_2);
  EXPECT_EQ(config->data().shards().train_glob(), "/data/train_*.bin");
  EXPECT_TRUE(ValidateConfig(*config).ok()) << ValidateConfig(*config);
}

TEST(ConfigTest, MissingFileIsNotFoundNamingThePath) {
  const std::string path = TempPath("does_not_exist.textproto");
  absl::StatusOr<TrainConfig> config = LoadConfig(path);
  EXPECT_EQ(config.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(config.status().message()), HasSubstr(path));
}

TEST(ConfigTest, UnknownFieldReportsFileLineAndColumn) {
  const std::string path = WriteFile("unknown.textproto",
                                     "model {\n"
                                     "  n_layer: 2\n"
                                     "  n_layers: 3\n"
                                     "}\n");
  absl::StatusOr<TrainConfig> config = LoadConfig(path);
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(config.status().message()), HasSubstr(path + ":3:"));
  EXPECT_THAT(std::string(config.status().message()), HasSubstr("n_layers"));
}

TEST(ConfigTest, BadEnumNameReportsLineAndValue) {
  const std::string path =
      WriteFile("bad_enum.textproto", "\nprecision { dtype: FP8 }\n");
  absl::StatusOr<TrainConfig> config = LoadConfig(path);
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(config.status().message()), HasSubstr(path + ":2:"));
  EXPECT_THAT(std::string(config.status().message()), HasSubstr("FP8"));
}

TEST(ConfigTest, TypeErrorReportsLine) {
  absl::StatusOr<TrainConfig> config =
      ParseConfigText("max_steps: 1\noptimizer { lr: \"fast\" }\n", "cfg");
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(config.status().message()), HasSubstr("cfg:2:"));
  EXPECT_THAT(std::string(config.status().message()), HasSubstr("lr"));
}

TEST(ConfigTest, IntegerOverflowIsATypeError) {
  absl::StatusOr<TrainConfig> config =
      ParseConfigText("max_steps: 99999999999\n", "cfg");
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(config.status().message()), HasSubstr("cfg:1:"));
}

TEST(ConfigTest, DefaultConfigIsValidAndFullyExplicit) {
  const TrainConfig config = DefaultConfig();
  EXPECT_TRUE(ValidateConfig(config).ok()) << ValidateConfig(config);
  EXPECT_TRUE(config.data().has_synthetic());
  EXPECT_TRUE(config.optimizer().has_lr());
  EXPECT_TRUE(config.precision().loss_scaler().has_hysteresis());
  const std::string text = ConfigToText(config);
  EXPECT_THAT(text, HasSubstr("n_layer: 4"));
  EXPECT_THAT(text, HasSubstr("stage: STAGE_0"));
  EXPECT_THAT(text, HasSubstr("loss_scale_window: 1000"));
}

TEST(ConfigTest, ConfigToTextRoundTrips) {
  TrainConfig config = DefaultConfig();
  config.mutable_optimizer()->set_lr(6e-4f);
  config.mutable_precision()->set_dtype(PrecisionConfig::FP16);
  absl::StatusOr<TrainConfig> parsed =
      ParseConfigText(ConfigToText(config), "printed");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_TRUE(
      google::protobuf::util::MessageDifferencer::Equals(*parsed, config));
}

TEST(ConfigTest, ExplicitDefaultsKeepTheChosenDataSource) {
  TrainConfig config;
  config.mutable_data()->mutable_shards()->set_train_glob("x*");
  const TrainConfig full = WithExplicitDefaults(config);
  EXPECT_TRUE(full.data().has_shards());
  EXPECT_FALSE(full.data().has_synthetic());
  EXPECT_EQ(full.data().shards().train_glob(), "x*");
  EXPECT_TRUE(full.data().shards().has_val_glob());
}

TEST(ConfigTest, PaddedVocabIsNextMultipleOf128) {
  EXPECT_EQ(PaddedVocabSize(1), 128);
  EXPECT_EQ(PaddedVocabSize(128), 128);
  EXPECT_EQ(PaddedVocabSize(129), 256);
  EXPECT_EQ(PaddedVocabSize(50257), 50304);
}

void ExpectInvalid(const TrainConfig& config, const std::string& fragment) {
  absl::Status s = ValidateConfig(config);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << fragment;
  EXPECT_THAT(std::string(s.message()), HasSubstr(fragment));
}

TEST(ValidateConfigTest, BetaOfOneNamesFieldAndRange) {
  TrainConfig c = DefaultConfig();
  c.mutable_optimizer()->set_beta1(1.0f);
  ExpectInvalid(c, "optimizer.beta1 = 1 is out of range: must be in [0, 1)");
}

TEST(ValidateConfigTest, NanLearningRateIsRejected) {
  TrainConfig c = DefaultConfig();
  c.mutable_optimizer()->set_lr(std::nanf(""));
  ExpectInvalid(c, "optimizer.lr = nan is out of range: must be in (0, inf)");
}

TEST(ValidateConfigTest, HeadsMustDivideChannels) {
  TrainConfig c = DefaultConfig();
  c.mutable_model()->set_n_head(3);
  ExpectInvalid(c, "model.n_embd (128) must be divisible by model.n_head (3)");
}

TEST(ValidateConfigTest, SeqLenBeyondMaxSeqLenNamesBothLimits) {
  TrainConfig c = DefaultConfig();
  c.mutable_batch()->set_seq_len(65);
  ExpectInvalid(c, "batch.seq_len = 65 is out of range: must be in [1, 64]");
}

TEST(ValidateConfigTest, SyntheticVocabAboveModelVocabIsRejected) {
  TrainConfig c = DefaultConfig();
  c.mutable_data()->mutable_synthetic()->set_vocab_size(100);
  ExpectInvalid(c,
                "data.synthetic.vocab_size = 100 is out of range: must be in "
                "[2, 64]");
}

TEST(ValidateConfigTest, TooManySyntheticStatesIsRejected) {
  TrainConfig c = DefaultConfig();
  c.mutable_model()->set_vocab_size(256);
  c.mutable_data()->mutable_synthetic()->set_vocab_size(256);
  c.mutable_data()->mutable_synthetic()->set_order(3);
  ExpectInvalid(c, "16777216 states is out of range: must be <= 65536");
}

TEST(ValidateConfigTest, MinLossScaleAboveInitialScaleIsRejected) {
  TrainConfig c = DefaultConfig();
  c.mutable_precision()->mutable_loss_scaler()->set_initial_scale_power(2);
  c.mutable_precision()->mutable_loss_scaler()->set_min_loss_scale(8);
  ExpectInvalid(c,
                "precision.loss_scaler.min_loss_scale = 8 is out of range: "
                "must be in (0, 2^initial_scale_power = 4]");
}

TEST(ValidateConfigTest, ShardsNeedATrainGlob) {
  TrainConfig c = DefaultConfig();
  c.mutable_data()->mutable_shards()->set_val_glob("v*");
  ExpectInvalid(c, "data.shards.train_glob");
}

TEST(ValidateConfigTest, ReportsEveryViolation) {
  TrainConfig c = DefaultConfig();
  c.set_max_steps(0);
  c.mutable_zero()->set_reduce_bucket_size(0);
  absl::Status s = ValidateConfig(c);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("max_steps = 0 is out of range"));
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("zero.reduce_bucket_size = 0"));
}

TEST(ApplyOverrideTest, SetsNestedScalarsAndEnums) {
  TrainConfig c = DefaultConfig();
  ASSERT_TRUE(ApplyOverride(&c, "optimizer.lr=1e-4").ok());
  ASSERT_TRUE(ApplyOverride(&c, "precision.loss_scaler.hysteresis=5").ok());
  ASSERT_TRUE(ApplyOverride(&c, "precision.dtype=FP16").ok());
  ASSERT_TRUE(ApplyOverride(&c, "zero.stage=3").ok());
  ASSERT_TRUE(ApplyOverride(&c, "zero.overlap_comm=false").ok());
  ASSERT_TRUE(ApplyOverride(&c, "seed=42").ok());
  ASSERT_TRUE(ApplyOverride(&c, "checkpoint.dir=/tmp/a=b").ok());
  EXPECT_FLOAT_EQ(c.optimizer().lr(), 1e-4f);
  EXPECT_EQ(c.precision().loss_scaler().hysteresis(), 5);
  EXPECT_EQ(c.precision().dtype(), PrecisionConfig::FP16);
  EXPECT_EQ(c.zero().stage(), ZeroConfig::STAGE_3);
  EXPECT_FALSE(c.zero().overlap_comm());
  EXPECT_EQ(c.seed(), 42u);
  EXPECT_EQ(c.checkpoint().dir(), "/tmp/a=b");
}

TEST(ApplyOverrideTest, MessageValueSwitchesTheDataSource) {
  TrainConfig c = DefaultConfig();
  ASSERT_TRUE(
      ApplyOverride(&c, "data.shards={train_glob: \"t*\" val_glob: \"v*\"}")
          .ok());
  EXPECT_TRUE(c.data().has_shards());
  EXPECT_FALSE(c.data().has_synthetic());
  EXPECT_EQ(c.data().shards().val_glob(), "v*");
}

TEST(ApplyOverrideTest, UnknownPathIsRejectedNamingIt) {
  TrainConfig c = DefaultConfig();
  absl::Status s = ApplyOverride(&c, "optimizer.learning_rate=1");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("optimizer.learning_rate"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("'learning_rate'"));

  s = ApplyOverride(&c, "seed.x=1");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("seed is not a message"));
}

TEST(ApplyOverrideTest, MissingEqualsIsRejected) {
  TrainConfig c = DefaultConfig();
  absl::Status s = ApplyOverride(&c, "optimizer.lr");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("optimizer.lr"));
}

TEST(ApplyOverrideTest, BadValuesAreRejectedNamingPathAndType) {
  TrainConfig c = DefaultConfig();
  absl::Status s = ApplyOverride(&c, "model.n_layer=four");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("'four' is not a valid int32 for "
                        "model.n_layer"));

  s = ApplyOverride(&c, "max_steps=3000000000");  // overflows int32
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("max_steps"));

  s = ApplyOverride(&c, "seed=-1");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("uint64 for seed"));

  s = ApplyOverride(&c, "precision.dtype=FP8");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("precision.dtype"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("FP32, FP16, BF16"));

  s = ApplyOverride(&c, "zero.stage=7");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("zero.stage"));

  s = ApplyOverride(&c, "data.synthetic={orderr: 2}");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("orderr"));

  // A failed override leaves the field as it was.
  EXPECT_EQ(c.model().n_layer(), 4);
  EXPECT_EQ(c.precision().dtype(), PrecisionConfig::FP32);
}

TEST(ResolveConfigTest, AppliesOverridesThenValidates) {
  const std::string path =
      WriteFile("resolve.textproto", "optimizer { lr: 1e-3 }\n");
  absl::StatusOr<TrainConfig> c =
      ResolveConfig(path, {"optimizer.warmup_steps=7"});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_FLOAT_EQ(c->optimizer().lr(), 1e-3f);
  EXPECT_EQ(c->optimizer().warmup_steps(), 7);
  EXPECT_TRUE(c->has_eval());

  c = ResolveConfig(path, {"optimizer.beta2=1.5"});
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("optimizer.beta2"));
}

TEST(ResolveConfigTest, EmptyPathMeansDefaultConfig) {
  absl::StatusOr<TrainConfig> c = ResolveConfig("", {});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(
      google::protobuf::util::MessageDifferencer::Equals(*c, DefaultConfig()));
}

// The shipped configs parse, validate, and configs/default.textproto says
// exactly what DefaultConfig() does.
TEST(ShippedConfigsTest, AllValidAndDefaultMatchesDefaultConfig) {
  for (const char* name :
       {"configs/default.textproto", "configs/gpt2_124m.textproto",
        "configs/zero3_multi_gpu.textproto"}) {
    absl::StatusOr<TrainConfig> c = LoadConfig(name);
    ASSERT_TRUE(c.ok()) << c.status();
    EXPECT_TRUE(ValidateConfig(*c).ok()) << name << ": " << ValidateConfig(*c);
  }
  absl::StatusOr<TrainConfig> def = LoadConfig("configs/default.textproto");
  ASSERT_TRUE(def.ok());
  std::string diff;
  google::protobuf::util::MessageDifferencer differencer;
  differencer.ReportDifferencesToString(&diff);
  EXPECT_TRUE(differencer.Compare(*def, DefaultConfig())) << diff;
}

}  // namespace
}  // namespace zt
