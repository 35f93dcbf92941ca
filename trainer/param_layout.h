#ifndef ZEROTRAIN_TRAINER_PARAM_LAYOUT_H_
#define ZEROTRAIN_TRAINER_PARAM_LAYOUT_H_

// The one source of truth for where every parameter lives: a named, ordered
// list of tensors in one flat buffer, each at a global element offset.
// ZeRO partitions, buckets, checkpoints and resharding are all computed from
// these offsets. Parameters are grouped into "units" (embeddings, one per
// transformer block, the final LayerNorm); each unit is contiguous, so ZeRO-3
// can gather a unit with one collective.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace zt {

struct GptShape {
  int n_layer = 0;
  int n_head = 0;
  int n_embd = 0;      // C
  int vocab_size = 0;  // V: real vocabulary
  int padded_vocab_size = 0;  // Vp: V rounded up to a multiple of 128
  int max_seq_len = 0;

  static int PadVocab(int v) { return (v + 127) / 128 * 128; }
  int64_t head_size() const { return n_embd / n_head; }
};

struct ParamSpec {
  std::string name;  // Hugging Face GPT-2 names without "transformer."
  std::vector<int64_t> shape;
  int64_t offset = 0;  // global element offset in the flat buffer
  int64_t numel = 0;
  bool decay = false;  // weight decay applies (matrices and embeddings)
  int unit = 0;
  // Initialisation: N(0, init_std) when init_std > 0, else the constant.
  double init_std = 0;
  float init_value = 0;
};

struct UnitSpec {
  std::string name;
  int64_t begin = 0;  // global element offset of its first parameter
  int64_t end = 0;    // one past its last
  std::vector<int> params;
  int64_t numel() const { return end - begin; }
};

class ParamLayout {
 public:
  static absl::StatusOr<ParamLayout> ForGpt(const GptShape& shape);

  const GptShape& shape() const { return shape_; }
  const std::vector<ParamSpec>& params() const { return params_; }
  const std::vector<UnitSpec>& units() const { return units_; }
  int64_t numel() const { return numel_; }
  // Index of a parameter by name, or NotFound naming it.
  absl::StatusOr<int> Find(absl::string_view name) const;

  // Unit indices: embeddings first, then blocks, then the final LayerNorm.
  int embedding_unit() const { return 0; }
  int block_unit(int layer) const { return 1 + layer; }
  int final_unit() const { return 1 + shape_.n_layer; }

 private:
  GptShape shape_;
  std::vector<ParamSpec> params_;
  std::vector<UnitSpec> units_;
  int64_t numel_ = 0;
};

}  // namespace zt

#endif  // ZEROTRAIN_TRAINER_PARAM_LAYOUT_H_
