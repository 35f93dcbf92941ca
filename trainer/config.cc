#include "trainer/config.h"

#include <cmath>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/io/tokenizer.h"
#include "google/protobuf/message.h"
#include "google/protobuf/text_format.h"
#include "core/status_macros.h"

namespace zt {
namespace {

namespace pb = ::google::protobuf;

// Keeps the first parse error with its position; TextFormat stops at the
// first error anyway, and later ones tend to be consequences of it.
// The offending line is quoted because TextFormat's messages ("Expected
// double, got: ...") do not name the field.
class FirstErrorCollector : public pb::io::ErrorCollector {
 public:
  FirstErrorCollector(absl::string_view source, absl::string_view text)
      : source_(source), text_(text) {}

  void AddError(int line, pb::io::ColumnNumber column,
                const std::string& message) override {
    if (!error_.empty()) return;
    // TextFormat reports line -1 for errors not tied to a position.
    if (line < 0) {
      error_ = absl::StrCat(source_, ": ", message);
    } else {
      error_ =
          absl::StrCat(source_, ":", line + 1, ":", column + 1, ": ", message);
      std::vector<absl::string_view> lines = absl::StrSplit(text_, '\n');
      if (line < static_cast<int>(lines.size())) {
        absl::StrAppend(&error_, " (in `",
                        absl::StripAsciiWhitespace(lines[line]), "`)");
      }
    }
  }

  const std::string& error() const { return error_; }

