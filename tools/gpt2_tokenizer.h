#ifndef ZEROTRAIN_TOOLS_GPT2_TOKENIZER_H_
#define ZEROTRAIN_TOOLS_GPT2_TOKENIZER_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace zt {

// GPT-2's reversible byte -> printable unicode mapping (bytes_to_unicode in
// OpenAI's encoder.py): printable Latin-1 bytes map to themselves, the other
// 68 bytes to U+0100.. in byte order. Returns the UTF-8 of the mapped code
// point.
std::string Gpt2ByteToUnicode(uint8_t byte);

// Splits text the way GPT-2's pattern
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// does, returning byte slices of `text`. Exact for ASCII. Beyond ASCII,
// letters are glibc's C.UTF-8 iswalpha and numbers a table of the common
// Unicode Nd/Nl/No ranges, which approximates \p{L}/\p{N}. Bytes that are not
// valid UTF-8 count as one "other" character each.
std::vector<absl::string_view> Gpt2PreTokenize(absl::string_view text);

// Parses an encoder.json: one JSON object mapping token strings to ids.
// kInvalidArgument with the byte offset on malformed JSON.
absl::StatusOr<absl::flat_hash_map<std::string, int32_t>> ParseEncoderJson(
    absl::string_view json);

// GPT-2 byte-level BPE from OpenAI's encoder.json and vocab.bpe.
class Gpt2Tokenizer {
 public:
  // kNotFound for a missing file; kInvalidArgument naming the file (and
  // line/offset) for malformed content.
  static absl::StatusOr<Gpt2Tokenizer> Load(const std::string& encoder_json,
                                            const std::string& vocab_bpe);
  // From file contents; `vocab_bpe` may start with a "#version" line.
  static absl::StatusOr<Gpt2Tokenizer> FromStrings(
      absl::string_view encoder_json, absl::string_view vocab_bpe);

  // kInvalidArgument naming the piece when a BPE result is not in the
  // encoder (impossible with GPT-2's own files, which cover all 256 bytes).
  absl::StatusOr<std::vector<int32_t>> Encode(absl::string_view text);
  // Inverse of Encode; unknown ids are skipped.
  std::string Decode(absl::Span<const int32_t> ids) const;

  // Largest id + 1.
  int32_t vocab_size() const { return vocab_size_; }
  // The id of "<|endoftext|>" if the encoder has it.
  std::optional<int32_t> eot_token() const { return eot_; }

 private:
  Gpt2Tokenizer() = default;
  // BPE of one pre-token, as encoder keys.
  std::vector<std::string> Bpe(absl::string_view piece) const;

  absl::flat_hash_map<std::string, int32_t> encoder_;
  std::vector<std::string> decoder_;  // id -> token string (mapped unicode)
  absl::flat_hash_map<std::string, int32_t> merge_rank_;  // "a b" -> rank
  absl::flat_hash_map<std::string, uint8_t> unicode_to_byte_;
  absl::flat_hash_map<std::string, std::vector<int32_t>> cache_;
  int32_t vocab_size_ = 0;
  std::optional<int32_t> eot_;
};

}  // namespace zt

#endif  // ZEROTRAIN_TOOLS_GPT2_TOKENIZER_H_
