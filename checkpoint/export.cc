#include "checkpoint/export.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "checkpoint/file_io.h"
#include "core/status_macros.h"

namespace zt {
namespace ckpt {
namespace {

bool IsConv1DWeight(const std::string& name) {
  for (const char* suffix : {"attn.c_attn.weight", "attn.c_proj.weight",
                             "mlp.c_fc.weight", "mlp.c_proj.weight"}) {
    if (absl::EndsWith(name, suffix)) return true;
  }
  return false;
}

}  // namespace

absl::StatusOr<std::vector<SafetensorsTensor>> ConsolidatedTensors(
    const CheckpointReader& reader, bool weights_only) {
  const Manifest& m = reader.manifest();
  const int64_t n = m.numel();
  std::vector<float> all[3];
  for (int s = 0; s < (weights_only ? 1 : 3); ++s) all[s].resize(n);
  ZT_RETURN_IF_ERROR(reader.Read(
      {0, n}, all[0].data(), weights_only ? nullptr : all[1].data(),
      weights_only ? nullptr : all[2].data()));
  std::vector<SafetensorsTensor> out;
  const char* prefixes[3] = {"", "exp_avg.", "exp_avg_sq."};
  for (int s = 0; s < (weights_only ? 1 : 3); ++s) {
    for (const TensorInfo& t : m.tensors()) {
      SafetensorsTensor st;
      st.name = absl::StrCat(prefixes[s], t.name());
      st.shape.assign(t.shape().begin(), t.shape().end());
      st.data.assign(all[s].begin() + t.offset(),
                     all[s].begin() + t.offset() + t.numel());
      out.push_back(std::move(st));
    }
  }
  return out;
}

absl::Status WriteConsolidated(const CheckpointReader& reader,
                               const std::string& path, bool weights_only) {
  ZT_ASSIGN_OR_RETURN(std::vector<SafetensorsTensor> tensors,
                      ConsolidatedTensors(reader, weights_only));
  const Manifest& m = reader.manifest();
  std::vector<std::string> offsets;
  for (const TensorInfo& t : m.tensors())
    offsets.push_back(absl::StrCat(JsonString(t.name()), ":", t.offset()));
  std::map<std::string, std::string> meta = {
      {"format", "pt"},
      {"zerotrain.step", absl::StrCat(m.step())},
      {"zerotrain.adam_steps", absl::StrCat(m.adam_steps())},
      {"zerotrain.model", DescribeModel(m)},
      {"zerotrain.offsets", absl::StrCat("{", absl::StrJoin(offsets, ","), "}")},
  };
  return WriteSafetensors(path, tensors, meta);
}

absl::StatusOr<std::vector<SafetensorsTensor>> HuggingFaceTensors(
    const CheckpointReader& reader) {
  ZT_ASSIGN_OR_RETURN(std::vector<SafetensorsTensor> tensors,
                      ConsolidatedTensors(reader, /*weights_only=*/true));
  const int64_t vocab = reader.manifest().config().model().vocab_size();
  for (SafetensorsTensor& t : tensors) {
    if (t.name == "wte.weight") {
      if (vocab <= 0 || vocab > t.shape[0]) {
        return absl::DataLossError(absl::StrCat(
            reader.dir(), ": config.model.vocab_size ", vocab,
            " does not fit the token embedding's ", t.shape[0], " rows"));
      }
      t.data.resize(vocab * t.shape[1]);
      t.shape[0] = vocab;
    } else if (IsConv1DWeight(t.name)) {
      const int64_t rows = t.shape[0], cols = t.shape[1];
      std::vector<float> tr(t.data.size());
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t c = 0; c < cols; ++c) tr[c * rows + r] = t.data[r * cols + c];
      }
      t.data = std::move(tr);
      t.shape = {cols, rows};
    }
    t.name = absl::StrCat("transformer.", t.name);
  }
  return tensors;
}

absl::Status ExportHuggingFace(const CheckpointReader& reader,
                               const std::string& out_dir) {
  ZT_ASSIGN_OR_RETURN(std::vector<SafetensorsTensor> tensors,
                      HuggingFaceTensors(reader));
  ZT_RETURN_IF_ERROR(MakeDirectories(out_dir));
  ZT_RETURN_IF_ERROR(WriteSafetensors(JoinPath(out_dir, "model.safetensors"),
                                      tensors, {{"format", "pt"}}));
  const ModelConfig& mc = reader.manifest().config().model();
  // The model this trainer runs: tanh-approximated GELU ("gelu_new"),
  // LayerNorm eps 1e-5, tied input/output embeddings, no dropout.
  const std::string config = absl::StrCat(
      "{\n  \"architectures\": [\"GPT2LMHeadModel\"],\n"
      "  \"model_type\": \"gpt2\",\n  \"vocab_size\": ", mc.vocab_size(),
      ",\n  \"n_positions\": ", mc.max_seq_len(),
      ",\n  \"n_ctx\": ", mc.max_seq_len(), ",\n  \"n_embd\": ", mc.n_embd(),
      ",\n  \"n_layer\": ", mc.n_layer(), ",\n  \"n_head\": ", mc.n_head(),
      ",\n  \"activation_function\": \"gelu_new\",\n"
      "  \"layer_norm_epsilon\": 1e-05,\n  \"resid_pdrop\": 0.0,\n"
      "  \"embd_pdrop\": 0.0,\n  \"attn_pdrop\": 0.0,\n"
      "  \"tie_word_embeddings\": true,\n  \"torch_dtype\": \"float32\"\n}\n");
  return WriteFileDurably(JoinPath(out_dir, "config.json"), config);
}

}  // namespace ckpt
}  // namespace zt