 private:
  std::string source_;
  absl::string_view text_;
  std::string error_;
};

absl::Status ParseInto(absl::string_view text, absl::string_view source_name,
                       pb::Message* message) {
  FirstErrorCollector errors(source_name, text);
  pb::TextFormat::Parser parser;
  parser.RecordErrorsTo(&errors);
  if (!parser.MergeFromString(std::string(text), message)) {
    return absl::InvalidArgumentError(
        errors.error().empty() ? absl::StrCat(source_name, ": parse error")
                               : errors.error());
  }
  return absl::OkStatus();
}

void FillDefaults(pb::Message* message) {
  const pb::Descriptor* desc = message->GetDescriptor();
  const pb::Reflection* refl = message->GetReflection();
  for (int i = 0; i < desc->field_count(); ++i) {
    const pb::FieldDescriptor* f = desc->field(i);
    if (f->is_repeated()) continue;
    if (const pb::OneofDescriptor* oneof = f->containing_oneof()) {
      const bool any_set = refl->HasOneof(*message, oneof);
      const bool this_set = refl->HasField(*message, f);
      if (any_set ? !this_set : f != oneof->field(0)) continue;
    }
    switch (f->cpp_type()) {
      case pb::FieldDescriptor::CPPTYPE_MESSAGE:
        FillDefaults(refl->MutableMessage(message, f));
        break;
      case pb::FieldDescriptor::CPPTYPE_INT32:
        refl->SetInt32(message, f, refl->GetInt32(*message, f));
        break;
      case pb::FieldDescriptor::CPPTYPE_INT64:
        refl->SetInt64(message, f, refl->GetInt64(*message, f));
        break;
      case pb::FieldDescriptor::CPPTYPE_UINT32:
        refl->SetUInt32(message, f, refl->GetUInt32(*message, f));
        break;
      case pb::FieldDescriptor::CPPTYPE_UINT64:
        refl->SetUInt64(message, f, refl->GetUInt64(*message, f));
        break;
      case pb::FieldDescriptor::CPPTYPE_FLOAT:
        refl->SetFloat(message, f, refl->GetFloat(*message, f));
        break;
      case pb::FieldDescriptor::CPPTYPE_DOUBLE:
        refl->SetDouble(message, f, refl->GetDouble(*message, f));
        break;
      case pb::FieldDescriptor::CPPTYPE_BOOL:
        refl->SetBool(message, f, refl->GetBool(*message, f));
        break;
      case pb::FieldDescriptor::CPPTYPE_ENUM:
        refl->SetEnum(message, f, refl->GetEnum(*message, f));
        break;
      case pb::FieldDescriptor::CPPTYPE_STRING:
        refl->SetString(message, f, refl->GetString(*message, f));
        break;
    }
  }
}

absl::Status BadValue(absl::string_view path, absl::string_view value,
                      absl::string_view type) {
  return absl::InvalidArgumentError(
      absl::StrCat("--set ", path, "=", value, ": '", value,
                   "' is not a valid ", type, " for ", path));
}

// Sets the scalar (or message) field `f` of `message` from its text `value`.
absl::Status SetFieldFromText(pb::Message* message,
                              const pb::FieldDescriptor* f,
                              absl::string_view path, absl::string_view value) {
  const pb::Reflection* refl = message->GetReflection();
  switch (f->cpp_type()) {
    case pb::FieldDescriptor::CPPTYPE_INT32: {
      int32_t v;
      if (!absl::SimpleAtoi(value, &v)) return BadValue(path, value, "int32");
      refl->SetInt32(message, f, v);
      return absl::OkStatus();
    }
    case pb::FieldDescriptor::CPPTYPE_INT64: {
      int64_t v;
      if (!absl::SimpleAtoi(value, &v)) return BadValue(path, value, "int64");
      refl->SetInt64(message, f, v);
      return absl::OkStatus();
    }
    case pb::FieldDescriptor::CPPTYPE_UINT32: {
      uint32_t v;
      if (!absl::SimpleAtoi(value, &v)) return BadValue(path, value, "uint32");
      refl->SetUInt32(message, f, v);
      return absl::OkStatus();
    }
    case pb::FieldDescriptor::CPPTYPE_UINT64: {
      uint64_t v;
      if (!absl::SimpleAtoi(value, &v)) return BadValue(path, value, "uint64");
      refl->SetUInt64(message, f, v);
      return absl::OkStatus();
    }
    case pb::FieldDescriptor::CPPTYPE_FLOAT: {
      float v;
      if (!absl::SimpleAtof(value, &v)) return BadValue(path, value, "float");
      refl->SetFloat(message, f, v);
      return absl::OkStatus();
    }
    case pb::FieldDescriptor::CPPTYPE_DOUBLE: {
      double v;
      if (!absl::SimpleAtod(value, &v)) return BadValue(path, value, "double");
      refl->SetDouble(message, f, v);
      return absl::OkStatus();
    }
    case pb::FieldDescriptor::CPPTYPE_BOOL: {
      bool v;
      if (!absl::SimpleAtob(value, &v)) return BadValue(path, value, "bool");
      refl->SetBool(message, f, v);
      return absl::OkStatus();
    }
    case pb::FieldDescriptor::CPPTYPE_ENUM: {
      const pb::EnumDescriptor* e = f->enum_type();
      const pb::EnumValueDescriptor* ev =
          e->FindValueByName(std::string(value));
      int number;
      if (ev == nullptr && absl::SimpleAtoi(value, &number)) {
        ev = e->FindValueByNumber(number);
      }
      if (ev == nullptr) {
        std::vector<std::string> names;
        for (int i = 0; i < e->value_count(); ++i) {
          names.push_back(e->value(i)->name());
        }
        return absl::InvalidArgumentError(
            absl::StrCat("--set ", path, "=", value, ": '", value,
                         "' is not a value of ", e->full_name(), " for ", path,
                         " (one of ", absl::StrJoin(names, ", "), ")"));
      }
      refl->SetEnum(message, f, ev);
      return absl::OkStatus();
    }
    case pb::FieldDescriptor::CPPTYPE_STRING:
      refl->SetString(message, f, std::string(value));
      return absl::OkStatus();
    case pb::FieldDescriptor::CPPTYPE_MESSAGE: {
      absl::string_view body = value;
      if (!absl::ConsumePrefix(&body, "{") ||
          !absl::ConsumeSuffix(&body, "}")) {
        return absl::InvalidArgumentError(
            absl::StrCat("--set ", path, "=", value, ": ", path,
                         " is a message; give its fields in braces, e.g. ",
                         path, "={name: value}"));
      }
      return ParseInto(body, absl::StrCat("--set ", path),
                       refl->MutableMessage(message, f));
    }
  }
  return absl::InternalError(absl::StrCat("unhandled field type of ", path));
}

// Collects range violations, each naming the field path.
class Checker {
 public:
  template <typename T>
  void InRange(absl::string_view path, T value, T lo, T hi) {
    if (!(lo <= value && value <= hi)) {
      Add(path, value, absl::StrCat("must be in [", lo, ", ", hi, "]"));
    }
  }
  template <typename T>
  void AtLeast(absl::string_view path, T value, T lo) {
    if (!(value >= lo)) Add(path, value, absl::StrCat("must be >= ", lo));
  }
  template <typename T>
  void Positive(absl::string_view path, T value) {
    if (!(value > 0 && std::isfinite(static_cast<double>(value)))) {
      Add(path, value, "must be in (0, inf)");
    }
  }
  // [0, 1) as Adam's betas need.
  void UnitHalfOpen(absl::string_view path, float value) {
    if (!(value >= 0 && value < 1)) Add(path, value, "must be in [0, 1)");
  }
  void NonNegativeFinite(absl::string_view path, float value) {
    if (!(value >= 0 && std::isfinite(value))) {
      Add(path, value, "must be in [0, inf)");
    }
  }
  template <typename T>
  void Add(absl::string_view path, T value, absl::string_view rule) {
    errors_.push_back(
        absl::StrCat(path, " = ", value, " is out of range: ", rule));
  }
  void AddRaw(std::string message) { errors_.push_back(std::move(message)); }

