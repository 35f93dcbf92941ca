#include "trainer/data.h"

#include <dirent.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "glog/logging.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "trainer/config.h"

namespace zt {
namespace {

using ::testing::HasSubstr;

std::string TestDir() {
  const char* dir = std::getenv("TEST_TMPDIR");
  return dir ? dir : "/tmp";
}

// A fresh directory per test so globs see only that test's shards.
std::string MakeDir(const std::string& name) {
  const std::string dir = TestDir() + "/" + name;
  std::string cmd = "rm -rf '" + dir + "' && mkdir -p '" + dir + "'";
  CHECK_EQ(std::system(cmd.c_str()), 0);
  return dir;
}

std::vector<uint16_t> Iota(int64_t n, int start, int modulo) {
  std::vector<uint16_t> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = (start + i) % modulo;
  return v;
}

void WriteRaw(const std::string& path, const std::vector<int32_t>& header,
              const std::vector<uint16_t>& tokens) {
  std::ofstream out(path, std::ios::binary);
  std::vector<int32_t> h(kShardHeaderInts, 0);
  std::copy(header.begin(), header.end(), h.begin());
  out.write(reinterpret_cast<const char*>(h.data()), h.size() * 4);
  out.write(reinterpret_cast<const char*>(tokens.data()), tokens.size() * 2);
}

std::string Msg(const absl::Status& s) { return std::string(s.message()); }

TEST(ShardTest, WriteThenReadRoundTrips) {
  const std::string dir = MakeDir("roundtrip");
  const std::string path = dir + "/a.bin";
  const std::vector<uint16_t> tokens = {0, 1, 65535, 50256, 7};
  ASSERT_TRUE(WriteShard(path, tokens).ok());
  absl::StatusOr<TokenShard> shard = ReadShard(path);
  ASSERT_TRUE(shard.ok()) << shard.status();
  EXPECT_EQ(shard->tokens, tokens);
  EXPECT_EQ(shard->path, path);
  absl::StatusOr<int64_t> count = ReadShardTokenCount(path);
  ASSERT_TRUE(count.ok());
  EXPECT_EQ(*count, 5);
}

TEST(ShardTest, HeaderIsLlmcLayout) {
  const std::string dir = MakeDir("layout");
  const std::string path = dir + "/a.bin";
  ASSERT_TRUE(WriteShard(path, {3, 4}).ok());
  std::ifstream in(path, std::ios::binary);
  std::vector<int32_t> header(kShardHeaderInts);
  in.read(reinterpret_cast<char*>(header.data()), 1024);
  uint16_t tokens[2];
  in.read(reinterpret_cast<char*>(tokens), 4);
  EXPECT_EQ(header[0], 20240520);
  EXPECT_EQ(header[1], 1);
  EXPECT_EQ(header[2], 2);
  for (int i = 3; i < kShardHeaderInts; ++i) EXPECT_EQ(header[i], 0);
  EXPECT_EQ(tokens[0], 3);
  EXPECT_EQ(tokens[1], 4);
  EXPECT_EQ(in.peek(), EOF);
}

TEST(ShardTest, OverwriteIsAtomicAndLeavesNoTemporaryFiles) {
  const std::string dir = MakeDir("atomic");
  const std::string path = dir + "/a.bin";
  ASSERT_TRUE(WriteShard(path, Iota(100, 0, 10)).ok());
  ASSERT_TRUE(WriteShard(path, Iota(3, 5, 10)).ok());
  absl::StatusOr<TokenShard> shard = ReadShard(path);
  ASSERT_TRUE(shard.ok());
  EXPECT_EQ(shard->tokens, Iota(3, 5, 10));
  std::vector<std::string> names;
  DIR* d = opendir(dir.c_str());
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] != '.') names.push_back(e->d_name);
  }
  closedir(d);
  EXPECT_EQ(names, std::vector<std::string>{"a.bin"});
}

TEST(ShardTest, WriteIntoMissingDirectoryIsNotFound) {
  const std::string path = TestDir() + "/no/such/dir/a.bin";
  absl::Status s = WriteShard(path, {1});
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(Msg(s), HasSubstr("/no/such/dir/a.bin"));
}

