#ifndef ZEROTRAIN_CHECKPOINT_TESTUTIL_H_
#define ZEROTRAIN_CHECKPOINT_TESTUTIL_H_

// Helpers for tests that run the `train` binary and inspect checkpoints.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace zt {
namespace ckpt {
namespace testing {

struct ProcessResult {
  bool exited = false;    // exited normally (then exit_code is valid)
  int exit_code = -1;
  int signal = 0;         // the terminating signal otherwise
  std::string output;     // stdout and stderr together
};

// Runs argv[0] with `argv`, the environment plus `env`, capturing output.
ProcessResult RunProcess(const std::vector<std::string>& argv,
                         const std::map<std::string, std::string>& env = {});

// A unique fresh directory under $TEST_TMPDIR.
std::string NewTempDir(const std::string& name);

// --set flags for a tiny CPU run (2 layers, 16 channels, 2x16 tokens per
// step) that trains in milliseconds, logging every step's loss to
// `metrics_jsonl` and saving into `ckpt_dir` every `interval` steps.
std::vector<std::string> TinyRunArgs(const std::string& train_binary,
                                     int max_steps,
                                     const std::string& metrics_jsonl,
                                     const std::string& ckpt_dir, int interval,
                                     int keep = 3);

// step -> the loss exactly as logged (shortest round-trip decimal, so equal
// strings are bitwise-equal doubles).
std::map<int64_t, std::string> ReadLosses(const std::string& metrics_jsonl);

// Relative path -> contents of every file under `dir`.
std::map<std::string, std::string> ReadTree(const std::string& dir);

std::string ReadFileOrDie(const std::string& path);
void WriteFileOrDie(const std::string& path, const std::string& contents);

}  // namespace testing
}  // namespace ckpt
}  // namespace zt

#endif  // ZEROTRAIN_CHECKPOINT_TESTUTIL_H_
