#include "trainer/data.h"

#include <fcntl.h>
#include <glob.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"

namespace zt {
namespace {

absl::Status ErrnoError(int err, absl::string_view what) {
  const std::string message = absl::StrCat(what, ": ", std::strerror(err));
  switch (err) {
    case ENOENT:
    case ENOTDIR:
      return absl::NotFoundError(message);
    case EACCES:
    case EPERM:
      return absl::PermissionDeniedError(message);
    case ENOSPC:
    case EDQUOT:
      return absl::ResourceExhaustedError(message);
    default:
      return absl::InternalError(message);
  }
}

// Owns a file descriptor.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }
  void reset(int fd) {
    if (fd_ >= 0) close(fd_);
    fd_ = fd;
  }

 private:
  int fd_;
};

// Reads exactly n bytes at `offset`; false on a short read.
bool PreadFully(int fd, void* data, size_t n, off_t offset) {
  char* p = static_cast<char*>(data);
  while (n > 0) {
    const ssize_t r = pread(fd, p, n, offset);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    p += r;
    n -= r;
    offset += r;
  }
  return true;
}

// Opens `path` and validates its header against the file size.
absl::StatusOr<int64_t> OpenAndCheckHeader(const std::string& path, Fd* fd) {
  Fd f(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (f.get() < 0) return ErrnoError(errno, path);
  struct stat st;
  if (fstat(f.get(), &st) != 0) return ErrnoError(errno, path);
  const int64_t size = st.st_size;
  if (size < kShardHeaderBytes) {
    return absl::DataLossError(absl::StrCat(
        path, ": truncated token shard: ", size, " bytes, less than the ",
        kShardHeaderBytes, "-byte header"));
  }
  int32_t header[kShardHeaderInts];
  if (!PreadFully(f.get(), header, sizeof(header), 0)) {
    return absl::DataLossError(absl::StrCat(path, ": cannot read header"));
  }
  if (header[0] != kShardMagic) {
    return absl::DataLossError(absl::StrCat(path, ": bad magic ", header[0],
                                            " (expected ", kShardMagic,
                                            "); not an llm.c token shard"));
  }
  if (header[1] != kShardVersion) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": unsupported token shard version ", header[1],
        " (this reader knows version ", kShardVersion, ": uint16 tokens)"));
  }
  const int64_t count = header[2];
  if (count < 0) {
    return absl::DataLossError(
        absl::StrCat(path, ": negative token count ", count, " in header"));
  }
  const int64_t expected = kShardHeaderBytes + 2 * count;
  if (size < expected) {
    return absl::DataLossError(absl::StrCat(
        path, ": truncated token shard: header says ", count, " tokens (",
        expected, " bytes) but the file has ", size, " bytes"));
  }
  if (size > expected) {
    return absl::DataLossError(
        absl::StrCat(path, ": token count mismatch: header says ", count,
                     " tokens but the file holds ",
                     (size - kShardHeaderBytes) / 2.0, " tokens"));
  }
  fd->reset(f.release());
  return count;
}

}  // namespace

absl::StatusOr<int64_t> ReadShardTokenCount(const std::string& path) {
  Fd fd(-1);
  return OpenAndCheckHeader(path, &fd);
}

absl::StatusOr<TokenShard> ReadShard(const std::string& path) {
  Fd fd(-1);
  ZT_ASSIGN_OR_RETURN(const int64_t count, OpenAndCheckHeader(path, &fd));
  TokenShard shard;
  shard.path = path;
  shard.tokens.resize(count);
  if (!PreadFully(fd.get(), shard.tokens.data(), 2 * count,
                  kShardHeaderBytes)) {
    return absl::DataLossError(
        absl::StrCat(path, ": short read of ", count, " tokens"));
  }
  return shard;
}

