#include "tools/gpt2_tokenizer.h"

#include <locale.h>
#include <wctype.h>

#include <array>
#include <fstream>
#include <limits>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "core/status_macros.h"

namespace zt {
namespace {

constexpr char32_t kInvalidByte = 0xFFFFFFFF;

void AppendUtf8(char32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

// Decodes the UTF-8 character at s[i]; sets *len to its byte length. An
// invalid or truncated sequence is one byte of kInvalidByte.
char32_t DecodeUtf8(absl::string_view s, size_t i, size_t* len) {
  const unsigned char c = s[i];
  int n;
  char32_t cp;
  if (c < 0x80) {
    *len = 1;
    return c;
  } else if ((c & 0xE0) == 0xC0) {
    n = 2;
    cp = c & 0x1F;
  } else if ((c & 0xF0) == 0xE0) {
    n = 3;
    cp = c & 0x0F;
  } else if ((c & 0xF8) == 0xF0) {
    n = 4;
    cp = c & 0x07;
  } else {
    *len = 1;
    return kInvalidByte;
  }
  if (i + n > s.size()) {
    *len = 1;
    return kInvalidByte;
  }
  for (int k = 1; k < n; ++k) {
    const unsigned char cc = s[i + k];
    if ((cc & 0xC0) != 0x80) {
      *len = 1;
      return kInvalidByte;
    }
    cp = (cp << 6) | (cc & 0x3F);
  }
  // Overlong forms and surrogates are not valid UTF-8.
  static constexpr char32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < kMin[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
    *len = 1;
    return kInvalidByte;
  }
  *len = n;
  return cp;
}

// The `regex` module's \s: Unicode White_Space.
bool IsSpace(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 ||
         c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

// Common \p{N} ranges beyond ASCII: decimal digits of the major scripts
// (each [start, start + 9]) and frequent Nl/No characters. glibc's ctype
// puts such digits under "alpha", so they must be caught first.
bool IsNumber(char32_t c) {
  if (c >= '0' && c <= '9') return true;
  if (c < 0x80) return false;
  static constexpr char32_t kDigitBlocks[] = {
      0x0660, 0x06F0, 0x07C0, 0x0966, 0x09E6, 0x0A66, 0x0AE6, 0x0B66, 0x0BE6,
      0x0C66, 0x0CE6, 0x0D66, 0x0DE6, 0x0E50, 0x0ED0, 0x0F20, 0x1040, 0x1090,
      0x17E0, 0x1810, 0x1946, 0x19D0, 0x1A80, 0x1A90, 0x1B50, 0x1BB0, 0x1C40,
      0x1C50, 0xA620, 0xA8D0, 0xA900, 0xA9D0, 0xA9F0, 0xAA50, 0xABF0, 0xFF10};
  for (char32_t start : kDigitBlocks) {
    if (c >= start && c <= start + 9) return true;
  }
  static constexpr char32_t kRanges[][2] = {
      {0x00B2, 0x00B3}, {0x00B9, 0x00B9}, {0x00BC, 0x00BE}, {0x09F4, 0x09F9},
      {0x0BF0, 0x0BF2}, {0x0F2A, 0x0F33}, {0x1369, 0x137C}, {0x16EE, 0x16F0},
      {0x2070, 0x2070}, {0x2074, 0x2079}, {0x2080, 0x2089}, {0x2150, 0x2182},
      {0x2185, 0x2189}, {0x2460, 0x249B}, {0x24EA, 0x24FF}, {0x2776, 0x2793},
      {0x2CFD, 0x2CFD}, {0x3007, 0x3007}, {0x3021, 0x3029}, {0x3038, 0x303A},
      {0x3192, 0x3195}, {0x3220, 0x3229}, {0x3248, 0x324F}, {0x3251, 0x325F},
      {0x3280, 0x3289}, {0x32B1, 0x32BF}};
  for (const auto& r : kRanges) {
    if (c >= r[0] && c <= r[1]) return true;
  }
  return false;
}

locale_t Utf8Locale() {
  static const locale_t locale =
      newlocale(LC_CTYPE_MASK, "C.UTF-8", static_cast<locale_t>(0));
  return locale;
}

bool IsLetter(char32_t c) {
  if (c < 0x80) return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
  if (c == kInvalidByte || IsNumber(c) || IsSpace(c)) return false;
  const locale_t loc = Utf8Locale();
  // Without the locale every other non-ASCII character counts as a letter,
  // the most common case in text.
  return loc == static_cast<locale_t>(0) || iswalpha_l(c, loc);
}

bool IsOther(char32_t c) { return !IsSpace(c) && !IsLetter(c) && !IsNumber(c); }

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A minimal reader for encoder.json's shape: {"string": integer, ...}.
class JsonObjectReader {
 public:
  explicit JsonObjectReader(absl::string_view s) : s_(s) {}

  absl::StatusOr<absl::flat_hash_map<std::string, int32_t>> Read() {
    absl::flat_hash_map<std::string, int32_t> out;
    SkipSpace();
    ZT_RETURN_IF_ERROR(Expect('{'));
    SkipSpace();
    if (Peek() == '}') {
      ++pos_;
    } else {
      while (true) {
        SkipSpace();
        std::string key;
        ZT_RETURN_IF_ERROR(ReadString(&key));
        SkipSpace();
        ZT_RETURN_IF_ERROR(Expect(':'));
        SkipSpace();
        int32_t value = 0;
        ZT_RETURN_IF_ERROR(ReadInt(&value));
        out[key] = value;
        SkipSpace();
        if (Peek() == ',') {
          ++pos_;
          continue;
        }
        ZT_RETURN_IF_ERROR(Expect('}'));
        break;
      }
    }
    SkipSpace();
    if (pos_ != s_.size()) return Error("trailing characters after the object");
    return out;
  }

 private:
  int Peek() const { return pos_ < s_.size() ? s_[pos_] : -1; }
  void SkipSpace() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\n' ||
                                s_[pos_] == '\r' || s_[pos_] == '\t')) {
      ++pos_;
    }
  }
  absl::Status Error(absl::string_view what) const {
    return absl::InvalidArgumentError(
        absl::StrCat("JSON at byte ", pos_, ": ", what));
  }
  absl::Status Expect(char c) {
    if (Peek() != c)
      return Error(absl::StrCat("expected '", std::string(1, c), "'"));
    ++pos_;
    return absl::OkStatus();
  }
  absl::Status ReadHex4(char32_t* out) {
    if (pos_ + 4 > s_.size()) return Error("truncated \\u escape");
    char32_t v = 0;
    for (int i = 0; i < 4; ++i) {
      const char c = s_[pos_++];
      v <<= 4;
      if (c >= '0' && c <= '9')
        v |= c - '0';
      else if (c >= 'a' && c <= 'f')
        v |= c - 'a' + 10;
      else if (c >= 'A' && c <= 'F')
        v |= c - 'A' + 10;
      else
        return Error("bad hex digit in \\u escape");
    }
    *out = v;
    return absl::OkStatus();
  }
  absl::Status ReadString(std::string* out) {
    ZT_RETURN_IF_ERROR(Expect('"'));
    while (true) {
      if (pos_ >= s_.size()) return Error("unterminated string");
      const char c = s_[pos_++];
      if (c == '"') return absl::OkStatus();
      if (static_cast<unsigned char>(c) < 0x20) {
        return Error("control character in string");
      }
      if (c != '\\') {
        out->push_back(c);
        continue;
      }
      if (pos_ >= s_.size()) return Error("unterminated escape");
      const char e = s_[pos_++];
      switch (e) {
        case '"':
          out->push_back('"');
          break;
        case '\\':
          out->push_back('\\');
          break;
        case '/':
          out->push_back('/');
          break;
        case 'b':
          out->push_back('\b');
          break;
        case 'f':
          out->push_back('\f');
          break;
        case 'n':
          out->push_back('\n');
          break;
        case 'r':
          out->push_back('\r');
          break;
        case 't':
          out->push_back('\t');
          break;
        case 'u': {
          char32_t cp = 0;
          ZT_RETURN_IF_ERROR(ReadHex4(&cp));
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            char32_t low = 0;
            if (s_.substr(pos_, 2) != "\\u")
              return Error("lone high surrogate");
            pos_ += 2;
            ZT_RETURN_IF_ERROR(ReadHex4(&low));
            if (low < 0xDC00 || low > 0xDFFF) return Error("bad low surrogate");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
          } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            return Error("lone low surrogate");
          }
          AppendUtf8(cp, out);
          break;
        }
        default:
          return Error(absl::StrCat("bad escape \\", std::string(1, e)));
      }
    }
  }
  absl::Status ReadInt(int32_t* out) {
    const size_t start = pos_;
    int64_t v = 0;
    while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') {
      v = v * 10 + (s_[pos_++] - '0');
      if (v > std::numeric_limits<int32_t>::max()) {
        return Error("token id out of range");
      }
    }
    if (pos_ == start) return Error("expected a non-negative integer token id");
    *out = static_cast<int32_t>(v);
    return absl::OkStatus();
  }

  absl::string_view s_;
  size_t pos_ = 0;
};

}  // namespace