  absl::Status status() const {
    if (errors_.empty()) return absl::OkStatus();
    return absl::InvalidArgumentError(
        absl::StrCat("invalid config: ", absl::StrJoin(errors_, "; ")));
  }

 private:
  std::vector<std::string> errors_;
};

constexpr int64_t kMaxSyntheticStates = 65536;

}  // namespace

int64_t PaddedVocabSize(int64_t vocab_size) {
  return (vocab_size + 127) / 128 * 128;
}

TrainConfig WithExplicitDefaults(const TrainConfig& config) {
  TrainConfig out = config;
  FillDefaults(&out);
  return out;
}

TrainConfig DefaultConfig() { return WithExplicitDefaults(TrainConfig()); }

absl::StatusOr<TrainConfig> ParseConfigText(absl::string_view text,
                                            absl::string_view source_name) {
  TrainConfig config;
  ZT_RETURN_IF_ERROR(ParseInto(text, source_name, &config));
  return config;
}

absl::StatusOr<TrainConfig> LoadConfig(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return absl::NotFoundError(absl::StrCat(path, ": cannot open config file"));
  }
  std::stringstream text;
  text << in.rdbuf();
  if (in.bad()) {
    return absl::DataLossError(absl::StrCat(path, ": read failed"));
  }
  return ParseConfigText(text.str(), path);
}

absl::Status ApplyOverride(TrainConfig* config, absl::string_view assignment) {
  const size_t eq = assignment.find('=');
  if (eq == absl::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("--set ", assignment, ": expected field.path=value"));
  }
  const absl::string_view path = assignment.substr(0, eq);
  const absl::string_view value = assignment.substr(eq + 1);
  std::vector<absl::string_view> parts = absl::StrSplit(path, '.');
  // Walking the path creates submessages (and may switch a oneof), so work
  // on a copy: a rejected override leaves the config untouched.
  TrainConfig updated = *config;
  pb::Message* message = &updated;
  for (size_t i = 0; i < parts.size(); ++i) {
    const pb::Descriptor* desc = message->GetDescriptor();
    const pb::FieldDescriptor* f = desc->FindFieldByName(std::string(parts[i]));
    if (f == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--set ", assignment, ": unknown field path '", path, "' (",
          desc->full_name(), " has no field '", parts[i], "')"));
    }
    if (f->is_repeated()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--set ", assignment, ": '", path, "' is a repeated field; --set ",
          "takes only singular fields"));
    }
    if (i + 1 == parts.size()) {
      ZT_RETURN_IF_ERROR(SetFieldFromText(message, f, path, value));
      *config = std::move(updated);
      return absl::OkStatus();
    }
    if (f->cpp_type() != pb::FieldDescriptor::CPPTYPE_MESSAGE) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--set ", assignment, ": unknown field path '", path, "' (",
          absl::StrJoin(parts.begin(), parts.begin() + i + 1, "."),
          " is not a message)"));
    }
    message = message->GetReflection()->MutableMessage(message, f);
  }
  return absl::InternalError("unreachable");
}

