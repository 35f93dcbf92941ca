#include "tools/gpt2_tokenizer.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace zt {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::vector<std::string> Split(absl::string_view text) {
  std::vector<std::string> out;
  for (absl::string_view p : Gpt2PreTokenize(text)) out.emplace_back(p);
  return out;
}

TEST(Gpt2ByteToUnicodeTest, PrintableBytesMapToThemselvesOthersAboveU0100) {
  EXPECT_EQ(Gpt2ByteToUnicode('A'), "A");
  EXPECT_EQ(Gpt2ByteToUnicode('~'), "~");
  EXPECT_EQ(Gpt2ByteToUnicode(0xE9), "\u00e9");
  EXPECT_EQ(Gpt2ByteToUnicode(0x00), "\u0100");
  EXPECT_EQ(Gpt2ByteToUnicode(' '), "\u0120");   // GPT-2's 'Ġ'
  EXPECT_EQ(Gpt2ByteToUnicode('\n'), "\u010a");  // 'Ċ'
  EXPECT_EQ(Gpt2ByteToUnicode(0x7F), "\u0121");
  EXPECT_EQ(Gpt2ByteToUnicode(0xAD), "\u0143");  // the 68th and last
}

TEST(Gpt2ByteToUnicodeTest, IsABijection) {
  std::vector<std::string> all;
  for (int b = 0; b < 256; ++b) all.push_back(Gpt2ByteToUnicode(b));
  std::sort(all.begin(), all.end());
  EXPECT_EQ(std::unique(all.begin(), all.end()), all.end());
}

TEST(Gpt2PreTokenizeTest, WordsKeepTheirLeadingSpace) {
  EXPECT_THAT(Split("Hello world's test"),
              ElementsAre("Hello", " world", "'s", " test"));
  EXPECT_THAT(Split("I'm here, they'll"),
              ElementsAre("I", "'m", " here", ",", " they", "'ll"));
}

TEST(Gpt2PreTokenizeTest, NumbersAndPunctuationAreSeparateRuns) {
  EXPECT_THAT(Split("123abc 42!?"), ElementsAre("123", "abc", " 42", "!?"));
  EXPECT_THAT(Split("'x !'s"), ElementsAre("'", "x", " !'", "s"));
}

TEST(Gpt2PreTokenizeTest, WhitespaceRunsLeaveOneSpaceForTheNextWord) {
  EXPECT_THAT(Split("a  b"), ElementsAre("a", " ", " b"));
  EXPECT_THAT(Split("a   b"), ElementsAre("a", "  ", " b"));
  EXPECT_THAT(Split("  foo"), ElementsAre(" ", " foo"));
  EXPECT_THAT(Split("x\n\ny"), ElementsAre("x", "\n", "\n", "y"));
  EXPECT_THAT(Split("\t\tfoo"), ElementsAre("\t", "\t", "foo"));
  EXPECT_THAT(Split("end.  "), ElementsAre("end", ".", "  "));
  EXPECT_THAT(Split("a \n b"), ElementsAre("a", " \n", " b"));
}

TEST(Gpt2PreTokenizeTest, NonAsciiLettersDigitsAndInvalidBytes) {
  EXPECT_THAT(Split("h\u00e9llo w\u00f6rld"),
              ElementsAre("h\u00e9llo", " w\u00f6rld"));
  EXPECT_THAT(Split("x\u0663\u0664"), ElementsAre("x", "\u0663\u0664"));
  EXPECT_THAT(Split("\u4e2d\u6587 ok"), ElementsAre("\u4e2d\u6587", " ok"));
  EXPECT_THAT(Split("a\xff"
                    "b"),
              ElementsAre("a", "\xff", "b"));
  EXPECT_THAT(Split("a\u3000b"), ElementsAre("a", "\u3000", "b"));
}

TEST(Gpt2PreTokenizeTest, SlicesCoverTheTextExactly) {
  const std::string text = "It's 2024!  Ünïcödé\ttabs\n\n and  'quotes' \xc3";
  std::string joined;
  for (absl::string_view p : Gpt2PreTokenize(text)) joined += std::string(p);
  EXPECT_EQ(joined, text);
}

