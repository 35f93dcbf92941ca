#include "checkpoint/format.h"

#include <algorithm>
#include <cstring>
#include <memory>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/strings/escaping.h"
#include "core/crc32c.h"
#include "checkpoint/file_io.h"
#include "core/status_macros.h"

namespace zt {
namespace ckpt {
namespace {

constexpr int64_t kF32 = 4;

std::string ShapeString(const google::protobuf::RepeatedField<int64_t>& s) {
  return absl::StrCat("[", absl::StrJoin(s, ", "), "]");
}

std::string ShapeString(const std::vector<int64_t>& s) {
  return absl::StrCat("[", absl::StrJoin(s, ", "), "]");
}

absl::Status ManifestCorrupt(const std::string& path, absl::string_view why) {
  return absl::DataLossError(absl::StrCat(path, ": ", why));
}

// Checks everything a reader relies on, so a damaged or hand-edited manifest
// fails here rather than as an out-of-bounds read later.
absl::Status CheckConsistent(const Manifest& m, const std::string& path) {
  if (m.format_version() != kFormatVersion) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": format version ", m.format_version(),
                     " is not supported (this build reads version ",
                     kFormatVersion, ")"));
  }
  int64_t at = 0;
  for (const TensorInfo& t : m.tensors()) {
    int64_t n = 1;
    for (int64_t d : t.shape()) n *= d;
    if (t.offset() != at || t.numel() != n || t.dtype() != "F32") {
      return ManifestCorrupt(
          path, absl::StrCat("tensor ", t.name(), " at offset ", t.offset(),
                             " with shape ", ShapeString(t.shape()),
                             " does not continue the layout at ", at));
    }
    at += n;
  }
  if (at != m.numel() || m.numel() <= 0) {
    return ManifestCorrupt(path, absl::StrCat("tensors cover ", at,
                                              " elements, numel is ",
                                              m.numel()));
  }
  if (m.shards_size() == 0) return ManifestCorrupt(path, "no shard files");
  int64_t next = 0;
  for (const ShardFile& s : m.shards()) {
    if (s.begin() != next || s.end() < s.begin() || s.file().empty() ||
        s.file().find('/') != std::string::npos) {
      return ManifestCorrupt(
          path, absl::StrCat("shard file \"", s.file(), "\" covers [",
                             s.begin(), ", ", s.end(),
                             ") but the previous shard ends at ", next));
    }
    const int64_t n = s.end() - s.begin();
    if (s.size_bytes() != 3 * n * kF32) {
      return ManifestCorrupt(path, absl::StrCat("shard file ", s.file(),
                                                " has size ", s.size_bytes(),
                                                " for ", n, " elements"));
    }
    int64_t r_next = s.begin();
    for (const ShardRange& r : s.ranges()) {
      bool bad = r.begin() != r_next || r.end() <= r.begin();
      for (const Section* sec : {&r.master(), &r.exp_avg(), &r.exp_avg_sq()}) {
        bad = bad || sec->file_offset() < 0 ||
              sec->file_offset() + (r.end() - r.begin()) * kF32 >
                  s.size_bytes();
      }
      if (bad) {
        return ManifestCorrupt(
            path, absl::StrCat("range [", r.begin(), ", ", r.end(), ") of ",
                               s.file(), " is out of place"));
      }
      r_next = r.end();
    }
    if (r_next != s.end()) {
      return ManifestCorrupt(path, absl::StrCat("ranges of ", s.file(),
                                                " end at ", r_next,
                                                ", the shard at ", s.end()));
    }
    next = s.end();
  }
  if (next != m.numel()) {
    return ManifestCorrupt(path, absl::StrCat("shard files cover [0, ", next,
                                              "), numel is ", m.numel()));
  }
  return absl::OkStatus();
}

absl::Status CheckShardSize(const RandomAccessFile& f, const ShardFile& s) {
  if (f.size() < s.size_bytes()) {
    return absl::DataLossError(absl::StrCat(f.path(), ": truncated: ",
                                            f.size(), " bytes, the manifest says ",
                                            s.size_bytes()));
  }
  if (f.size() > s.size_bytes()) {
    return absl::DataLossError(absl::StrCat(f.path(), ": ", f.size(),
                                            " bytes, the manifest says ",
                                            s.size_bytes()));
  }
  return absl::OkStatus();
}