absl::Status ValidateConfig(const TrainConfig& c) {
  Checker k;
  const ModelConfig& m = c.model();
  k.InRange("model.n_layer", m.n_layer(), 1, 1024);
  k.InRange("model.n_head", m.n_head(), 1, 1024);
  k.InRange("model.n_embd", m.n_embd(), 1, 65536);
  if (m.n_head() >= 1 && m.n_embd() % m.n_head() != 0) {
    k.AddRaw(absl::StrCat("model.n_embd (", m.n_embd(),
                          ") must be divisible by model.n_head (", m.n_head(),
                          ")"));
  }
  k.InRange("model.vocab_size", m.vocab_size(), 1, 65536);
  k.InRange("model.max_seq_len", m.max_seq_len(), 1, 1 << 20);

  const DataConfig& d = c.data();
  if (d.source_case() == DataConfig::kShards) {
    if (d.shards().train_glob().empty()) {
      k.AddRaw("data.shards.train_glob must be a non-empty glob pattern");
    }
  } else {
    const SyntheticCorpusConfig& s = d.synthetic();
    k.InRange("data.synthetic.vocab_size", s.vocab_size(), 2,
              std::max(2, m.vocab_size()));
    k.InRange("data.synthetic.order", s.order(), 1, 3);
    k.InRange("data.synthetic.branching", s.branching(), 2,
              std::max(2, s.vocab_size()));
    if (s.vocab_size() >= 2 && s.order() >= 1 && s.order() <= 3) {
      const int64_t states =
          static_cast<int64_t>(std::pow(s.vocab_size(), s.order()));
      if (states > kMaxSyntheticStates) {
        k.AddRaw(absl::StrCat(
            "data.synthetic.vocab_size ^ data.synthetic.order = ", states,
            " states is out of range: must be <= ", kMaxSyntheticStates));
      }
    }
    k.InRange<int64_t>("data.synthetic.block_tokens", s.block_tokens(),
                       s.order() + 1, int64_t{1} << 40);
  }

  const BatchConfig& b = c.batch();
  k.InRange("batch.micro_batch_size", b.micro_batch_size(), 1, 1 << 20);
  k.InRange("batch.seq_len", b.seq_len(), 1, std::max(1, m.max_seq_len()));
  k.InRange("batch.grad_accum_steps", b.grad_accum_steps(), 1, 1 << 20);

  const OptimizerConfig& o = c.optimizer();
  k.Positive("optimizer.lr", o.lr());
  k.UnitHalfOpen("optimizer.beta1", o.beta1());
  k.UnitHalfOpen("optimizer.beta2", o.beta2());
  k.Positive("optimizer.eps", o.eps());
  k.NonNegativeFinite("optimizer.weight_decay", o.weight_decay());
  k.AtLeast("optimizer.warmup_steps", o.warmup_steps(), 0);
  k.InRange("optimizer.min_lr_ratio", o.min_lr_ratio(), 0.0f, 1.0f);
  k.NonNegativeFinite("optimizer.grad_clip", o.grad_clip());

  const LossScalerConfig& ls = c.precision().loss_scaler();
  k.NonNegativeFinite("precision.loss_scaler.static_scale", ls.static_scale());
  k.InRange("precision.loss_scaler.initial_scale_power",
            ls.initial_scale_power(), 0, 63);
  k.AtLeast("precision.loss_scaler.loss_scale_window", ls.loss_scale_window(),
            1);
  k.AtLeast("precision.loss_scaler.hysteresis", ls.hysteresis(), 1);
  if (ls.initial_scale_power() >= 0 && ls.initial_scale_power() <= 63) {
    const float initial = std::ldexp(1.0f, ls.initial_scale_power());
    if (!(ls.min_loss_scale() > 0 && ls.min_loss_scale() <= initial)) {
      k.Add("precision.loss_scaler.min_loss_scale", ls.min_loss_scale(),
            absl::StrCat("must be in (0, 2^initial_scale_power = ", initial,
                         "]"));
    }
  }

  const ZeroConfig& z = c.zero();
  k.AtLeast<int64_t>("zero.reduce_bucket_size", z.reduce_bucket_size(), 1);
  k.AtLeast<int64_t>("zero.allgather_bucket_size", z.allgather_bucket_size(),
                     1);
  k.Positive("zero.comm_timeout_s", z.comm_timeout_s());

  const CheckpointConfig& ck = c.checkpoint();
  k.AtLeast("checkpoint.interval", ck.interval(), 0);
  k.AtLeast("checkpoint.keep", ck.keep(), 0);
  if (ck.interval() > 0 && ck.dir().empty()) {
    k.AddRaw("checkpoint.interval > 0 needs checkpoint.dir");
  }

  k.AtLeast("logging.interval", c.logging().interval(), 1);
  k.AtLeast("eval.interval", c.eval().interval(), 0);
  k.AtLeast("eval.batches", c.eval().batches(), 0);
  k.AtLeast("max_steps", c.max_steps(), 1);
  return k.status();
}

absl::StatusOr<TrainConfig> ResolveConfig(
    const std::string& path, absl::Span<const std::string> overrides) {
  TrainConfig config;
  if (!path.empty()) {
    ZT_ASSIGN_OR_RETURN(config, LoadConfig(path));
  }
  for (const std::string& o : overrides) {
    ZT_RETURN_IF_ERROR(ApplyOverride(&config, o));
  }
  ZT_RETURN_IF_ERROR(ValidateConfig(config));
  return WithExplicitDefaults(config);
}

std::string ConfigToText(const TrainConfig& config) {
  std::string out;
  pb::TextFormat::Printer printer;
  printer.PrintToString(config, &out);
  return out;
}

}  // namespace zt