std::string Gpt2ByteToUnicode(uint8_t byte) {
  static const std::array<std::string, 256> table = [] {
    std::array<std::string, 256> t;
    int next = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') ||
                             (b >= 0xA1 && b <= 0xAC) ||
                             (b >= 0xAE && b <= 0xFF);
      AppendUtf8(printable ? b : 256 + next++, &t[b]);
    }
    return t;
  }();
  return table[byte];
}

std::vector<absl::string_view> Gpt2PreTokenize(absl::string_view text) {
  // Code points with the byte offset of each, plus one past the end.
  std::vector<char32_t> cps;
  std::vector<size_t> at;
  for (size_t i = 0; i < text.size();) {
    size_t len;
    cps.push_back(DecodeUtf8(text, i, &len));
    at.push_back(i);
    i += len;
  }
  at.push_back(text.size());
  const size_t n = cps.size();

  std::vector<absl::string_view> out;
  auto emit = [&](size_t from, size_t to) {
    out.push_back(text.substr(at[from], at[to] - at[from]));
  };
  // ` ?X+` for a class X: the match end, or `i` if none.
  auto run = [&](size_t i, bool (*in_class)(char32_t)) {
    size_t j = i;
    if (cps[j] == ' ' && j + 1 < n && in_class(cps[j + 1])) ++j;
    if (!in_class(cps[j])) return i;
    while (j < n && in_class(cps[j])) ++j;
    return j;
  };
  size_t i = 0;
  while (i < n) {
    if (cps[i] == '\'' && i + 1 < n) {
      size_t len = 0;
      for (const char* suffix : {"s", "t", "re", "ve", "m", "ll", "d"}) {
        const size_t sl = std::char_traits<char>::length(suffix);
        bool match = i + sl < n;
        for (size_t k = 0; match && k < sl; ++k) {
          match = cps[i + 1 + k] == static_cast<char32_t>(suffix[k]);
        }
        if (match) {
          len = 1 + sl;
          break;
        }
      }
      if (len > 0) {
        emit(i, i + len);
        i += len;
        continue;
      }
    }
    size_t end = run(i, IsLetter);
    if (end == i) end = run(i, IsNumber);
    if (end == i) end = run(i, IsOther);
    if (end == i) {
      // Whitespace. `\s+(?!\S)` leaves the last space of a run to prefix the
      // next word; a single space before a word falls to `\s+`.
      size_t k = i;
      while (k < n && IsSpace(cps[k])) ++k;
      end = (k < n && k - i >= 2) ? k - 1 : k;
    }
    emit(i, end);
    i = end;
  }
  return out;
}