const char* SectionName(int i) {
  static const char* const kNames[] = {"master weights", "exp_avg",
                                       "exp_avg_sq"};
  return kNames[i];
}

const Section& SectionOf(const ShardRange& r, int i) {
  return i == 0 ? r.master() : i == 1 ? r.exp_avg() : r.exp_avg_sq();
}

absl::Status ChecksumMismatch(const RandomAccessFile& f, const ShardRange& r,
                              int section, uint32_t got) {
  return absl::DataLossError(absl::StrFormat(
      "%s: checksum mismatch in the %s of %s, elements [%d, %d) at byte %d "
      "(stored crc32c %08x, computed %08x)",
      f.path(), SectionName(section), r.tensor(), r.begin(), r.end(),
      SectionOf(r, section).file_offset(), SectionOf(r, section).crc32c(),
      got));
}

}  // namespace

std::string StepDirName(int64_t step) { return absl::StrCat("step_", step); }

std::optional<int64_t> ParseStepDirName(absl::string_view name) {
  if (!absl::ConsumePrefix(&name, "step_") || name.empty()) return std::nullopt;
  for (char c : name) {
    if (!absl::ascii_isdigit(c)) return std::nullopt;
  }
  int64_t step;
  if (!absl::SimpleAtoi(name, &step)) return std::nullopt;
  return step;
}

std::string ShardFileName(int rank) {
  return absl::StrFormat("shard_%05d.bin", rank);
}

absl::StatusOr<std::optional<std::string>> FindLatest(const std::string& root) {
  const std::string latest = JoinPath(root, kLatestName);
  if (!PathExists(latest)) return std::optional<std::string>();
  ZT_ASSIGN_OR_RETURN(std::string text, ReadFileToString(latest));
  const absl::string_view name = absl::StripAsciiWhitespace(text);
  if (!ParseStepDirName(name)) {
    return absl::DataLossError(absl::StrCat(
        latest, ": expected \"step_<N>\", found \"", absl::CHexEscape(name),
        "\""));
  }
  const std::string dir = JoinPath(root, name);
  if (!IsDirectory(dir)) {
    return absl::NotFoundError(
        absl::StrCat(latest, " names ", dir, ", which does not exist"));
  }
  return std::optional<std::string>(dir);
}

absl::StatusOr<std::string> ResolveCheckpointDir(const std::string& path) {
  if (PathExists(JoinPath(path, kManifestName))) return path;
  ZT_ASSIGN_OR_RETURN(std::optional<std::string> latest, FindLatest(path));
  if (latest) return *latest;
  if (!IsDirectory(path)) {
    return absl::NotFoundError(
        absl::StrCat("checkpoint ", path, " does not exist"));
  }
  return absl::NotFoundError(absl::StrCat(
      path, " is not a checkpoint: it has neither ", kManifestName,
      " (a step directory) nor ", kLatestName, " (a checkpoint root)"));
}

void SetLayout(const ParamLayout& layout, Manifest* m) {
  m->clear_tensors();
  m->set_numel(layout.numel());
  for (const ParamSpec& p : layout.params()) {
    TensorInfo* t = m->add_tensors();
    t->set_name(p.name);
    for (int64_t d : p.shape) t->add_shape(d);
    t->set_dtype("F32");
    t->set_offset(p.offset);
    t->set_numel(p.numel);
  }
}

std::string DescribeModel(const Manifest& m) {
  const auto& c = m.config().model();
  return absl::StrCat("n_layer=", c.n_layer(), " n_head=", c.n_head(),
                      " n_embd=", c.n_embd(), " vocab_size=", c.vocab_size(),
                      " max_seq_len=", c.max_seq_len());
}

