// Turns a text file into llm.c token shards for the trainer.
//
//   bazel run //tools:prepare_data -- --input=input.txt
//       --output_prefix=/data/tiny/tiny [--val_fraction=0.1]
//       [--encoder_json=encoder.json --vocab_bpe=vocab.bpe]
//
// Writes <prefix>_val_000000.bin, ... (the first val_fraction of the tokens)
// and <prefix>_train_000000.bin, ... (the rest), at most --shard_tokens
// tokens each. Byte-level tokens (vocab 256: model.vocab_size = 256) by
// default; GPT-2 BPE (vocab 50257) with --encoder_json and --vocab_bpe, where
// the text is preceded by <|endoftext|> as GPT-2 and llm.c delimit documents.
// The whole input is one document.

#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/status_macros.h"
#include "tools/gpt2_tokenizer.h"
#include "trainer/data.h"

ABSL_FLAG(std::string, input, "", "Text file to tokenise (required).");
ABSL_FLAG(std::string, output_prefix, "",
          "Shards are written to <prefix>_{train,val}_NNNNNN.bin (required).");
ABSL_FLAG(int64_t, shard_tokens, 100000000,
          "Most tokens per shard (llm.c uses 1e8).");
ABSL_FLAG(double, val_fraction, 0.1,
          "Fraction of the tokens, from the start, for validation; [0, 1).");
ABSL_FLAG(std::string, encoder_json, "",
          "GPT-2 encoder.json; with --vocab_bpe selects GPT-2 BPE.");
ABSL_FLAG(std::string, vocab_bpe, "", "GPT-2 vocab.bpe (merges).");
ABSL_FLAG(bool, prepend_eot, true,
          "With BPE: start the token stream with <|endoftext|>.");

namespace zt {
namespace {

absl::StatusOr<std::string> ReadText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Writes `tokens` as numbered shards; returns how many.
absl::StatusOr<int> WriteShards(const std::string& prefix,
                                absl::string_view split,
                                const std::vector<uint16_t>& tokens,
                                int64_t shard_tokens) {
  int count = 0;
  for (size_t start = 0; start < tokens.size(); start += shard_tokens) {
    const size_t n = std::min<size_t>(shard_tokens, tokens.size() - start);
    const std::string path =
        absl::StrFormat("%s_%s_%06d.bin", prefix, split, count);
    ZT_RETURN_IF_ERROR(
        WriteShard(path, absl::MakeConstSpan(tokens.data() + start, n)));
    ++count;
  }
  return count;
}

absl::Status Run() {
  const std::string input = absl::GetFlag(FLAGS_input);
  const std::string prefix = absl::GetFlag(FLAGS_output_prefix);
  const int64_t shard_tokens = absl::GetFlag(FLAGS_shard_tokens);
  const double val_fraction = absl::GetFlag(FLAGS_val_fraction);
  const std::string encoder_json = absl::GetFlag(FLAGS_encoder_json);
  const std::string vocab_bpe = absl::GetFlag(FLAGS_vocab_bpe);
  if (input.empty() || prefix.empty()) {
    return absl::InvalidArgumentError(
        "--input and --output_prefix are required");
  }
  if (shard_tokens < 1 || shard_tokens > std::numeric_limits<int32_t>::max()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--shard_tokens = ", shard_tokens, " is out of range: must be in [1, ",
        std::numeric_limits<int32_t>::max(), "]"));
  }
  if (!(val_fraction >= 0 && val_fraction < 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--val_fraction = ", val_fraction,
                     " is out of range: must be in [0, 1)"));
  }
  if (encoder_json.empty() != vocab_bpe.empty()) {
    return absl::InvalidArgumentError(
        "--encoder_json and --vocab_bpe go together (GPT-2 BPE)");
  }
  ZT_ASSIGN_OR_RETURN(const std::string text, ReadText(input));

  std::vector<uint16_t> tokens;
  int64_t vocab_size;
  if (encoder_json.empty()) {
    vocab_size = 256;
    tokens.assign(text.begin(), text.end());
    for (uint16_t& t : tokens) t &= 0xFF;  // char may be signed
  } else {
    ZT_ASSIGN_OR_RETURN(Gpt2Tokenizer tokenizer,
                        Gpt2Tokenizer::Load(encoder_json, vocab_bpe));
    vocab_size = tokenizer.vocab_size();
    if (vocab_size > 65536) {
      return absl::InvalidArgumentError(
          absl::StrCat(encoder_json, ": vocabulary of ", vocab_size,
                       " does not fit uint16 shard tokens"));
    }
    ZT_ASSIGN_OR_RETURN(std::vector<int32_t> ids, tokenizer.Encode(text));
    if (absl::GetFlag(FLAGS_prepend_eot) && tokenizer.eot_token()) {
      tokens.push_back(*tokenizer.eot_token());
    }
    tokens.insert(tokens.end(), ids.begin(), ids.end());
  }

  const size_t n_val = static_cast<size_t>(
      std::llround(val_fraction * static_cast<double>(tokens.size())));
  const std::vector<uint16_t> val(tokens.begin(), tokens.begin() + n_val);
  const std::vector<uint16_t> train(tokens.begin() + n_val, tokens.end());
  ZT_ASSIGN_OR_RETURN(const int val_shards,
                      WriteShards(prefix, "val", val, shard_tokens));
  ZT_ASSIGN_OR_RETURN(const int train_shards,
                      WriteShards(prefix, "train", train, shard_tokens));
  std::printf(
      "prepare_data: %zu bytes -> %zu tokens (vocab %lld, %s)\n"
      "  train: %zu tokens in %d shard(s): %s_train_*.bin\n"
      "  val:   %zu tokens in %d shard(s): %s_val_*.bin\n",
      text.size(), tokens.size(), static_cast<long long>(vocab_size),
      encoder_json.empty() ? "bytes" : "GPT-2 BPE", train.size(), train_shards,
      prefix.c_str(), val.size(), val_shards, prefix.c_str());
  return absl::OkStatus();
}

}  // namespace
}  // namespace zt

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Turns a text file into llm.c token shards (byte-level or GPT-2 BPE).");
  absl::ParseCommandLine(argc, argv);
  const absl::Status status = zt::Run();
  if (!status.ok()) {
    std::fprintf(stderr, "prepare_data: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}
