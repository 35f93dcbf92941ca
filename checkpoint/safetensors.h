#ifndef ZEROTRAIN_CHECKPOINT_SAFETENSORS_H_
#define ZEROTRAIN_CHECKPOINT_SAFETENSORS_H_

// A writer of the safetensors format (https://huggingface.co/docs/safetensors):
// an 8-byte little-endian header length N, N bytes of JSON header, then the
// tensors' bytes. The header maps each name to {"dtype", "shape",
// "data_offsets": [begin, end)} relative to the end of the header, plus an
// optional "__metadata__" object of string values. Offsets are contiguous in
// the order given; the header is padded with spaces to a multiple of 8 bytes
// so the data starts aligned.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace zt {
namespace ckpt {

struct SafetensorsTensor {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<float> data;  // fp32, row-major, product(shape) elements
};

// Writes `tensors` (F32) to `path` durably. kInvalidArgument for a duplicate
// or empty name, or data whose size does not match its shape.
absl::Status WriteSafetensors(
    const std::string& path, const std::vector<SafetensorsTensor>& tensors,
    const std::map<std::string, std::string>& metadata);

// A JSON string literal (quotes included) for `s`.
std::string JsonString(const std::string& s);

}  // namespace ckpt
}  // namespace zt

#endif  // ZEROTRAIN_CHECKPOINT_SAFETENSORS_H_
