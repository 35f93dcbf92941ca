#include "trainer/metrics.h"

#include <fcntl.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace zt {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

std::string TestPath(const std::string& name) {
  return absl::StrCat(testing::TempDir(), "/metrics_", name, "_", getpid());
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string ReadAll(std::FILE* f) {
  std::fflush(f);
  std::rewind(f);
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) out.append(buf, n);
  return out;
}

StepMetrics Sample(int64_t step) {
  StepMetrics m;
  m.step = step;
  m.loss = 3.25;
  m.lr = 6e-4;
  m.grad_norm = 0.5;
  m.loss_scale = 65536;
  m.tokens_per_s = 12345.5;
  m.mfu = 0.125;
  m.peak_memory_bytes = 3ll << 30;
  return m;
}

TEST(JsonNumberTest, NonFiniteIsNullAndFiniteRoundTrips) {
  EXPECT_EQ(JsonNumber(kNaN), "null");
  EXPECT_EQ(JsonNumber(kInf), "null");
  EXPECT_EQ(JsonNumber(-kInf), "null");
  EXPECT_EQ(JsonNumber(3.0), "3");
  EXPECT_EQ(JsonNumber(0.1), "0.1");
  EXPECT_EQ(JsonNumber(6e-4), "6e-04");  // Shortest form; valid JSON.
  const double third = 1.0 / 3.0;
  EXPECT_EQ(std::strtod(JsonNumber(third).c_str(), nullptr), third);
  EXPECT_EQ(std::strtod(JsonNumber(1e-300).c_str(), nullptr), 1e-300);
}

TEST(FormatStepJsonTest, FixedKeysInOrderThenExtrasSorted) {
  StepMetrics m = Sample(12);
  m.skipped = true;
  m.extras = {{"mem_params", 1024}, {"comm_elements", 7}};
  EXPECT_EQ(FormatStepJson(m),
            "{\"step\":12,\"loss\":3.25,\"lr\":6e-04,\"grad_norm\":0.5,"
            "\"loss_scale\":65536,\"skipped\":true,\"tokens_per_s\":12345.5,"
            "\"mfu\":0.125,\"peak_memory_bytes\":3221225472,"
            "\"comm_elements\":7,\"mem_params\":1024}");
}

TEST(FormatStepJsonTest, NaNAndInfBecomeNull) {
  StepMetrics m = Sample(1);
  m.loss = kNaN;
  m.grad_norm = kInf;
  const std::string json = FormatStepJson(m);
  EXPECT_TRUE(absl::StrContains(json, "\"loss\":null,")) << json;
  EXPECT_TRUE(absl::StrContains(json, "\"grad_norm\":null,")) << json;
  EXPECT_FALSE(absl::StrContains(json, "nan")) << json;
  EXPECT_FALSE(absl::StrContains(json, "inf")) << json;
}

TEST(FormatEvalJsonTest, StepAndValLoss) {
  EXPECT_EQ(FormatEvalJson(100, 2.5), "{\"step\":100,\"val_loss\":2.5}");
  EXPECT_EQ(FormatEvalJson(100, kNaN), "{\"step\":100,\"val_loss\":null}");
}

TEST(EtaTest, ExtrapolatesObservedRate) {
  EXPECT_DOUBLE_EQ(EstimateEtaSeconds(0, absl::Seconds(10), 10, 100), 90.0);
  EXPECT_DOUBLE_EQ(EstimateEtaSeconds(10, absl::Seconds(4), 20, 30), 4.0);
  EXPECT_EQ(EstimateEtaSeconds(5, absl::Seconds(3), 5, 100), -1.0);
  EXPECT_EQ(EstimateEtaSeconds(0, absl::Seconds(3), 5, 0), -1.0);
  EXPECT_EQ(EstimateEtaSeconds(0, absl::Seconds(3), 100, 100), 0.0);
}

TEST(FormatDurationTest, PicksUnitsByMagnitude) {
  EXPECT_EQ(FormatDuration(45.2), "45s");
  EXPECT_EQ(FormatDuration(187), "3m07s");
  EXPECT_EQ(FormatDuration(7500), "2h05m");
  EXPECT_EQ(FormatDuration(-1), "0s");
}

