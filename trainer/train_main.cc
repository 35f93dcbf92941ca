// train: trains a GPT from a text-format config.
//
//   train [--config=FILE] [--set=field.path=value ...] [--resume]
//         [--resume_from=DIR]
//
// With no config it runs the built-in default (a small GPT on the synthetic
// corpus, CPU or GPU). Under mpirun every rank runs this same binary.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "glog/logging.h"
#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "trainer/config.h"
#include "trainer/trainer.h"
#include "zero/communicator_factory.h"
#include "zero/launch_env.h"

namespace zt {
namespace {

constexpr char kUsage[] =
    "usage: train [--config=FILE] [--set=field.path=value ...] "
    "[--print_config]\n"
    "  --config=FILE       text-format TrainConfig (trainer/config.proto); "
    "default: built-in\n"
    "  --set=PATH=VALUE    override one field, e.g. --set=optimizer.lr=1e-3 "
    "(repeatable)\n"
    "  --print_config      print the resolved config and exit\n"
    "  --resume            continue from checkpoint.dir's latest checkpoint "
    "(from step 0 if there is none yet)\n"
    "  --resume_from=DIR   continue from this checkpoint (a step directory or "
    "a checkpoint root)\n";

struct Flags {
  std::string config;
  std::vector<std::string> sets;
  bool print_config = false;
  bool help = false;
  bool resume = false;
  std::string resume_from;
};

absl::StatusOr<Flags> ParseFlags(int argc, char** argv) {
  Flags f;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&](absl::string_view name,
                     std::string* out) -> absl::StatusOr<bool> {
      const std::string eq = absl::StrCat(name, "=");
      if (absl::StartsWith(a, eq)) {
        *out = a.substr(eq.size());
        return true;
      }
      if (a == name) {
        if (i + 1 >= argc)
          return absl::InvalidArgumentError(
              absl::StrCat(name, " needs a value"));
        *out = argv[++i];
        return true;
      }
      return false;
    };
    std::string v;
    ZT_ASSIGN_OR_RETURN(bool is_config, value("--config", &v));
    if (is_config) {
      f.config = v;
      continue;
    }
    ZT_ASSIGN_OR_RETURN(bool is_set, value("--set", &v));
    if (is_set) {
      f.sets.push_back(v);
      continue;
    }
    ZT_ASSIGN_OR_RETURN(bool is_resume_from, value("--resume_from", &v));
    if (is_resume_from) {
      f.resume_from = v;
      continue;
    }
    if (a == "--resume") {
      f.resume = true;
    } else if (a == "--print_config") {
      f.print_config = true;
    } else if (a == "--help" || a == "-h") {
      f.help = true;
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown flag \"", a, "\""));
    }
  }
  return f;
}

absl::Status Main(int argc, char** argv) {
  // Under `bazel run` the process starts in its runfiles tree; relative
  // paths (configs, metrics, checkpoints) mean the user's directory.
  if (const char* wd = std::getenv("BUILD_WORKING_DIRECTORY"); wd != nullptr && *wd) {
    if (chdir(wd) != 0) {
      return absl::NotFoundError(absl::StrCat("cannot enter BUILD_WORKING_DIRECTORY ", wd));
    }
  }
  ZT_ASSIGN_OR_RETURN(Flags flags, ParseFlags(argc, argv));
  if (flags.help) {
    std::fputs(kUsage, stdout);
    return absl::OkStatus();
  }
  ZT_ASSIGN_OR_RETURN(TrainConfig config,
                      ResolveConfig(flags.config, flags.sets));
  if (flags.print_config) {
    std::fputs(ConfigToText(config).c_str(), stdout);
    return absl::OkStatus();
  }
  ZT_ASSIGN_OR_RETURN(LaunchEnv env, DetectLaunchEnv());
  ZT_ASSIGN_OR_RETURN(Device device, ChooseDevice(config, env.local_rank));
  ZT_ASSIGN_OR_RETURN(auto comm,
                      CreateCommunicator(CommunicatorBackend::kAuto, device));
  TrainerOptions options;
  options.resume = flags.resume;
  options.resume_from = flags.resume_from;
  ZT_ASSIGN_OR_RETURN(auto trainer,
                      Trainer::Create(config, comm.get(), options));
  return trainer->Run();
}

}  // namespace
}  // namespace zt

int main(int argc, char** argv) {
  google::InitGoogleLogging(argv[0]);
  FLAGS_logtostderr = true;
  const absl::Status s = zt::Main(argc, argv);
  if (!s.ok()) {
    std::fprintf(stderr, "train: error: %s\n", s.ToString().c_str());
    // Usage helps with a bad command line, not with a bad config value.
    if (absl::StrContains(s.message(), "unknown flag") ||
        absl::StrContains(s.message(), "needs a value")) {
      std::fputs(zt::kUsage, stderr);
    }
    return s.code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
  }
  return 0;
}
