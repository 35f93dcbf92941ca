#ifndef ZEROTRAIN_TRAINER_DATA_H_
#define ZEROTRAIN_TRAINER_DATA_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "trainer/config.pb.h"
#include "trainer/synthetic_corpus.h"

namespace zt {

// llm.c token shards: a header of 256 little-endian int32 (magic, version,
// token count, rest zero), then `count` uint16 tokens.
inline constexpr int32_t kShardMagic = 20240520;
inline constexpr int32_t kShardVersion = 1;
inline constexpr int kShardHeaderInts = 256;
inline constexpr int64_t kShardHeaderBytes = kShardHeaderInts * 4;

struct TokenShard {
  std::string path;
  std::vector<uint16_t> tokens;
};

// Checks a shard's header against its file size and returns its token
// count, reading only the header. Errors name the file: kNotFound (missing),
// kDataLoss (bad magic, truncated, size disagreeing with the count),
// kInvalidArgument (a version other than 1).
absl::StatusOr<int64_t> ReadShardTokenCount(const std::string& path);

// Reads a whole shard; errors as ReadShardTokenCount.
absl::StatusOr<TokenShard> ReadShard(const std::string& path);

// Writes a shard atomically: a temporary file in the same directory, fsync,
// rename. Readers see the old file or the complete new one, never a part.
absl::Status WriteShard(const std::string& path,
                        absl::Span<const uint16_t> tokens);

// glob(3) matches in sorted order; kNotFound when nothing matches.
absl::StatusOr<std::vector<std::string>> GlobFiles(const std::string& pattern);

// Where the next global micro-batch starts: a token offset into a shard.
// The same on every rank, and independent of the world size, so a
// checkpoint can resume exactly (also on a different number of ranks).
// The synthetic corpus is one endless shard (shard_index 0).
struct DataPosition {
  int64_t shard_index = 0;
  int64_t offset = 0;
  friend bool operator==(const DataPosition& a, const DataPosition& b) {
    return a.shard_index == b.shard_index && a.offset == b.offset;
  }
  friend bool operator!=(const DataPosition& a, const DataPosition& b) {
    return !(a == b);
  }
};

// One rank's micro-batch, row-major [batch_size, seq_len]; targets[b, t] is
// the token after inputs[b, t].
struct Batch {
  int64_t batch_size = 0;
  int64_t seq_len = 0;
  std::vector<int32_t> inputs;
  std::vector<int32_t> targets;
};

struct DataLoaderOptions {
  int64_t micro_batch_size = 1;  // B, rows per rank
  int64_t seq_len = 1;           // T
  int rank = 0;
  int world_size = 1;
  // Tokens must be < vocab_size (the model's real vocabulary);
  // kInvalidArgument naming the file otherwise.
  int64_t vocab_size = 65536;
};

// Deterministic micro-batches for rank r of W, llm.c style: a global
// micro-batch is W*B*T+1 consecutive tokens at position(); rank r takes
// rows [r*B, (r+1)*B), i.e. tokens [offset + r*B*T, offset + (r+1)*B*T + 1).
// After it the position advances by W*B*T. When the current shard has fewer
// than W*B*T+1 tokens left, the loader moves to the start of the next shard
// (the tail is skipped), and after the last shard back to the first.
class DataLoader {
 public:
  virtual ~DataLoader();

  // Shards matching `glob`; every header is checked now, every token when
  // its shard is first read. A shard too small for one global micro-batch is
  // kInvalidArgument naming it.
  static absl::StatusOr<std::unique_ptr<DataLoader>> FromShards(
      const std::string& glob, const DataLoaderOptions& options);

  // The corpus' stream `stream` (SyntheticCorpus::kTrainStream/kEvalStream).
  static absl::StatusOr<std::unique_ptr<DataLoader>> FromSynthetic(
      std::shared_ptr<const SyntheticCorpus> corpus, uint64_t stream,
      const DataLoaderOptions& options);

  enum class Split { kTrain, kEval };
  // The loader a run's config asks for: data.shards.{train,val}_glob or the
  // synthetic corpus (train: stream 0, eval: stream 1), with
  // batch.micro_batch_size, batch.seq_len and model.vocab_size.
  // kInvalidArgument if Split::kEval is asked of shards without a val_glob.
  static absl::StatusOr<std::unique_ptr<DataLoader>> FromConfig(
      const TrainConfig& config, Split split, int rank, int world_size);

  // Fills `batch` with this rank's next micro-batch and advances.
  absl::Status Next(Batch* batch);

  const DataPosition& position() const { return position_; }
  // kInvalidArgument if the position is outside the data.
  absl::Status Seek(const DataPosition& position);
  void Reset() { position_ = DataPosition(); }

  const DataLoaderOptions& options() const { return options_; }
  int64_t num_shards() const;
  // Tokens one global micro-batch consumes: W*B*T.
  int64_t tokens_per_global_batch() const {
    return options_.world_size * options_.micro_batch_size * options_.seq_len;
  }
  // The corpus for a synthetic loader (for its entropy), else nullptr.
  const SyntheticCorpus* synthetic_corpus() const;
  // One line for logs: source, shards/tokens, batch geometry.
  std::string Describe() const;

  class Source;  // Shards or the synthetic corpus; defined in data.cc.

 private:
  DataLoader(std::unique_ptr<Source> source, const DataLoaderOptions& options);

  std::unique_ptr<Source> source_;
  DataLoaderOptions options_;
  DataPosition position_;
  std::vector<int32_t> buffer_;
};

}  // namespace zt

#endif  // ZEROTRAIN_TRAINER_DATA_H_
