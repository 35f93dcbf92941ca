#include "checkpoint/format.h"

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "checkpoint/file_io.h"
#include "glog/logging.h"
#include "gtest/gtest.h"
#include "zero/partition.h"

namespace zt {
namespace ckpt {
namespace {

// A GPT whose token embedding (50304 x 32 = 1.6M elements) is longer than
// kMaxRangeElements, so ranges are cut inside a tensor too.
ParamLayout Layout() {
  GptShape s;
  s.n_layer = 2;
  s.n_head = 2;
  s.n_embd = 32;
  s.vocab_size = 50257;
  s.padded_vocab_size = GptShape::PadVocab(s.vocab_size);
  s.max_seq_len = 16;
  auto l = ParamLayout::ForGpt(s);
  CHECK(l.ok());
  return *l;
}

// A distinct value for every element and section.
float Value(int section, int64_t i) {
  return static_cast<float>(section * 1000003 + i) * 0.5f;
}

std::string TempDir(const std::string& name) {
  const std::string d = JoinPath(std::getenv("TEST_TMPDIR"), name);
  EXPECT_TRUE(RemoveRecursively(d).ok());
  EXPECT_TRUE(MakeDirectories(d).ok());
  return d;
}

// Writes a checkpoint as `world` ranks would, each its partition shard.
Manifest WriteCheckpoint(const std::string& dir, const ParamLayout& layout,
                         int world) {
  Manifest m;
  m.set_format_version(kFormatVersion);
  m.set_step(7);
  m.set_world_size(world);
  SetLayout(layout, &m);
  m.mutable_config()->mutable_model()->set_n_embd(layout.shape().n_embd);
  const Partition part(layout.numel(), world);
  for (int r = 0; r < world; ++r) {
    const Range s = part.Shard(r);
    const Range range{std::min(s.begin, layout.numel()),
                      std::min(s.end, layout.numel())};
    std::vector<float> v[3];
    for (int sec = 0; sec < 3; ++sec) {
      for (int64_t i = range.begin; i < range.end; ++i)
        v[sec].push_back(Value(sec, i));
    }
    ShardData d;
    d.rank = r;
    d.range = range;
    d.master = v[0].data();
    d.exp_avg = v[1].data();
    d.exp_avg_sq = v[2].data();
    auto shard = WriteShardFile(dir, m, d);
    CHECK(shard.ok()) << shard.status();
    *m.add_shards() = *shard;
  }
  CHECK(WriteManifest(dir, m).ok());
  return m;
}

void ExpectRange(const CheckpointReader& reader, Range r) {
  std::vector<float> v[3];
  for (auto& x : v) x.assign(r.size(), -1.0f);
  const absl::Status s = reader.Read(r, v[0].data(), v[1].data(), v[2].data());
  ASSERT_TRUE(s.ok()) << s;
  for (int sec = 0; sec < 3; ++sec) {
    for (int64_t i = 0; i < r.size(); ++i) {
      ASSERT_EQ(v[sec][i], Value(sec, r.begin + i))
          << "section " << sec << " element " << r.begin + i;
    }
  }
}

TEST(FormatTest, AnyWorldSizeReadsAnyOtherWorldSizesShards) {
  const ParamLayout layout = Layout();
  for (int saved : {1, 3, 4}) {
    const std::string dir = TempDir(absl::StrCat("w", saved));
    WriteCheckpoint(dir, layout, saved);
    auto reader = CheckpointReader::Open(dir);
    ASSERT_TRUE(reader.ok()) << reader.status();
    EXPECT_EQ(reader->manifest().shards_size(), saved);
    ASSERT_TRUE(reader->VerifyAll().ok());
    for (int loading : {1, 2, 3, 5}) {
      const Partition part(layout.numel(), loading);
      for (int r = 0; r < loading; ++r) {
        const Range s = part.Shard(r);
        SCOPED_TRACE(absl::StrCat("saved by ", saved, ", read by rank ", r,
                                  " of ", loading));
        ExpectRange(*reader, {std::min(s.begin, layout.numel()),
                              std::min(s.end, layout.numel())});
      }
    }
    // Pieces inside one checksummed range and across shard boundaries.
    ExpectRange(*reader, {5, 9});
    ExpectRange(*reader, {layout.numel() / 3 - 17, layout.numel() / 3 + 17});
    ExpectRange(*reader, {layout.numel() - 1, layout.numel()});
  }
}

TEST(FormatTest, LargeTensorsAreCutIntoBoundedChecksummedRanges) {
  const ParamLayout layout = Layout();
  const std::string dir = TempDir("cut");
  const Manifest m = WriteCheckpoint(dir, layout, 1);
  int wte_ranges = 0;
  for (const ShardRange& r : m.shards(0).ranges()) {
    EXPECT_LE(r.end() - r.begin(), kMaxRangeElements);
    if (r.tensor() == "wte.weight") ++wte_ranges;
  }
  EXPECT_EQ(wte_ranges, 2);
}

TEST(FormatTest, FlippedByteIsDataLossNamingFileTensorAndSection) {
  const ParamLayout layout = Layout();
  const std::string dir = TempDir("flip");
  const Manifest m = WriteCheckpoint(dir, layout, 2);
  const ShardFile& s = m.shards(1);
  const ShardRange& r = s.ranges(s.ranges_size() - 1);
  const std::string path = JoinPath(dir, s.file());
  auto bytes = ReadFileToString(path);
  ASSERT_TRUE(bytes.ok());
  (*bytes)[r.exp_avg_sq().file_offset() + 2] ^= 0x40;
  ASSERT_TRUE(WriteFileDurably(path, *bytes).ok());
  auto reader = CheckpointReader::Open(dir);
  ASSERT_TRUE(reader.ok());
  const absl::Status all = reader->VerifyAll();
  EXPECT_EQ(all.code(), absl::StatusCode::kDataLoss) << all;
  for (const std::string& part : {path, r.tensor(), std::string("exp_avg_sq")})
    EXPECT_TRUE(absl::StrContains(all.message(), part)) << all;
  std::vector<float> v(layout.numel());
  const absl::Status read =
      reader->Read({0, layout.numel()}, nullptr, nullptr, v.data());
  EXPECT_EQ(read.code(), absl::StatusCode::kDataLoss) << read;
  // A range that does not touch the damaged bytes still reads.
  EXPECT_TRUE(reader->Read({0, 10}, v.data(), v.data(), v.data()).ok());
}

TEST(FormatTest, TruncatedAndMissingShardsNameTheFile) {
  const ParamLayout layout = Layout();
  const std::string dir = TempDir("trunc");
  const Manifest m = WriteCheckpoint(dir, layout, 2);
  const std::string p0 = JoinPath(dir, m.shards(0).file());
  const std::string p1 = JoinPath(dir, m.shards(1).file());
  auto bytes = ReadFileToString(p0);
  ASSERT_TRUE(bytes.ok());
  ASSERT_TRUE(WriteFileDurably(p0, bytes->substr(0, bytes->size() - 4)).ok());
  ASSERT_TRUE(Unlink(p1).ok());
  auto reader = CheckpointReader::Open(dir);
  ASSERT_TRUE(reader.ok());
  std::vector<float> v(layout.numel());
  absl::Status s = reader->Read({0, 1}, v.data(), nullptr, nullptr);
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), p0)) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "truncated")) << s;
  s = reader->Read({layout.numel() - 1, layout.numel()}, v.data(), nullptr,
                   nullptr);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), p1)) << s;
}

