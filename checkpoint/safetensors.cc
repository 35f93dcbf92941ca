#include "checkpoint/safetensors.h"

#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "checkpoint/file_io.h"
#include "core/status_macros.h"

namespace zt {
namespace ckpt {

std::string JsonString(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        if (c < 0x20) {
          out += absl::StrFormat("\\u%04x", c);
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + "\"";
}

absl::Status WriteSafetensors(
    const std::string& path, const std::vector<SafetensorsTensor>& tensors,
    const std::map<std::string, std::string>& metadata) {
  std::set<std::string> names;
  std::vector<std::string> entries;
  if (!metadata.empty()) {
    std::vector<std::string> kv;
    for (const auto& [k, v] : metadata)
      kv.push_back(absl::StrCat(JsonString(k), ":", JsonString(v)));
    entries.push_back(
        absl::StrCat("\"__metadata__\":{", absl::StrJoin(kv, ","), "}"));
  }
  int64_t offset = 0;
  for (const SafetensorsTensor& t : tensors) {
    int64_t n = 1;
    for (int64_t d : t.shape) n *= d;
    if (t.name.empty() || t.name == "__metadata__" ||
        !names.insert(t.name).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": bad or duplicate tensor name \"", t.name, "\""));
    }
    if (n != static_cast<int64_t>(t.data.size())) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": tensor ", t.name, " has ", t.data.size(),
          " elements for shape [", absl::StrJoin(t.shape, ","), "]"));
    }
    const int64_t bytes = n * 4;
    entries.push_back(absl::StrCat(
        JsonString(t.name), ":{\"dtype\":\"F32\",\"shape\":[",
        absl::StrJoin(t.shape, ","), "],\"data_offsets\":[", offset, ",",
        offset + bytes, "]}"));
    offset += bytes;
  }
  std::string header = absl::StrCat("{", absl::StrJoin(entries, ","), "}");
  header.append((8 - header.size() % 8) % 8, ' ');
  uint64_t len = header.size();
  char len_bytes[8];
  for (int i = 0; i < 8; ++i) len_bytes[i] = static_cast<char>(len >> (8 * i));
  ZT_ASSIGN_OR_RETURN(WritableFile f, WritableFile::Create(path));
  ZT_RETURN_IF_ERROR(f.Append(len_bytes, 8));
  ZT_RETURN_IF_ERROR(f.Append(header.data(), header.size()));
  // fp32 is stored little-endian, as on every platform we build for.
  static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__);
  for (const SafetensorsTensor& t : tensors) {
    ZT_RETURN_IF_ERROR(f.Append(t.data.data(), t.data.size() * 4));
  }
  ZT_RETURN_IF_ERROR(f.Sync());
  return f.Close();
}

}  // namespace ckpt
}  // namespace zt