absl::Status WriteShard(const std::string& path,
                        absl::Span<const uint16_t> tokens) {
  if (tokens.size() >
      static_cast<size_t>(std::numeric_limits<int32_t>::max())) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": ", tokens.size(),
                     " tokens do not fit a shard header's int32 count"));
  }
  std::string tmp = path + ".tmp.XXXXXX";
  Fd fd(mkstemp(tmp.data()));
  if (fd.get() < 0) return ErrnoError(errno, tmp);
  auto fail = [&](absl::string_view what) {
    const absl::Status s = ErrnoError(errno, absl::StrCat(tmp, ": ", what));
    unlink(tmp.c_str());
    return s;
  };
  int32_t header[kShardHeaderInts] = {};
  header[0] = kShardMagic;
  header[1] = kShardVersion;
  header[2] = static_cast<int32_t>(tokens.size());
  auto write_all = [&](const void* data, size_t n) {
    const char* p = static_cast<const char*>(data);
    while (n > 0) {
      const ssize_t w = write(fd.get(), p, n);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) return false;
      p += w;
      n -= w;
    }
    return true;
  };
  if (!write_all(header, sizeof(header)) ||
      !write_all(tokens.data(), tokens.size() * sizeof(uint16_t))) {
    return fail("write");
  }
  if (fchmod(fd.get(), 0644) != 0) return fail("chmod");
  if (fsync(fd.get()) != 0) return fail("fsync");
  if (close(fd.release()) != 0) return fail("close");
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    return fail(absl::StrCat("rename to ", path));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> GlobFiles(const std::string& pattern) {
  glob_t g;
  const int rc = glob(pattern.c_str(), 0, nullptr, &g);
  if (rc == GLOB_NOMATCH) {
    globfree(&g);
    return absl::NotFoundError(absl::StrCat("no files match '", pattern, "'"));
  }
  if (rc != 0) {
    globfree(&g);
    return absl::InternalError(
        absl::StrCat("glob('", pattern, "') failed with code ", rc));
  }
  std::vector<std::string> paths(g.gl_pathv, g.gl_pathv + g.gl_pathc);
  globfree(&g);
  return paths;
}

// ---------------------------------------------------------------------------
// Sources: what the loader reads windows of tokens from.

class DataLoader::Source {
 public:
  virtual ~Source() = default;
  virtual int64_t num_shards() const = 0;
  virtual int64_t shard_tokens(int64_t shard) const = 0;
  // Tokens [offset, offset + out.size()) of `shard`, in range.
  virtual absl::Status Read(int64_t shard, int64_t offset,
                            absl::Span<int32_t> out) = 0;
  virtual const SyntheticCorpus* corpus() const { return nullptr; }
  virtual std::string Describe() const = 0;
};

namespace {

// Keeps one shard in memory: shards are read in order, so the working set
// is one shard.
class ShardSource : public DataLoader::Source {
 public:
  ShardSource(std::string glob, std::vector<std::string> paths,
              std::vector<int64_t> counts, int64_t vocab_size)
      : glob_(std::move(glob)),
        paths_(std::move(paths)),
        counts_(std::move(counts)),
        vocab_size_(vocab_size) {}

  int64_t num_shards() const override { return paths_.size(); }
  int64_t shard_tokens(int64_t shard) const override { return counts_[shard]; }

  absl::Status Read(int64_t shard, int64_t offset,
                    absl::Span<int32_t> out) override {
    if (shard != loaded_) {
      loaded_ = -1;
      ZT_ASSIGN_OR_RETURN(TokenShard s, ReadShard(paths_[shard]));
      if (static_cast<int64_t>(s.tokens.size()) != counts_[shard]) {
        return absl::DataLossError(absl::StrCat(
            paths_[shard], ": changed while training: ", s.tokens.size(),
            " tokens, was ", counts_[shard]));
      }
      for (size_t i = 0; i < s.tokens.size(); ++i) {
        if (s.tokens[i] >= vocab_size_) {
          return absl::InvalidArgumentError(
              absl::StrCat(paths_[shard], ": token ", s.tokens[i], " at index ",
                           i, " is >= model.vocab_size = ", vocab_size_));
        }
      }
      tokens_ = std::move(s.tokens);
      loaded_ = shard;
    }
    std::copy_n(tokens_.begin() + offset, out.size(), out.begin());
    return absl::OkStatus();
  }