TEST(ShardTest, MissingFileIsNotFound) {
  const std::string path = TestDir() + "/missing.bin";
  absl::StatusOr<TokenShard> shard = ReadShard(path);
  EXPECT_EQ(shard.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(Msg(shard.status()), HasSubstr(path));
}

TEST(ShardTest, BadMagicIsDataLossNamingFile) {
  const std::string path = MakeDir("magic") + "/a.bin";
  WriteRaw(path, {20240521, 1, 2}, {1, 2});
  absl::StatusOr<TokenShard> shard = ReadShard(path);
  EXPECT_EQ(shard.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(Msg(shard.status()), HasSubstr(path + ": bad magic 20240521"));
}

TEST(ShardTest, WrongVersionIsInvalidArgument) {
  const std::string path = MakeDir("version") + "/a.bin";
  WriteRaw(path, {20240520, 2, 2}, {1, 2});
  absl::StatusOr<TokenShard> shard = ReadShard(path);
  EXPECT_EQ(shard.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Msg(shard.status()), HasSubstr(path));
  EXPECT_THAT(Msg(shard.status()), HasSubstr("version 2"));
}

TEST(ShardTest, TruncatedHeaderIsDataLoss) {
  const std::string path = MakeDir("short_header") + "/a.bin";
  std::ofstream(path, std::ios::binary) << "tiny";
  absl::StatusOr<TokenShard> shard = ReadShard(path);
  EXPECT_EQ(shard.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(Msg(shard.status()), HasSubstr(path + ": truncated"));
}

TEST(ShardTest, TruncatedTokensAreDataLoss) {
  const std::string path = MakeDir("short_tokens") + "/a.bin";
  WriteRaw(path, {20240520, 1, 10}, Iota(9, 0, 10));
  absl::StatusOr<TokenShard> shard = ReadShard(path);
  EXPECT_EQ(shard.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(Msg(shard.status()),
              HasSubstr(path + ": truncated token shard: header says 10"));
}

TEST(ShardTest, ExtraBytesAreACountMismatch) {
  const std::string path = MakeDir("long_tokens") + "/a.bin";
  WriteRaw(path, {20240520, 1, 10}, Iota(12, 0, 10));
  absl::StatusOr<int64_t> count = ReadShardTokenCount(path);
  EXPECT_EQ(count.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(Msg(count.status()), HasSubstr(path + ": token count mismatch"));
}

TEST(ShardTest, NegativeCountIsDataLoss) {
  const std::string path = MakeDir("negative") + "/a.bin";
  WriteRaw(path, {20240520, 1, -4}, {});
  absl::StatusOr<TokenShard> shard = ReadShard(path);
  EXPECT_EQ(shard.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(Msg(shard.status()), HasSubstr(path));
}

TEST(GlobTest, NoMatchIsNotFoundNamingPattern) {
  const std::string pattern = MakeDir("empty_glob") + "/*.bin";
  absl::StatusOr<std::vector<std::string>> paths = GlobFiles(pattern);
  EXPECT_EQ(paths.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(Msg(paths.status()), HasSubstr(pattern));
}

DataLoaderOptions Options(int64_t b, int64_t t, int rank = 0, int world = 1,
                          int64_t vocab = 65536) {
  DataLoaderOptions o;
  o.micro_batch_size = b;
  o.seq_len = t;
  o.rank = rank;
  o.world_size = world;
  o.vocab_size = vocab;
  return o;
}

std::unique_ptr<DataLoader> MustLoad(const std::string& glob,
                                     const DataLoaderOptions& o) {
  absl::StatusOr<std::unique_ptr<DataLoader>> loader =
      DataLoader::FromShards(glob, o);
  CHECK(loader.ok()) << loader.status();
  return *std::move(loader);
}

Batch MustNext(DataLoader* loader) {
  Batch b;
  absl::Status s = loader->Next(&b);
  CHECK(s.ok()) << s;
  return b;
}

// Shards whose token at index i is (base + i) % 60000, so every window is
// recognisable.
std::string MakeShards(const std::string& name,
                       const std::vector<int64_t>& sizes) {
  const std::string dir = MakeDir(name);
  for (size_t k = 0; k < sizes.size(); ++k) {
    CHECK(WriteShard(absl::StrCat(dir, "/train_", k, ".bin"),
                     Iota(sizes[k], 10000 * k, 60000))
              .ok());
  }
  return dir + "/train_*.bin";
}

TEST(DataLoaderTest, TargetsAreInputsShiftedByOne) {
  const std::string glob = MakeShards("shift", {1000});
  auto loader = MustLoad(glob, Options(2, 8));
  const Batch b = MustNext(loader.get());
  ASSERT_EQ(b.inputs.size(), 16u);
  for (int i = 0; i < 16; ++i) {
    EXPECT_EQ(b.inputs[i], i);
    EXPECT_EQ(b.targets[i], i + 1);
  }
  EXPECT_EQ(loader->position(), (DataPosition{0, 16}));
}

TEST(DataLoaderTest, RanksTakeDisjointSlicesOfTheGlobalBatch) {
  const std::string glob = MakeShards("ranks", {5000, 3000});
  const int world = 3, b = 2, t = 16;
  auto whole = MustLoad(glob, Options(world * b, t));
  std::vector<std::unique_ptr<DataLoader>> ranks;
  for (int r = 0; r < world; ++r) {
    ranks.push_back(MustLoad(glob, Options(b, t, r, world)));
  }
  for (int step = 0; step < 200; ++step) {  // crosses shards and wraps
    const Batch global = MustNext(whole.get());
    std::vector<int32_t> inputs, targets;
    for (int r = 0; r < world; ++r) {
      const Batch part = MustNext(ranks[r].get());
      inputs.insert(inputs.end(), part.inputs.begin(), part.inputs.end());
      targets.insert(targets.end(), part.targets.begin(), part.targets.end());
      EXPECT_EQ(ranks[r]->position(), whole->position()) << "rank " << r;
    }
    ASSERT_EQ(inputs, global.inputs) << "step " << step;
    ASSERT_EQ(targets, global.targets) << "step " << step;
  }
}

TEST(DataLoaderTest, MovesToNextShardAndWrapsAround) {
  // Windows of 2*10+1 = 21 tokens: shard 0 (50 tokens) serves offsets 0 and
  // 20, shard 1 (30 tokens) offset 0, then back to shard 0.
  const std::string glob = MakeShards("wrap", {50, 30});
  auto loader = MustLoad(glob, Options(2, 10));
  std::vector<std::pair<int32_t, DataPosition>> seen;
  for (int i = 0; i < 5; ++i) {
    const Batch b = MustNext(loader.get());
    seen.push_back({b.inputs[0], loader->position()});
  }
  EXPECT_EQ(seen[0].first, 0);
  EXPECT_EQ(seen[1].first, 20);
  EXPECT_EQ(seen[2].first, 10000);  // shard 1 starts at 10000
  EXPECT_EQ(seen[2].second, (DataPosition{1, 20}));
  EXPECT_EQ(seen[3].first, 0);  // wrapped
  EXPECT_EQ(seen[4].first, 20);
}

TEST(DataLoaderTest, SeekResumesExactlyAlsoOnAnotherWorldSize) {
  const std::string glob = MakeShards("resume", {4000, 4000});
  auto a = MustLoad(glob, Options(4, 32));
  for (int i = 0; i < 37; ++i) MustNext(a.get());
  const DataPosition saved = a->position();
  std::vector<Batch> expected;
  for (int i = 0; i < 20; ++i) expected.push_back(MustNext(a.get()));

  auto b = MustLoad(glob, Options(4, 32));
  ASSERT_TRUE(b->Seek(saved).ok());
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(MustNext(b.get()).inputs, expected[i].inputs) << i;
  }

  // Two ranks with half the rows each continue the same token stream.
  auto r0 = MustLoad(glob, Options(2, 32, 0, 2));
  auto r1 = MustLoad(glob, Options(2, 32, 1, 2));
  ASSERT_TRUE(r0->Seek(saved).ok());
  ASSERT_TRUE(r1->Seek(saved).ok());
  for (int i = 0; i < 20; ++i) {
    std::vector<int32_t> joined = MustNext(r0.get()).inputs;
    const Batch second = MustNext(r1.get());
    joined.insert(joined.end(), second.inputs.begin(), second.inputs.end());
    EXPECT_EQ(joined, expected[i].inputs) << i;
  }
}

TEST(DataLoaderTest, SeekOutsideTheDataIsInvalidArgument) {
  const std::string glob = MakeShards("seek_bad", {1000});
  auto loader = MustLoad(glob, Options(2, 8));
  EXPECT_EQ(loader->Seek({1, 0}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(loader->Seek({0, 1001}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(loader->Seek({0, 1000}).ok());  // moves on at the next batch
}

TEST(DataLoaderTest, TokenAtOrAboveVocabIsInvalidArgumentNamingFile) {
  const std::string dir = MakeDir("vocab");
  std::vector<uint16_t> tokens = Iota(100, 0, 50);
  tokens[77] = 50;
  ASSERT_TRUE(WriteShard(dir + "/s.bin", tokens).ok());
  auto loader = MustLoad(dir + "/*.bin", Options(2, 8, 0, 1, /*vocab=*/50));
  Batch b;
  absl::Status s = loader->Next(&b);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Msg(s), HasSubstr(dir + "/s.bin: token 50 at index 77 is >= "
                                      "model.vocab_size = 50"));
}

TEST(DataLoaderTest, ShardTooSmallForOneGlobalBatchIsRejected) {
  const std::string glob = MakeShards("small", {1000, 40});
  absl::StatusOr<std::unique_ptr<DataLoader>> loader =
      DataLoader::FromShards(glob, Options(2, 10, 0, 2));
  EXPECT_EQ(loader.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Msg(loader.status()), HasSubstr("train_1.bin: 40 tokens"));
  EXPECT_THAT(Msg(loader.status()), HasSubstr("41"));
}

TEST(DataLoaderTest, CorruptShardInGlobFailsAtConstruction) {
  const std::string glob = MakeShards("corrupt", {1000});
  const std::string bad = glob.substr(0, glob.size() - 5) + "9.bin";
  WriteRaw(bad, {123, 1, 0}, {});
  absl::StatusOr<std::unique_ptr<DataLoader>> loader =
      DataLoader::FromShards(glob, Options(2, 10));
  EXPECT_EQ(loader.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(Msg(loader.status()), HasSubstr("train_9.bin: bad magic"));
}

std::shared_ptr<const SyntheticCorpus> Corpus(int64_t block) {
  SyntheticCorpusConfig c;
  c.set_block_tokens(block);
  absl::StatusOr<SyntheticCorpus> corpus = SyntheticCorpus::Create(c);
  CHECK(corpus.ok());
  return std::make_shared<const SyntheticCorpus>(*std::move(corpus));
}

TEST(SyntheticLoaderTest, ServesTheStreamWithShardSemantics) {
  auto corpus = Corpus(/*block=*/1000);  // batches straddle blocks
  const int world = 2, b = 3, t = 50;
  std::vector<std::unique_ptr<DataLoader>> ranks;
  for (int r = 0; r < world; ++r) {
    auto loader = DataLoader::FromSynthetic(
        corpus, SyntheticCorpus::kTrainStream, Options(b, t, r, world, 64));
    ASSERT_TRUE(loader.ok()) << loader.status();
    ranks.push_back(*std::move(loader));
  }
  std::vector<int32_t> stream(world * b * t * 40 + 1);
  corpus->Generate(SyntheticCorpus::kTrainStream, 0, absl::MakeSpan(stream));
  for (int step = 0; step < 40; ++step) {
    for (int r = 0; r < world; ++r) {
      const Batch batch = MustNext(ranks[r].get());
      const int64_t start = (step * world + r) * b * t;
      for (int i = 0; i < b * t; ++i) {
        ASSERT_EQ(batch.inputs[i], stream[start + i]);
        ASSERT_EQ(batch.targets[i], stream[start + i + 1]);
      }
    }
  }
  EXPECT_EQ(ranks[0]->position(), (DataPosition{0, 40 * world * b * t}));
  EXPECT_EQ(ranks[0]->synthetic_corpus(), corpus.get());
}

TEST(SyntheticLoaderTest, SeekResumesExactly) {
  auto corpus = Corpus(4096);
  auto a = *DataLoader::FromSynthetic(corpus, 0, Options(4, 16, 0, 1, 64));
  for (int i = 0; i < 100; ++i) MustNext(a.get());
  const DataPosition saved = a->position();
  const Batch expected = MustNext(a.get());
  auto b = *DataLoader::FromSynthetic(corpus, 0, Options(4, 16, 0, 1, 64));
  ASSERT_TRUE(b->Seek(saved).ok());
  EXPECT_EQ(MustNext(b.get()).inputs, expected.inputs);
}

TEST(SyntheticLoaderTest, CorpusVocabAboveModelVocabIsRejected) {
  auto loader =
      DataLoader::FromSynthetic(Corpus(4096), 0, Options(4, 16, 0, 1, 32));
  EXPECT_EQ(loader.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Msg(loader.status()), HasSubstr("data.synthetic.vocab_size"));
}

TEST(DataLoaderFromConfigTest,
     DefaultConfigTrainsAndEvaluatesOnDifferentStreams) {
  const TrainConfig config = DefaultConfig();
  auto train = DataLoader::FromConfig(config, DataLoader::Split::kTrain, 0, 1);
  auto eval = DataLoader::FromConfig(config, DataLoader::Split::kEval, 0, 1);
  ASSERT_TRUE(train.ok()) << train.status();
  ASSERT_TRUE(eval.ok()) << eval.status();
  ASSERT_NE((*train)->synthetic_corpus(), nullptr);
  const Batch a = MustNext(train->get());
  const Batch b = MustNext(eval->get());
  EXPECT_EQ(a.batch_size, config.batch().micro_batch_size());
  EXPECT_EQ(a.seq_len, config.batch().seq_len());
  EXPECT_NE(a.inputs, b.inputs);
}

TEST(DataLoaderFromConfigTest, ShardErrorsNameTheConfigField) {
  TrainConfig config = DefaultConfig();
  config.mutable_data()->mutable_shards()->set_train_glob(
      TestDir() + "/nothing_here_*.bin");
  auto train = DataLoader::FromConfig(config, DataLoader::Split::kTrain, 0, 1);
  EXPECT_EQ(train.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(Msg(train.status()), HasSubstr("data.shards.train_glob"));
  auto eval = DataLoader::FromConfig(config, DataLoader::Split::kEval, 0, 1);
  EXPECT_EQ(eval.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Msg(eval.status()), HasSubstr("data.shards.val_glob"));
}

}  // namespace
}  // namespace zt