TEST(FormatStepLineTest, ShowsEveryFieldAndMarksSkippedSteps) {
  StepMetrics m = Sample(12);
  const std::string line = FormatStepLine(m, 100, 90);
  EXPECT_EQ(line,
            "step 12/100 | loss 3.2500 | lr 6.000e-04 | grad norm 0.500 | "
            "scale 65536 | 12346 tok/s | mfu 12.5% | peak mem 3.00 GiB | "
            "eta 1m30s");
  m.skipped = true;
  EXPECT_TRUE(absl::EndsWith(FormatStepLine(m, 0, -1), "| SKIPPED (overflow)"));
  EXPECT_FALSE(absl::StrContains(FormatStepLine(m, 0, -1), "eta"));
}

TEST(FormatProgressBarTest, FillsInProportionToProgress) {
  StepMetrics m = Sample(25);
  EXPECT_EQ(FormatProgressBar(m, 100, 75, 8),
            "[##......] 25/100  25% | loss 3.2500 | 12346 tok/s | eta 1m15s");
  m.step = 100;
  EXPECT_TRUE(
      absl::StartsWith(FormatProgressBar(m, 100, 0, 4), "[####] 100/100 100%"));
}

TEST(MetricsLoggerTest, BadOptionsAreInvalidArgument) {
  MetricsOptions options;
  options.console = nullptr;
  options.print_every = 0;
  auto logger = MetricsLogger::Create(options);
  EXPECT_EQ(logger.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(logger.status().message(), "print_every"));
}

TEST(MetricsLoggerTest, ExtrasKeyClashingWithFieldIsRejected) {
  MetricsOptions options;
  options.console = nullptr;
  auto logger = MetricsLogger::Create(options);
  ASSERT_TRUE(logger.ok());
  StepMetrics m = Sample(1);
  m.extras["loss"] = 1.0;
  const absl::Status s = (*logger)->Log(m);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(s.message(), "'loss'")) << s;
}