  std::string Describe() const override {
    int64_t total = 0;
    for (int64_t c : counts_) total += c;
    return absl::StrCat("shards '", glob_, "': ", paths_.size(), " files, ",
                        total, " tokens");
  }

 private:
  std::string glob_;
  std::vector<std::string> paths_;
  std::vector<int64_t> counts_;
  int64_t vocab_size_;
  int64_t loaded_ = -1;
  std::vector<uint16_t> tokens_;
};

// One endless shard. Caches the last generated block, since consecutive
// micro-batches read from the same one.
class SyntheticSource : public DataLoader::Source {
 public:
  SyntheticSource(std::shared_ptr<const SyntheticCorpus> corpus,
                  uint64_t stream)
      : corpus_(std::move(corpus)),
        stream_(stream),
        block_(corpus_->block_tokens()) {}

  int64_t num_shards() const override { return 1; }
  int64_t shard_tokens(int64_t) const override {
    return std::numeric_limits<int64_t>::max();
  }

  absl::Status Read(int64_t, int64_t offset, absl::Span<int32_t> out) override {
    const int64_t bt = corpus_->block_tokens();
    size_t done = 0;
    while (done < out.size()) {
      const int64_t pos = offset + static_cast<int64_t>(done);
      const int64_t b = pos / bt;
      if (b != cached_block_) {
        corpus_->GenerateBlock(stream_, b, absl::MakeSpan(block_));
        cached_block_ = b;
      }
      const int64_t within = pos % bt;
      const size_t n = std::min<size_t>(out.size() - done, bt - within);
      std::copy_n(block_.begin() + within, n, out.begin() + done);
      done += n;
    }
    return absl::OkStatus();
  }

  const SyntheticCorpus* corpus() const override { return corpus_.get(); }

  std::string Describe() const override {
    return absl::StrCat(corpus_->Describe(), "; stream ", stream_);
  }

 private:
  std::shared_ptr<const SyntheticCorpus> corpus_;
  uint64_t stream_;
  std::vector<int32_t> block_;
  int64_t cached_block_ = -1;
};

absl::Status CheckOptions(const DataLoaderOptions& o) {
  if (o.micro_batch_size < 1 || o.seq_len < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("data loader: micro_batch_size = ", o.micro_batch_size,
                     " and seq_len = ", o.seq_len, " must be >= 1"));
  }
  if (o.world_size < 1 || o.rank < 0 || o.rank >= o.world_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("data loader: rank ", o.rank, " is out of range for ",
                     "world_size ", o.world_size));
  }
  if (o.vocab_size < 1 || o.vocab_size > 65536) {
    return absl::InvalidArgumentError(
        absl::StrCat("data loader: vocab_size = ", o.vocab_size,
                     " is out of range: must be in [1, 65536]"));
  }
  return absl::OkStatus();
}

}  // namespace

DataLoader::DataLoader(std::unique_ptr<Source> source,
                       const DataLoaderOptions& options)
    : source_(std::move(source)), options_(options) {}

DataLoader::~DataLoader() = default;

absl::StatusOr<std::unique_ptr<DataLoader>> DataLoader::FromShards(
    const std::string& glob, const DataLoaderOptions& options) {
  ZT_RETURN_IF_ERROR(CheckOptions(options));
  ZT_ASSIGN_OR_RETURN(std::vector<std::string> paths, GlobFiles(glob));
  const int64_t window = static_cast<int64_t>(options.world_size) *
                             options.micro_batch_size * options.seq_len +
                         1;
  std::vector<int64_t> counts;
  for (const std::string& path : paths) {
    ZT_ASSIGN_OR_RETURN(const int64_t count, ReadShardTokenCount(path));
    if (count < window) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": ", count, " tokens, fewer than the ", window,
          " one global micro-batch needs (world_size * micro_batch_size * "
          "seq_len + 1 = ",
          options.world_size, " * ", options.micro_batch_size, " * ",
          options.seq_len, " + 1)"));
    }
    counts.push_back(count);
  }
  return std::unique_ptr<DataLoader>(new DataLoader(
      std::make_unique<ShardSource>(glob, std::move(paths), std::move(counts),
                                    options.vocab_size),
      options));
}