TEST(FormatTest, DamagedManifestIsDataLossNamingIt) {
  const ParamLayout layout = Layout();
  const std::string dir = TempDir("manifest");
  WriteCheckpoint(dir, layout, 1);
  const std::string p = JoinPath(dir, kManifestName);
  auto bytes = ReadFileToString(p);
  ASSERT_TRUE(bytes.ok());
  for (size_t at : {size_t{3}, bytes->size() / 2, bytes->size() - 1}) {
    std::string damaged = *bytes;
    damaged[at] ^= 0x04;
    ASSERT_TRUE(WriteFileDurably(p, damaged).ok());
    auto m = ReadManifest(dir);
    EXPECT_EQ(m.status().code(), absl::StatusCode::kDataLoss)
        << "byte " << at << ": " << m.status();
    EXPECT_TRUE(absl::StrContains(m.status().message(), p)) << m.status();
  }
  ASSERT_TRUE(Unlink(p).ok());
  EXPECT_EQ(ReadManifest(dir).status().code(), absl::StatusCode::kNotFound);
}

TEST(FormatTest, ManifestOfAnotherModelIsInvalidArgument) {
  const ParamLayout layout = Layout();
  const std::string dir = TempDir("other");
  const Manifest m = WriteCheckpoint(dir, layout, 1);
  EXPECT_TRUE(CheckLayoutMatches(m, layout, "x/manifest.pb").ok());
  GptShape s = layout.shape();
  s.n_layer = 3;
  auto other = ParamLayout::ForGpt(s);
  ASSERT_TRUE(other.ok());
  const absl::Status st = CheckLayoutMatches(m, *other, "x/manifest.pb");
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
  EXPECT_TRUE(absl::StrContains(st.message(), "x/manifest.pb")) << st;
  EXPECT_TRUE(absl::StrContains(st.message(), "n_layer=3")) << st;
}

TEST(FormatTest, ResolvesStepDirectoriesAndRoots) {
  const ParamLayout layout = Layout();
  const std::string root = TempDir("root");
  EXPECT_EQ(ResolveCheckpointDir(root).status().code(),
            absl::StatusCode::kNotFound);
  auto none = FindLatest(root);
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
  const std::string step = JoinPath(root, StepDirName(12));
  ASSERT_TRUE(MakeDirectory(step).ok());
  WriteCheckpoint(step, layout, 1);
  ASSERT_TRUE(WriteFileDurably(JoinPath(root, kLatestName), "step_12\n").ok());
  auto resolved = ResolveCheckpointDir(root);
  ASSERT_TRUE(resolved.ok()) << resolved.status();
  EXPECT_EQ(*resolved, step);
  EXPECT_EQ(*ResolveCheckpointDir(step), step);
  ASSERT_TRUE(WriteFileDurably(JoinPath(root, kLatestName), "garbage").ok());
  EXPECT_EQ(ResolveCheckpointDir(root).status().code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(ResolveCheckpointDir(JoinPath(root, "nope")).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(ParseStepDirName("step_12"), 12);
  EXPECT_FALSE(ParseStepDirName("step_12.tmp-w4").has_value());
  EXPECT_FALSE(ParseStepDirName("step_").has_value());
}

}  // namespace
}  // namespace ckpt
}  // namespace zt
