#ifndef ZEROTRAIN_CHECKPOINT_FORMAT_H_
#define ZEROTRAIN_CHECKPOINT_FORMAT_H_

// The on-disk format of sharded checkpoints (see manifest.proto and
// README.md): directory names, the manifest, writing one shard file, and a
// reader that returns any global range of master weights and moments,
// verifying checksums, whatever world size and stage wrote it.
//
//   <root>/latest                 "step_<N>\n": the newest committed step
//   <root>/step_<N>/manifest.pb   ManifestFile (Manifest + its CRC-32C)
//   <root>/step_<N>/shard_<RRRRR>.bin
//
// Errors name the file: kNotFound (missing file), kDataLoss (checksum
// mismatch, truncated or inconsistent file), kInvalidArgument (a checkpoint
// of another model, or of a newer format).

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "checkpoint/manifest.pb.h"
#include "trainer/param_layout.h"
#include "zero/partition.h"

namespace zt {
namespace ckpt {

inline constexpr int kFormatVersion = 1;
inline constexpr char kManifestName[] = "manifest.pb";
inline constexpr char kLatestName[] = "latest";
// Largest run of elements with its own checksum (4 MiB per section): a
// reader of a sub-range reads and verifies at most this much extra at each
// end.
inline constexpr int64_t kMaxRangeElements = int64_t{1} << 20;

// "step_<N>".
std::string StepDirName(int64_t step);
// N of "step_<N>", or nullopt for any other name (temporaries included).
std::optional<int64_t> ParseStepDirName(absl::string_view name);
// "shard_<rank, 5 digits>.bin".
std::string ShardFileName(int rank);

// The step directory <root>/latest names, or nullopt when there is no
// `latest` (nothing committed yet). kDataLoss for a malformed `latest`,
// kNotFound naming the directory when it names a missing one.
absl::StatusOr<std::optional<std::string>> FindLatest(const std::string& root);

// A step directory (holding manifest.pb) as is, or a checkpoint root
// (holding `latest`) resolved to its newest step. kNotFound naming `path`
// otherwise.
absl::StatusOr<std::string> ResolveCheckpointDir(const std::string& path);

// Fills tensors and numel from `layout`.
void SetLayout(const ParamLayout& layout, Manifest* manifest);

// kInvalidArgument naming `manifest_path` unless the manifest's tensors are
// exactly the layout's (names, shapes, offsets).
absl::Status CheckLayoutMatches(const Manifest& manifest,
                                const ParamLayout& layout,
                                const std::string& manifest_path);

// Writes <step_dir>/manifest.pb durably (create, write, fsync, close).
absl::Status WriteManifest(const std::string& step_dir,
                           const Manifest& manifest);

// Reads and checks <step_dir>/manifest.pb: its checksum, its format version,
// and that its tensors and shard ranges tile [0, numel) consistently.
absl::StatusOr<Manifest> ReadManifest(const std::string& step_dir);

// One rank's slice of the optimizer state in host memory: range.size()
// floats from each pointer, element i holding global element range.begin+i.
struct ShardData {
  int rank = 0;
  Range range;
  const float* master = nullptr;
  const float* exp_avg = nullptr;
  const float* exp_avg_sq = nullptr;
};

// Writes <step_dir>/shard_<rank>.bin (fsynced and closed) and returns its
// manifest entry with a checksum per range. `manifest` supplies the tensors.
absl::StatusOr<ShardFile> WriteShardFile(const std::string& step_dir,
                                         const Manifest& manifest,
                                         const ShardData& data);

class CheckpointReader {
 public:
  // Reads the manifest of a step directory (ReadManifest).
  static absl::StatusOr<CheckpointReader> Open(const std::string& step_dir);

  const Manifest& manifest() const { return manifest_; }
  const std::string& dir() const { return dir_; }

  // Copies global elements [r.begin, r.end) of the master weights and the
  // two moments (a null destination is skipped) into r.size()-float
  // buffers, reading only the shard files and ranges overlapping r and
  // verifying every range it reads.
  absl::Status Read(Range r, float* master, float* exp_avg,
                    float* exp_avg_sq) const;

  // Reads every byte of every shard file and checks every checksum and
  // file size. Returns the first problem.
  absl::Status VerifyAll() const;

 private:
  CheckpointReader(std::string dir, Manifest manifest)
      : dir_(std::move(dir)), manifest_(std::move(manifest)) {}

  std::string dir_;
  Manifest manifest_;
};

// The model a manifest's config describes, e.g.
// "n_layer=2 n_head=2 n_embd=16 vocab_size=100 max_seq_len=8".
std::string DescribeModel(const Manifest& manifest);

}  // namespace ckpt
}  // namespace zt

#endif  // ZEROTRAIN_CHECKPOINT_FORMAT_H_