absl::StatusOr<std::unique_ptr<DataLoader>> DataLoader::FromSynthetic(
    std::shared_ptr<const SyntheticCorpus> corpus, uint64_t stream,
    const DataLoaderOptions& options) {
  ZT_RETURN_IF_ERROR(CheckOptions(options));
  if (corpus->vocab_size() > options.vocab_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("data.synthetic.vocab_size = ", corpus->vocab_size(),
                     " is out of range: must be <= model.vocab_size = ",
                     options.vocab_size));
  }
  return std::unique_ptr<DataLoader>(new DataLoader(
      std::make_unique<SyntheticSource>(std::move(corpus), stream), options));
}

absl::StatusOr<std::unique_ptr<DataLoader>> DataLoader::FromConfig(
    const TrainConfig& config, Split split, int rank, int world_size) {
  DataLoaderOptions options;
  options.micro_batch_size = config.batch().micro_batch_size();
  options.seq_len = config.batch().seq_len();
  options.rank = rank;
  options.world_size = world_size;
  options.vocab_size = config.model().vocab_size();
  const DataConfig& data = config.data();
  if (data.source_case() == DataConfig::kShards) {
    const bool train = split == Split::kTrain;
    const std::string& glob =
        train ? data.shards().train_glob() : data.shards().val_glob();
    const char* field =
        train ? "data.shards.train_glob" : "data.shards.val_glob";
    if (glob.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          field, " is empty", train ? "" : " (set it, or eval.batches = 0)"));
    }
    absl::StatusOr<std::unique_ptr<DataLoader>> loader =
        FromShards(glob, options);
    if (!loader.ok()) return Annotate(loader.status(), field);
    return loader;
  }
  ZT_ASSIGN_OR_RETURN(SyntheticCorpus corpus,
                      SyntheticCorpus::Create(data.synthetic()));
  return FromSynthetic(
      std::make_shared<const SyntheticCorpus>(std::move(corpus)),
      split == Split::kTrain ? SyntheticCorpus::kTrainStream
                             : SyntheticCorpus::kEvalStream,
      options);
}

int64_t DataLoader::num_shards() const { return source_->num_shards(); }

const SyntheticCorpus* DataLoader::synthetic_corpus() const {
  return source_->corpus();
}

std::string DataLoader::Describe() const {
  return absl::StrCat(source_->Describe(), "; rank ", options_.rank, " of ",
                      options_.world_size, ", micro-batch ",
                      options_.micro_batch_size, " x ", options_.seq_len);
}

absl::Status DataLoader::Seek(const DataPosition& position) {
  if (position.shard_index < 0 ||
      position.shard_index >= source_->num_shards() || position.offset < 0 ||
      position.offset > source_->shard_tokens(position.shard_index)) {
    return absl::InvalidArgumentError(
        absl::StrCat("data position (shard ", position.shard_index, ", offset ",
                     position.offset, ") is outside the data (",
                     source_->num_shards(), " shards)"));
  }
  position_ = position;
  return absl::OkStatus();
}

absl::Status DataLoader::Next(Batch* batch) {
  const int64_t b = options_.micro_batch_size;
  const int64_t t = options_.seq_len;
  const int64_t global = tokens_per_global_batch();
  if (position_.offset + global + 1 >
      source_->shard_tokens(position_.shard_index)) {
    position_.shard_index = (position_.shard_index + 1) % source_->num_shards();
    position_.offset = 0;
  }
  buffer_.resize(b * t + 1);
  ZT_RETURN_IF_ERROR(source_->Read(position_.shard_index,
                                   position_.offset + options_.rank * b * t,
                                   absl::MakeSpan(buffer_)));
  batch->batch_size = b;
  batch->seq_len = t;
  batch->inputs.assign(buffer_.begin(), buffer_.end() - 1);
  batch->targets.assign(buffer_.begin() + 1, buffer_.end());
  position_.offset += global;
  return absl::OkStatus();
}

}  // namespace zt
