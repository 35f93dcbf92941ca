// memory_estimator: memory per rank for each ZeRO stage.
//
//   memory_estimator --params=7.5e9 --world_size=64
//   memory_estimator --config=configs/gpt2_124m.textproto --world_size=8
//
// See tools/memory_estimate.h for the formulas and what they assume.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "tools/memory_estimate.h"

int main(int argc, char** argv) {
  // Under `bazel run` the process starts in its runfiles tree; a relative
  // --config means the user's directory.
  if (const char* wd = std::getenv("BUILD_WORKING_DIRECTORY");
      wd != nullptr && *wd) {
    if (chdir(wd) != 0) {
      std::fprintf(
          stderr,
          "memory_estimator: error: cannot enter BUILD_WORKING_DIRECTORY %s\n",
          wd);
      return 1;
    }
  }
  const std::vector<std::string> args(argv + 1, argv + argc);
  const absl::StatusOr<std::string> report = zt::RunMemoryEstimator(args);
  if (!report.ok()) {
    std::fprintf(stderr, "memory_estimator: error: %s\n",
                 report.status().ToString().c_str());
    if (report.status().code() == absl::StatusCode::kInvalidArgument) {
      std::fputs(zt::kMemoryEstimatorUsage, stderr);
      return 2;
    }
    return 1;
  }
  std::fputs(report->c_str(), stdout);
  return 0;
}