absl::StatusOr<absl::flat_hash_map<std::string, int32_t>> ParseEncoderJson(
    absl::string_view json) {
  return JsonObjectReader(json).Read();
}

absl::StatusOr<Gpt2Tokenizer> Gpt2Tokenizer::FromStrings(
    absl::string_view encoder_json, absl::string_view vocab_bpe) {
  Gpt2Tokenizer t;
  ZT_ASSIGN_OR_RETURN(t.encoder_, ParseEncoderJson(encoder_json));
  for (const auto& [token, id] : t.encoder_) {
    t.vocab_size_ = std::max(t.vocab_size_, id + 1);
  }
  t.decoder_.resize(t.vocab_size_);
  for (const auto& [token, id] : t.encoder_) t.decoder_[id] = token;
  if (auto it = t.encoder_.find("<|endoftext|>"); it != t.encoder_.end()) {
    t.eot_ = it->second;
  }
  int line_number = 0;
  int32_t rank = 0;
  for (absl::string_view line : absl::StrSplit(vocab_bpe, '\n')) {
    ++line_number;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty() ||
        (line_number == 1 && absl::StartsWith(line, "#version"))) {
      continue;
    }
    std::vector<absl::string_view> parts = absl::StrSplit(line, ' ');
    if (parts.size() != 2 || parts[0].empty() || parts[1].empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("vocab.bpe line ", line_number,
                       ": expected two symbols separated by "
                       "one space, got '",
                       line, "'"));
    }
    // A repeated merge keeps its last rank, as GPT-2's dict(zip(...)) does.
    t.merge_rank_[line] = rank++;
  }
  for (int b = 0; b < 256; ++b) {
    t.unicode_to_byte_[Gpt2ByteToUnicode(b)] = static_cast<uint8_t>(b);
  }
  return t;
}