absl::Status CheckLayoutMatches(const Manifest& m, const ParamLayout& layout,
                                const std::string& manifest_path) {
  const GptShape& s = layout.shape();
  const std::string ours = absl::StrCat(
      "n_layer=", s.n_layer, " n_head=", s.n_head, " n_embd=", s.n_embd,
      " vocab_size=", s.vocab_size, " max_seq_len=", s.max_seq_len);
  auto mismatch = [&](absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat(
        manifest_path, ": the checkpoint is of another model (", what,
        "): it was saved with ", DescribeModel(m), ", this run has ", ours));
  };
  const auto& params = layout.params();
  const int n = std::min<int>(m.tensors_size(), params.size());
  for (int i = 0; i < n; ++i) {
    const TensorInfo& t = m.tensors(i);
    const ParamSpec& p = params[i];
    const std::vector<int64_t> shape(t.shape().begin(), t.shape().end());
    if (t.name() != p.name || shape != p.shape || t.offset() != p.offset) {
      return mismatch(absl::StrCat("tensor ", i, " is ", t.name(), " ",
                                   ShapeString(t.shape()), ", expected ",
                                   p.name, " ", ShapeString(p.shape)));
    }
  }
  if (m.tensors_size() != static_cast<int>(params.size())) {
    return mismatch(absl::StrCat(m.tensors_size(), " tensors, expected ",
                                 params.size()));
  }
  if (m.numel() != layout.numel()) {
    return mismatch(
        absl::StrCat(m.numel(), " parameters, expected ", layout.numel()));
  }
  return absl::OkStatus();
}

absl::Status WriteManifest(const std::string& step_dir, const Manifest& m) {
  ManifestFile file;
  if (!m.SerializeToString(file.mutable_manifest())) {
    return absl::InternalError("cannot serialize the checkpoint manifest");
  }
  file.set_crc32c(Crc32c(file.manifest().data(), file.manifest().size()));
  std::string bytes;
  file.SerializeToString(&bytes);
  return WriteFileDurably(JoinPath(step_dir, kManifestName), bytes);
}

absl::StatusOr<Manifest> ReadManifest(const std::string& step_dir) {
  const std::string path = JoinPath(step_dir, kManifestName);
  ZT_ASSIGN_OR_RETURN(std::string bytes, ReadFileToString(path));
  ManifestFile file;
  if (!file.ParseFromString(bytes) || !file.has_manifest() ||
      !file.has_crc32c()) {
    return absl::DataLossError(
        absl::StrCat(path, ": not a checkpoint manifest (unparsable)"));
  }
  const uint32_t crc =
      Crc32c(file.manifest().data(), file.manifest().size());
  if (crc != file.crc32c()) {
    return absl::DataLossError(absl::StrFormat(
        "%s: checksum mismatch (stored crc32c %08x, computed %08x)", path,
        file.crc32c(), crc));
  }
  Manifest m;
  if (!m.ParseFromString(file.manifest())) {
    return absl::DataLossError(
        absl::StrCat(path, ": the manifest does not parse"));
  }
  ZT_RETURN_IF_ERROR(CheckConsistent(m, path));
  return m;
}

absl::StatusOr<ShardFile> WriteShardFile(const std::string& step_dir,
                                         const Manifest& manifest,
                                         const ShardData& data) {
  ShardFile out;
  out.set_file(ShardFileName(data.rank));
  out.set_rank(data.rank);
  out.set_begin(data.range.begin);
  out.set_end(data.range.end);
  const int64_t n = data.range.size();
  out.set_size_bytes(3 * n * kF32);
  // Ranges: the pieces of each tensor inside the shard, cut every
  // kMaxRangeElements.
  for (const TensorInfo& t : manifest.tensors()) {
    const int64_t b = std::max(t.offset(), data.range.begin);
    const int64_t e = std::min(t.offset() + t.numel(), data.range.end);
    for (int64_t at = b; at < e; at += kMaxRangeElements) {
      ShardRange* r = out.add_ranges();
      r->set_tensor(t.name());
      r->set_begin(at);
      r->set_end(std::min(e, at + kMaxRangeElements));
    }
  }
  const std::string path = JoinPath(step_dir, out.file());
  ZT_ASSIGN_OR_RETURN(WritableFile f, WritableFile::Create(path));
  const float* sources[3] = {data.master, data.exp_avg, data.exp_avg_sq};
  for (int s = 0; s < 3; ++s) {
    for (ShardRange& r : *out.mutable_ranges()) {
      const float* p = sources[s] + (r.begin() - data.range.begin);
      const size_t bytes = static_cast<size_t>((r.end() - r.begin()) * kF32);
      Section* sec = s == 0   ? r.mutable_master()
                     : s == 1 ? r.mutable_exp_avg()
                              : r.mutable_exp_avg_sq();
      sec->set_file_offset(f.offset());
      sec->set_crc32c(Crc32c(p, bytes));
      ZT_RETURN_IF_ERROR(f.Append(p, bytes));
    }
  }
  ZT_RETURN_IF_ERROR(f.Sync());
  ZT_RETURN_IF_ERROR(f.Close());
  return out;
}

