// Runs the prepare_data binary and reads its shards back with the trainer's
// reader.
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "trainer/data.h"

namespace zt {
namespace {

using ::testing::ElementsAre;

// Runfiles-relative: bazel runs tests from the workspace's runfiles root.
constexpr char kBinary[] = "tools/prepare_data";

std::string TmpDir() {
  const char* d = std::getenv("TEST_TMPDIR");
  return d ? d : "/tmp";
}

std::string Write(const std::string& name, const std::string& content) {
  const std::string path = TmpDir() + "/" + name;
  std::ofstream(path, std::ios::binary) << content;
  return path;
}

int RunPrepareData(const std::string& args) {
  const std::string cmd = absl::StrCat(kBinary, " ", args, " >", TmpDir(),
                                       "/stdout 2>", TmpDir(), "/stderr");
  return WEXITSTATUS(std::system(cmd.c_str()));
}

std::string Stderr() {
  std::ifstream in(TmpDir() + "/stderr");
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::vector<uint16_t> ReadAll(const std::string& glob) {
  std::vector<uint16_t> all;
  absl::StatusOr<std::vector<std::string>> paths = GlobFiles(glob);
  if (!paths.ok()) return all;
  for (const std::string& p : *paths) {
    absl::StatusOr<TokenShard> shard = ReadShard(p);
    EXPECT_TRUE(shard.ok()) << shard.status();
    if (shard.ok()) {
      all.insert(all.end(), shard->tokens.begin(), shard->tokens.end());
    }
  }
  return all;
}

TEST(PrepareDataTest, ByteLevelShardsHoldTheTextSplitIntoValThenTrain) {
  std::string text;
  for (int i = 0; i < 50; ++i) text += "To be, or not to be: \xc3\xa9\n";
  const std::string input = Write("bytes.txt", text);
  const std::string prefix = TmpDir() + "/bytes";
  ASSERT_EQ(RunPrepareData(
                absl::StrCat("--input=", input, " --output_prefix=", prefix,
                             " --shard_tokens=300 --val_fraction=0.2")),
            0)
      << Stderr();
  const std::vector<uint16_t> val = ReadAll(prefix + "_val_*.bin");
  const std::vector<uint16_t> train = ReadAll(prefix + "_train_*.bin");
  const size_t n_val = static_cast<size_t>(0.2 * text.size() + 0.5);
  ASSERT_EQ(val.size(), n_val);
  ASSERT_EQ(val.size() + train.size(), text.size());
  std::vector<uint16_t> all = val;
  all.insert(all.end(), train.begin(), train.end());
  for (size_t i = 0; i < text.size(); ++i) {
    ASSERT_EQ(all[i], static_cast<unsigned char>(text[i])) << i;
  }
  // 300 tokens per shard at most: several train shards, numbered from 0.
  absl::StatusOr<std::vector<std::string>> shards =
      GlobFiles(prefix + "_train_*.bin");
  ASSERT_TRUE(shards.ok());
  EXPECT_EQ(shards->size(), (train.size() + 299) / 300);
  EXPECT_EQ(shards->front(), prefix + "_train_000000.bin");
}

TEST(PrepareDataTest, Gpt2BpeWithTinyVocabularyPrependsEndOfText) {
  const std::string encoder = Write("encoder.json", R"({
    "hello": 0, "\u0120hello": 1, "\u0120w": 2, "o": 3, "r": 4, "l": 5,
    "d": 6, "<|endoftext|>": 7, "\u010a": 8})");
  const std::string merges = Write("vocab.bpe",
                                   "#version: 0.2\n"
                                   "h e\nl l\nhe ll\nhell o\n"
                                   "\xc4\xa0 hello\n\xc4\xa0 w\n");
  const std::string input = Write("bpe.txt", "hello hello world\n");
  const std::string prefix = TmpDir() + "/bpe";
  ASSERT_EQ(RunPrepareData(
                absl::StrCat("--input=", input, " --output_prefix=", prefix,
                             " --val_fraction=0 --encoder_json=", encoder,
                             " --vocab_bpe=", merges)),
            0)
      << Stderr();
  EXPECT_THAT(ReadAll(prefix + "_train_*.bin"),
              ElementsAre(7, 0, 1, 2, 3, 4, 5, 6, 8));
  EXPECT_TRUE(ReadAll(prefix + "_val_*.bin").empty());
}

TEST(PrepareDataTest, BadArgumentsFailWithAMessage) {
  EXPECT_NE(RunPrepareData("--input=/nonexistent.txt --output_prefix=/tmp/x"),
            0);
  EXPECT_NE(Stderr().find("/nonexistent.txt"), std::string::npos) << Stderr();

  const std::string input = Write("small.txt", "abc");
  EXPECT_NE(RunPrepareData(absl::StrCat("--input=", input, " --output_prefix=",
                                        TmpDir(), "/x --val_fraction=1.5")),
            0);
  EXPECT_NE(Stderr().find("--val_fraction = 1.5"), std::string::npos)
      << Stderr();

  EXPECT_NE(RunPrepareData(absl::StrCat("--input=", input, " --output_prefix=",
                                        TmpDir(), "/x --encoder_json=e.json")),
            0);
  EXPECT_NE(Stderr().find("--vocab_bpe"), std::string::npos) << Stderr();
}

}  // namespace
}  // namespace zt