TEST(ParseEncoderJsonTest, ParsesEscapesAndSurrogatePairs) {
  auto enc = ParseEncoderJson(
      R"({"a": 0, "\u0120b": 1, "\"q\\": 2, "\ud83d\ude00": 3, "\/": 4})");
  ASSERT_TRUE(enc.ok()) << enc.status();
  EXPECT_EQ(enc->at("a"), 0);
  EXPECT_EQ(enc->at("\u0120b"), 1);
  EXPECT_EQ(enc->at("\"q\\"), 2);
  EXPECT_EQ(enc->at("\U0001F600"), 3);
  EXPECT_EQ(enc->at("/"), 4);
}

TEST(ParseEncoderJsonTest, MalformedJsonNamesTheOffset) {
  auto enc = ParseEncoderJson(R"({"a": 0, "b" 1})");
  EXPECT_EQ(enc.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(enc.status().message()),
              HasSubstr("JSON at byte 13: expected ':'"));
  enc = ParseEncoderJson(R"({"a": -1})");
  EXPECT_EQ(enc.status().code(), absl::StatusCode::kInvalidArgument);
  enc = ParseEncoderJson(R"({"a": 1} x)");
  EXPECT_EQ(enc.status().code(), absl::StatusCode::kInvalidArgument);
}

// A hand-made vocabulary: "hello" and " hello" merge fully, " world" only
// its first two symbols.
constexpr char kEncoder[] = R"({
  "hello": 0, "\u0120hello": 1, "\u0120w": 2, "o": 3, "r": 4, "l": 5,
  "d": 6, "<|endoftext|>": 7, "h": 8, "e": 9, "\u0120": 10
})";
constexpr char kMerges[] =
    "#version: 0.2\n"
    "h e\n"
    "l l\n"
    "he ll\n"
    "hell o\n"
    "\xc4\xa0 hello\n"  // "Ġ hello"
    "\xc4\xa0 w\n";

TEST(Gpt2TokenizerTest, AppliesMergesByRank) {
  auto t = Gpt2Tokenizer::FromStrings(kEncoder, kMerges);
  ASSERT_TRUE(t.ok()) << t.status();
  auto ids = t->Encode("hello hello world");
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_THAT(*ids, ElementsAre(0, 1, 2, 3, 4, 5, 6));
  EXPECT_EQ(t->Decode(*ids), "hello hello world");
  EXPECT_EQ(t->vocab_size(), 11);
  EXPECT_EQ(t->eot_token(), 7);
}

TEST(Gpt2TokenizerTest, MergeOrderDecidesTheSegmentation) {
  const char* encoder = R"({"a": 0, "b": 1, "c": 2, "ab": 3, "bc": 4})";
  auto ab_first = Gpt2Tokenizer::FromStrings(encoder, "a b\nb c\n");
  auto bc_first = Gpt2Tokenizer::FromStrings(encoder, "b c\na b\n");
  ASSERT_TRUE(ab_first.ok() && bc_first.ok());
  EXPECT_THAT(*ab_first->Encode("abc"), ElementsAre(3, 2));
  EXPECT_THAT(*bc_first->Encode("abc"), ElementsAre(0, 4));
  // Every occurrence of the best pair merges, left to right.
  EXPECT_THAT(*ab_first->Encode("ababa"), ElementsAre(3, 3, 0));
}

TEST(Gpt2TokenizerTest, PieceMissingFromEncoderIsNamed) {
  auto t = Gpt2Tokenizer::FromStrings(kEncoder, kMerges);
  ASSERT_TRUE(t.ok());
  auto ids = t->Encode("hex");
  EXPECT_EQ(ids.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(ids.status().message()),
              HasSubstr("BPE token 'he' (from 'hex')"));
}

TEST(Gpt2TokenizerTest, MalformedMergeLineIsNamed) {
  auto t = Gpt2Tokenizer::FromStrings(kEncoder, "#version: 0.2\nh e\nabc\n");
  EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(t.status().message()), HasSubstr("vocab.bpe line 3"));
}

TEST(Gpt2TokenizerTest, MissingFilesAreNotFound) {
  auto t = Gpt2Tokenizer::Load("/nonexistent/encoder.json", "/nonexistent/v");
  EXPECT_EQ(t.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(t.status().message()),
              HasSubstr("/nonexistent/encoder.json"));
}

}  // namespace
}  // namespace zt