absl::StatusOr<CheckpointReader> CheckpointReader::Open(
    const std::string& step_dir) {
  ZT_ASSIGN_OR_RETURN(Manifest m, ReadManifest(step_dir));
  return CheckpointReader(step_dir, std::move(m));
}

absl::Status CheckpointReader::Read(Range want, float* master, float* exp_avg,
                                    float* exp_avg_sq) const {
  if (want.begin < 0 || want.end > manifest_.numel() || want.end < want.begin) {
    return absl::InvalidArgumentError(
        absl::StrCat("range [", want.begin, ", ", want.end,
                     ") is outside the checkpoint's ", manifest_.numel(),
                     " elements"));
  }
  float* dsts[3] = {master, exp_avg, exp_avg_sq};
  std::vector<float> scratch;
  for (const ShardFile& s : manifest_.shards()) {
    if (s.end() <= want.begin || s.begin() >= want.end) continue;
    ZT_ASSIGN_OR_RETURN(RandomAccessFile f,
                        RandomAccessFile::Open(JoinPath(dir_, s.file())));
    ZT_RETURN_IF_ERROR(CheckShardSize(f, s));
    for (const ShardRange& r : s.ranges()) {
      const int64_t b = std::max(r.begin(), want.begin);
      const int64_t e = std::min(r.end(), want.end);
      if (b >= e) continue;
      const int64_t n = r.end() - r.begin();
      const bool whole = b == r.begin() && e == r.end();
      for (int sec = 0; sec < 3; ++sec) {
        if (dsts[sec] == nullptr) continue;
        // A range entirely wanted is read straight into place; a partial
        // one through scratch, since its checksum covers all of it.
        float* buf = dsts[sec] + (r.begin() - want.begin);
        if (!whole) {
          scratch.resize(n);
          buf = scratch.data();
        }
        const size_t bytes = static_cast<size_t>(n * kF32);
        ZT_RETURN_IF_ERROR(
            f.ReadAt(SectionOf(r, sec).file_offset(), bytes, buf));
        const uint32_t crc = Crc32c(buf, bytes);
        if (crc != SectionOf(r, sec).crc32c()) {
          return ChecksumMismatch(f, r, sec, crc);
        }
        if (!whole) {
          std::memcpy(dsts[sec] + (b - want.begin), buf + (b - r.begin()),
                      static_cast<size_t>((e - b) * kF32));
        }
      }
    }
  }
  return absl::OkStatus();
}

absl::Status CheckpointReader::VerifyAll() const {
  std::vector<float> buf;
  for (const ShardFile& s : manifest_.shards()) {
    ZT_ASSIGN_OR_RETURN(RandomAccessFile f,
                        RandomAccessFile::Open(JoinPath(dir_, s.file())));
    ZT_RETURN_IF_ERROR(CheckShardSize(f, s));
    for (const ShardRange& r : s.ranges()) {
      const int64_t n = r.end() - r.begin();
      buf.resize(n);
      for (int sec = 0; sec < 3; ++sec) {
        const size_t bytes = static_cast<size_t>(n * kF32);
        ZT_RETURN_IF_ERROR(
            f.ReadAt(SectionOf(r, sec).file_offset(), bytes, buf.data()));
        const uint32_t crc = Crc32c(buf.data(), bytes);
        if (crc != SectionOf(r, sec).crc32c()) {
          return ChecksumMismatch(f, r, sec, crc);
        }
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace ckpt
}  // namespace zt