TEST(MetricsLoggerTest, JsonlGetsOneLinePerCallAndResumeAppends) {
  const std::string path = TestPath("jsonl") + "/run/metrics.jsonl";
  MetricsOptions options;
  options.jsonl_path = path;
  options.console = nullptr;
  {
    auto logger = MetricsLogger::Create(options);
    ASSERT_TRUE(logger.ok()) << logger.status();
    ASSERT_TRUE((*logger)->Log(Sample(1)).ok());
    // Flushed per line: visible before the logger closes.
    EXPECT_EQ(ReadFile(path), FormatStepJson(Sample(1)) + "\n");
    ASSERT_TRUE((*logger)->LogEval(1, 3.0).ok());
  }
  {
    auto logger = MetricsLogger::Create(options);
    ASSERT_TRUE(logger.ok()) << logger.status();
    ASSERT_TRUE((*logger)->Log(Sample(2)).ok());
  }
  const std::vector<std::string> lines =
      absl::StrSplit(ReadFile(path), '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0], FormatStepJson(Sample(1)));
  EXPECT_EQ(lines[1], "{\"step\":1,\"val_loss\":3}");
  EXPECT_EQ(lines[2], FormatStepJson(Sample(2)));
}

TEST(MetricsLoggerTest, JsonlPathThatIsADirectoryIsInvalidArgument) {
  const std::string dir = TestPath("isdir");
  ASSERT_TRUE(CreateDirectories(dir).ok());
  MetricsOptions options;
  options.jsonl_path = dir;
  options.console = nullptr;
  auto logger = MetricsLogger::Create(options);
  EXPECT_EQ(logger.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(logger.status().message(), dir))
      << logger.status();
}

TEST(MetricsLoggerTest, TensorBoardDirThatIsAFileIsInvalidArgument) {
  const std::string base = TestPath("tbfile");
  ASSERT_TRUE(CreateDirectories(base).ok());
  const std::string file = base + "/events";
  std::ofstream(file) << "x";
  MetricsOptions options;
  options.tensorboard_dir = file;
  options.console = nullptr;
  auto logger = MetricsLogger::Create(options);
  EXPECT_EQ(logger.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(logger.status().message(), file))
      << logger.status();
}

TEST(MetricsLoggerTest, TensorBoardFileIsCreatedInDir) {
  const std::string dir = TestPath("tb") + "/logs";
  MetricsOptions options;
  options.tensorboard_dir = dir;
  options.console = nullptr;
  auto logger = MetricsLogger::Create(options);
  ASSERT_TRUE(logger.ok()) << logger.status();
  EXPECT_TRUE(absl::StartsWith((*logger)->tensorboard_file(),
                               dir + "/events.out.tfevents."));
  EXPECT_TRUE((*logger)->Log(Sample(1)).ok());
  EXPECT_TRUE((*logger)->LogEval(1, 2.0).ok());
}

TEST(MetricsLoggerTest, NonTerminalPrintsLinesEveryNthAndLastStep) {
  std::FILE* console = std::tmpfile();
  ASSERT_NE(console, nullptr);
  MetricsOptions options;
  options.console = console;
  options.progress_bar = true;  // Ignored: a file is no terminal.
  options.total_steps = 7;
  options.print_every = 3;
  {
    auto logger = MetricsLogger::Create(options);
    ASSERT_TRUE(logger.ok());
    EXPECT_FALSE((*logger)->uses_progress_bar());
    for (int step = 1; step <= 7; ++step) {
      ASSERT_TRUE((*logger)->Log(Sample(step)).ok());
    }
    ASSERT_TRUE((*logger)->LogEval(7, 2.5).ok());
  }
  const std::vector<std::string> lines =
      absl::StrSplit(ReadAll(console), '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_TRUE(absl::StartsWith(lines[0], "step 3/7 | loss 3.2500")) << lines[0];
  EXPECT_TRUE(absl::StartsWith(lines[1], "step 6/7 |")) << lines[1];
  EXPECT_TRUE(absl::StartsWith(lines[2], "step 7/7 |")) << lines[2];
  EXPECT_EQ(lines[3], "eval step 7 | val loss 2.5000");
  std::fclose(console);
}

TEST(MetricsLoggerTest, TerminalGetsRedrawnProgressBar) {
  const int master = posix_openpt(O_RDWR | O_NOCTTY);
  ASSERT_GE(master, 0) << "no pseudo-terminal available";
  ASSERT_EQ(grantpt(master), 0);
  ASSERT_EQ(unlockpt(master), 0);
  const int slave = open(ptsname(master), O_RDWR | O_NOCTTY);
  ASSERT_GE(slave, 0);
  std::FILE* console = fdopen(slave, "w");
  ASSERT_NE(console, nullptr);

  MetricsOptions options;
  options.console = console;
  options.total_steps = 4;
  {
    auto logger = MetricsLogger::Create(options);
    ASSERT_TRUE(logger.ok());
    EXPECT_TRUE((*logger)->uses_progress_bar());
    ASSERT_TRUE((*logger)->Log(Sample(1)).ok());
    ASSERT_TRUE((*logger)->Log(Sample(2)).ok());
    ASSERT_TRUE((*logger)->LogEval(2, 2.5).ok());
    ASSERT_TRUE((*logger)->Log(Sample(3)).ok());
    ASSERT_TRUE((*logger)->Log(Sample(4)).ok());
  }
  std::fclose(console);

  fcntl(master, F_SETFL, fcntl(master, F_GETFL) | O_NONBLOCK);
  std::string screen;
  char buf[4096];
  ssize_t n;
  while ((n = read(master, buf, sizeof(buf))) > 0) screen.append(buf, n);
  close(master);

  EXPECT_TRUE(absl::StrContains(screen, "\r[" + std::string(7, '#'))) << screen;
  EXPECT_TRUE(absl::StrContains(screen, "2/4  50%")) << screen;
  // The rate is known from the second step on.
  EXPECT_TRUE(absl::StrContains(screen, "| eta ")) << screen;
  EXPECT_TRUE(
      absl::StrContains(screen, "\r\x1b[Keval step 2 | val loss 2.5000"))
      << screen;
  // Finished bar ends its line; no per-step lines in bar mode.
  EXPECT_TRUE(absl::StrContains(screen, "4/4 100%")) << screen;
  EXPECT_FALSE(absl::StrContains(screen, "grad norm")) << screen;
  EXPECT_EQ(screen.back(), '\n') << screen;
}

}  // namespace
}  // namespace zt