absl::StatusOr<Gpt2Tokenizer> Gpt2Tokenizer::Load(
    const std::string& encoder_json, const std::string& vocab_bpe) {
  ZT_ASSIGN_OR_RETURN(const std::string json, ReadFile(encoder_json));
  ZT_ASSIGN_OR_RETURN(const std::string bpe, ReadFile(vocab_bpe));
  absl::StatusOr<Gpt2Tokenizer> t = FromStrings(json, bpe);
  if (!t.ok()) {
    const bool json_error = absl::StartsWith(t.status().message(), "JSON");
    return Annotate(t.status(), json_error ? encoder_json : vocab_bpe);
  }
  return t;
}

std::vector<std::string> Gpt2Tokenizer::Bpe(absl::string_view piece) const {
  std::vector<std::string> word;
  for (unsigned char c : piece) word.push_back(Gpt2ByteToUnicode(c));
  while (word.size() > 1) {
    int32_t best = std::numeric_limits<int32_t>::max();
    size_t best_i = 0;
    for (size_t i = 0; i + 1 < word.size(); ++i) {
      auto it = merge_rank_.find(absl::StrCat(word[i], " ", word[i + 1]));
      if (it != merge_rank_.end() && it->second < best) {
        best = it->second;
        best_i = i;
      }
    }
    if (best == std::numeric_limits<int32_t>::max()) break;
    const std::string first = word[best_i], second = word[best_i + 1];
    // Merge every occurrence of the pair, left to right, without overlap.
    std::vector<std::string> merged;
    for (size_t i = 0; i < word.size();) {
      if (i + 1 < word.size() && word[i] == first && word[i + 1] == second) {
        merged.push_back(first + second);
        i += 2;
      } else {
        merged.push_back(word[i]);
        i += 1;
      }
    }
    word = std::move(merged);
  }
  return word;
}

absl::StatusOr<std::vector<int32_t>> Gpt2Tokenizer::Encode(
    absl::string_view text) {
  std::vector<int32_t> ids;
  for (absl::string_view piece : Gpt2PreTokenize(text)) {
    auto cached = cache_.find(piece);
    if (cached == cache_.end()) {
      std::vector<int32_t> piece_ids;
      for (const std::string& symbol : Bpe(piece)) {
        auto it = encoder_.find(symbol);
        if (it == encoder_.end()) {
          return absl::InvalidArgumentError(
              absl::StrCat("BPE token '", symbol, "' (from '", piece,
                           "') is not in encoder.json"));
        }
        piece_ids.push_back(it->second);
      }
      cached = cache_.emplace(std::string(piece), std::move(piece_ids)).first;
    }
    ids.insert(ids.end(), cached->second.begin(), cached->second.end());
  }
  return ids;
}

std::string Gpt2Tokenizer::Decode(absl::Span<const int32_t> ids) const {
  std::string out;
  for (int32_t id : ids) {
    if (id < 0 || id >= static_cast<int32_t>(decoder_.size())) continue;
    const std::string& token = decoder_[id];
    for (size_t i = 0; i < token.size();) {
      size_t len;
      DecodeUtf8(token, i, &len);
      auto it = unicode_to_byte_.find(token.substr(i, len));
      if (it != unicode_to_byte_.end())
        out.push_back(static_cast<char>(it->second));
      i += len;
    }
  }
  return out;
}

}  // namespace zt
