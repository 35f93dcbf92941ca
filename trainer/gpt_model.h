#ifndef ZEROTRAIN_TRAINER_GPT_MODEL_H_
#define ZEROTRAIN_TRAINER_GPT_MODEL_H_

// GPT-2 forward and backward over the ops in kernels/, on whichever device
// the OpContext names. The model owns activations only: parameters and
// gradients are reached through a ParamProvider one unit at a time, so the
// same code runs replicated (stages 0-2) and with sharded parameters
// (stage 3, where Acquire() all-gathers a unit).

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "core/device.h"
#include "core/dtype.h"
#include "kernels/op_context.h"
#include "model/param_provider.h"
#include "trainer/param_layout.h"

namespace zt {

struct ForwardOptions {
  const int32_t* inputs = nullptr;   // host [B, T]
  const int32_t* targets = nullptr;  // host [B, T], or nullptr (no loss)
  // Scale of the loss gradient (loss_scale / tokens in the global batch);
  // with compute_grad the logits buffer is turned into dlogits here, so a
  // Backward() may follow.
  float dloss = 0;
  bool compute_grad = false;
};

class GptModel {
 public:
  // B and T are the micro-batch size and sequence length activations are
  // sized for; T <= max_seq_len.
  static absl::StatusOr<std::unique_ptr<GptModel>> Create(const ParamLayout& layout, DType dtype,
                                                          int B, int T, Allocator* allocator,
                                                          const kernels::OpContext& ctx);

  absl::Status Forward(ParamProvider& params, const ForwardOptions& options);
  // Accumulates (+=) into the gradients the provider hands out.
  absl::Status Backward(ParamProvider& params);

  // Per-token losses of the last Forward with targets (synchronizes).
  absl::StatusOr<std::vector<float>> Losses();
  // Mean of Losses() over tokens whose target is not -1.
  absl::StatusOr<double> MeanLoss();

  const ParamLayout& layout() const { return layout_; }
  DType dtype() const { return dtype_; }
  int B() const { return B_; }
  int T() const { return T_; }
  // Activations kept for backward plus scratch, in bytes.
  int64_t activation_bytes() const { return activation_bytes_; }
  // Kernel scratch the model allocates for this shape on `device`.
  static size_t WorkspaceBytes(const ParamLayout& layout, DType dtype, int B, int T,
                               Device device);
  // Model flops per token of a training step (6N + 6LCT, as PaLM's MFU).
  double FlopsPerToken() const;

 private:
  GptModel(const ParamLayout& layout, DType dtype, int B, int T, Allocator* allocator,
           const kernels::OpContext& ctx);
  absl::Status Allocate();
  void* Act(int id, int layer = 0) const;
  float* Stat(int id, int layer = 0) const;
  const void* P(const UnitBuffers& u, int param) const;
  void* G(const UnitBuffers& u, int param) const;
  int Param(int layer, int which) const;

  ParamLayout layout_;
  DType dtype_;
  int B_, T_;
  Allocator* allocator_;
  kernels::OpContext ctx_;
  std::vector<Buffer> buffers_;
  std::vector<std::vector<void*>> acts_;   // [kind][layer]
  std::vector<std::vector<float*>> stats_;
  Buffer tokens_, targets_, workspace_;
  std::vector<int32_t> host_targets_;
  bool have_targets_ = false;
  bool grad_ready_ = false;
  int64_t activation_bytes_ = 0;
};

}  // namespace zt

#endif  // ZEROTRAIN_TRAINER_GPT_MODEL_H_
