#ifndef ZEROTRAIN_CHECKPOINT_EXPORT_H_
#define ZEROTRAIN_CHECKPOINT_EXPORT_H_

// Whole-model views of a checkpoint for the `ckpt` tool: a consolidated fp32
// file in our own layout, and a Hugging Face GPT-2 export.

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "checkpoint/format.h"
#include "checkpoint/safetensors.h"

namespace zt {
namespace ckpt {

// Every tensor of the checkpoint, read (and verified) from its shards:
// master weights under their layout names, in layout order, followed by the
// moments as "exp_avg.<name>" and "exp_avg_sq.<name>" unless weights_only.
absl::StatusOr<std::vector<SafetensorsTensor>> ConsolidatedTensors(
    const CheckpointReader& reader, bool weights_only);

// Writes ConsolidatedTensors to one safetensors file; its metadata records
// the step, the model and each tensor's global offset
// ("zerotrain.offsets": a JSON object name -> offset).
absl::Status WriteConsolidated(const CheckpointReader& reader,
                               const std::string& path, bool weights_only);

// The master weights under Hugging Face GPT2LMHeadModel names
// ("transformer.wte.weight", "transformer.h.0.attn.c_attn.weight", ...):
// Conv1D weights (attn.c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj) are
// transposed from our [out, in] to Hugging Face's [in, out], and the token
// embedding loses its padding rows (vocab_size rows, not the padded count).
// lm_head.weight is tied to the token embedding and, as Hugging Face saves
// it, left out.
absl::StatusOr<std::vector<SafetensorsTensor>> HuggingFaceTensors(
    const CheckpointReader& reader);

// Writes <out_dir>/model.safetensors (HuggingFaceTensors) and
// <out_dir>/config.json (a GPT2Config), creating out_dir.
absl::Status ExportHuggingFace(const CheckpointReader& reader,
                               const std::string& out_dir);

}  // namespace ckpt
}  // namespace zt

#endif  // ZEROTRAIN_CHECKPOINT_EXPORT_H_
