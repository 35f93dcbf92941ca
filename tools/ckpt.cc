// ckpt: inspects, verifies, consolidates and exports sharded checkpoints.
//
//   ckpt inspect DIR [--tensors]      summary (and the tensor table)
//   ckpt verify DIR                   every checksum and file size
//   ckpt consolidate DIR OUT [--weights_only]
//                                     one fp32 safetensors file, our names
//   ckpt export DIR OUT_DIR           Hugging Face GPT-2 model.safetensors
//                                     + config.json
//
// DIR is a step directory or a checkpoint root (its `latest` is used).
// Errors name the file; the exit status is 1 (2 for bad usage).
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "checkpoint/export.h"
#include "checkpoint/format.h"
#include "core/status_macros.h"

namespace zt {
namespace ckpt {
namespace {

constexpr char kUsage[] =
    "usage: ckpt inspect DIR [--tensors]\n"
    "       ckpt verify DIR\n"
    "       ckpt consolidate DIR OUT.safetensors [--weights_only]\n"
    "       ckpt export DIR OUT_DIR\n"
    "DIR: a checkpoint step directory, or a checkpoint root (uses latest)\n";

std::string Bytes(double b) {
  if (b >= (1 << 30)) return absl::StrFormat("%.2f GiB", b / (1 << 30));
  if (b >= (1 << 20)) return absl::StrFormat("%.1f MiB", b / (1 << 20));
  if (b >= (1 << 10)) return absl::StrFormat("%.1f KiB", b / (1 << 10));
  return absl::StrFormat("%.0f B", b);
}

absl::StatusOr<CheckpointReader> Open(const std::string& path) {
  ZT_ASSIGN_OR_RETURN(std::string dir, ResolveCheckpointDir(path));
  return CheckpointReader::Open(dir);
}

absl::Status Inspect(const CheckpointReader& r, bool tensors) {
  const Manifest& m = r.manifest();
  int64_t bytes = 0, ranges = 0;
  for (const ShardFile& s : m.shards()) {
    bytes += s.size_bytes();
    ranges += s.ranges_size();
  }
  std::printf("checkpoint   %s\n", r.dir().c_str());
  std::printf("format       %d\n", m.format_version());
  std::printf("step         %lld (%lld AdamW updates)\n",
              static_cast<long long>(m.step()),
              static_cast<long long>(m.adam_steps()));
  std::printf("model        %s, %lld parameters in %d tensors\n",
              DescribeModel(m).c_str(), static_cast<long long>(m.numel()),
              m.tensors_size());
  std::printf("saved by     %d rank(s), ZeRO stage %d\n", m.world_size(),
              m.stage());
  std::printf("state        fp32 master weights, exp_avg, exp_avg_sq: %s in %d "
              "shard file(s), %lld checksummed ranges\n",
              Bytes(static_cast<double>(bytes)).c_str(), m.shards_size(),
              static_cast<long long>(3 * ranges));
  std::printf("loss scaler  scale %g, iteration %lld, last overflow %lld, "
              "hysteresis left %d\n",
              m.loss_scaler().scale(),
              static_cast<long long>(m.loss_scaler().iteration()),
              static_cast<long long>(m.loss_scaler().last_overflow_iteration()),
              m.loss_scaler().hysteresis_left());
  if (m.data_size() > 0) {
    std::printf("data         shard %lld, token offset %lld (%d rank(s))\n",
                static_cast<long long>(m.data(0).shard_index()),
                static_cast<long long>(m.data(0).offset()), m.data_size());
  }
  std::printf("seed         %llu\n",
              static_cast<unsigned long long>(m.rng_seed()));
  std::printf("\n%-20s %5s %14s %14s %12s %7s\n", "file", "rank", "begin",
              "end", "bytes", "ranges");
  for (const ShardFile& s : m.shards()) {
    std::printf("%-20s %5d %14lld %14lld %12lld %7d\n", s.file().c_str(),
                s.rank(), static_cast<long long>(s.begin()),
                static_cast<long long>(s.end()),
                static_cast<long long>(s.size_bytes()), s.ranges_size());
  }
  if (tensors) {
    std::printf("\n%-32s %-16s %6s %14s %12s\n", "tensor", "shape", "dtype",
                "offset", "elements");
    for (const TensorInfo& t : m.tensors()) {
      std::printf("%-32s %-16s %6s %14lld %12lld\n", t.name().c_str(),
                  absl::StrCat("[", absl::StrJoin(t.shape(), ", "), "]").c_str(),
                  t.dtype().c_str(), static_cast<long long>(t.offset()),
                  static_cast<long long>(t.numel()));
    }
  }
  return absl::OkStatus();
}

absl::Status Main(const std::vector<std::string>& args) {
  if (args.size() < 2) return absl::InvalidArgumentError("missing arguments");
  const std::string& cmd = args[0];
  std::vector<std::string> pos;
  bool tensors = false, weights_only = false;
  for (size_t i = 1; i < args.size(); ++i) {
    if (args[i] == "--tensors") {
      tensors = true;
    } else if (args[i] == "--weights_only") {
      weights_only = true;
    } else if (!args[i].empty() && args[i][0] == '-') {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown flag \"", args[i], "\""));
    } else {
      pos.push_back(args[i]);
    }
  }
  const size_t want = cmd == "inspect" || cmd == "verify" ? 1 : 2;
  if (cmd != "inspect" && cmd != "verify" && cmd != "consolidate" &&
      cmd != "export") {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown command \"", cmd, "\""));
  }
  if (pos.size() != want) {
    return absl::InvalidArgumentError(
        absl::StrCat(cmd, " takes ", want, " path(s)"));
  }
  ZT_ASSIGN_OR_RETURN(CheckpointReader reader, Open(pos[0]));
  if (cmd == "inspect") return Inspect(reader, tensors);
  if (cmd == "verify") {
    ZT_RETURN_IF_ERROR(reader.VerifyAll());
    int64_t bytes = 0, ranges = 0;
    for (const ShardFile& s : reader.manifest().shards()) {
      bytes += s.size_bytes();
      ranges += s.ranges_size();
    }
    std::printf("OK: %s: %d shard file(s), %s, %lld checksums verified\n",
                reader.dir().c_str(), reader.manifest().shards_size(),
                Bytes(static_cast<double>(bytes)).c_str(),
                static_cast<long long>(3 * ranges));
    return absl::OkStatus();
  }
  if (cmd == "consolidate") {
    ZT_RETURN_IF_ERROR(WriteConsolidated(reader, pos[1], weights_only));
    std::printf("wrote %s\n", pos[1].c_str());
    return absl::OkStatus();
  }
  ZT_RETURN_IF_ERROR(ExportHuggingFace(reader, pos[1]));
  std::printf("wrote %s/model.safetensors and %s/config.json\n",
              pos[1].c_str(), pos[1].c_str());
  return absl::OkStatus();
}

}  // namespace
}  // namespace ckpt
}  // namespace zt

int main(int argc, char** argv) {
  // Under `bazel run` relative paths mean the user's directory.
  if (const char* wd = std::getenv("BUILD_WORKING_DIRECTORY"); wd && *wd) {
    if (chdir(wd) != 0) {
      std::fprintf(stderr, "ckpt: error: cannot enter %s\n", wd);
      return 1;
    }
  }
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.size() == 1 && (args[0] == "--help" || args[0] == "-h")) {
    std::fputs(zt::ckpt::kUsage, stdout);
    return 0;
  }
  const absl::Status s = zt::ckpt::Main(args);
  if (!s.ok()) {
    std::fprintf(stderr, "ckpt: error: %s\n", s.ToString().c_str());
    if (s.code() == absl::StatusCode::kInvalidArgument &&
        (args.empty() || s.message().find('/') == absl::string_view::npos)) {
      std::fputs(zt::ckpt::kUsage, stderr);
    }
    return s.code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
  }
  return 0;
}
