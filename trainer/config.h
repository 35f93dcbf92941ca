#ifndef ZEROTRAIN_TRAINER_CONFIG_H_
#define ZEROTRAIN_TRAINER_CONFIG_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "trainer/config.pb.h"

namespace zt {

// Rows of the token embedding: vocab_size rounded up to a multiple of 128.
int64_t PaddedVocabSize(int64_t vocab_size);

// The default run: the proto's defaults with every field set explicitly, so
// ConfigToText shows all of them. A small GPT on the synthetic corpus.
TrainConfig DefaultConfig();

// `config` with every unset field set to its default, recursively. A oneof
// with no member set gets its first member (data: the synthetic corpus).
// Does not change what a run does; makes it visible.
TrainConfig WithExplicitDefaults(const TrainConfig& config);

// Parses protobuf text format. Syntax errors, unknown fields and type errors
// are kInvalidArgument "<source_name>:<line>:<col>: <message>" (1-based).
absl::StatusOr<TrainConfig> ParseConfigText(absl::string_view text,
                                            absl::string_view source_name);

// Reads and parses a text-format config file. kNotFound when it does not
// exist; parse errors as ParseConfigText with the path as source name.
// Does not validate.
absl::StatusOr<TrainConfig> LoadConfig(const std::string& path);

// Applies one `--set` assignment "field.path=value", e.g.
// "optimizer.lr=1e-3", "precision.dtype=BF16", "zero.stage=STAGE_3" (enums by
// name, or by number), "data.shards.train_glob=/d/*.bin". A path ending at a
// message field takes a text-format message: "data.synthetic={order: 2}".
// An unknown path or a value that does not parse as the field's type is
// kInvalidArgument naming the path.
absl::Status ApplyOverride(TrainConfig* config, absl::string_view assignment);

// Range and consistency checks. kInvalidArgument listing every violation,
// each naming the field path and the allowed range, e.g.
// "optimizer.beta1 = 1 is out of range: must be in [0, 1)".
absl::Status ValidateConfig(const TrainConfig& config);

// The config for a run: DefaultConfig() when `path` is empty, else the file;
// then each override in order; then validation. Returns the config with
// explicit defaults.
absl::StatusOr<TrainConfig> ResolveConfig(
    const std::string& path, absl::Span<const std::string> overrides);

// Text format of `config` (as given: call WithExplicitDefaults first to show
// the defaults too).
std::string ConfigToText(const TrainConfig& config);

}  // namespace zt

#endif  // ZEROTRAIN_TRAINER_CONFIG_H_
