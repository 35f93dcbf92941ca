#ifndef ZEROTRAIN_TOOLS_MEMORY_ESTIMATE_H_
#define ZEROTRAIN_TOOLS_MEMORY_ESTIMATE_H_

// Memory per rank for each ZeRO stage, as zero/engine.cc and
// trainer/gpt_model.cc allocate it (memory_estimate_test pins the two
// together), laid out as in the ZeRO paper (Rajbhandari et al. 2020, §3.1):
// with Psi parameters, N ranks and K = 12 bytes of fp32 optimizer state per
// parameter (master weight, Adam momentum and variance),
//
//   stage 0: (2 + 2 + K) Psi            = 16 Psi
//   stage 1: (2 + 2) Psi + K Psi/N      = 4 Psi + 12 Psi/N
//   stage 2: 2 Psi + (2 + K) Psi/N      = 2 Psi + 14 Psi/N
//   stage 3: (2 + 2 + K) Psi/N          = 16 Psi/N
//
// for fp16/bf16 parameters and gradients. In fp32 they are 4 bytes each and
// the trainer still keeps a separate fp32 master copy, so 20 bytes per
// parameter. Psi/N is the padded shard of zero/partition.h, ceil(Psi/N).
// Activations do not depend on the stage: each rank runs whole micro-batches.

#include <array>
#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/dtype.h"
#include "trainer/config.pb.h"
#include "core/device.h"
#include "trainer/param_layout.h"

namespace zt {

// Bytes of fp32 optimizer state per parameter: master weight, Adam m and v.
inline constexpr int64_t kOptimizerBytesPerParam = 12;

// One rank's model states (what the paper calls model states), in bytes.
struct ModelStateBytes {
  int64_t parameters = 0;
  int64_t gradients = 0;
  int64_t optimizer = 0;  // fp32 master weights + Adam moments
  int64_t total() const { return parameters + gradients + optimizer; }
};

// The engine's model-state allocation on every rank (each rank allocates a
// full padded shard, the last one included). `dtype` is the compute dtype of
// parameters and gradients. Requires numel > 0, world_size > 0, stage 0..3.
ModelStateBytes ModelStatesPerRank(int64_t numel, int world_size, int stage,
                                   DType dtype);

// The engine's communication buffers for `stage` (reduced/sent shards,
// per-unit gradient and gather slots): not model states, but memory all the
// same. Depends on the unit sizes, hence the layout.
int64_t CommBuffersPerRank(const ParamLayout& layout, int world_size, int stage,
                           DType dtype);

// One micro-batch's activation memory per rank, as GptModel::Allocate sizes
// it: independent of the ZeRO stage and of gradient accumulation.
struct ActivationBytes {
  int64_t tensors = 0;    // compute-dtype activations and gradient scratch
  int64_t stats = 0;      // fp32 LayerNorm mean/rstd, attention LSE, losses
  int64_t token_ids = 0;  // int32 inputs and targets
  int64_t workspace = 0;  // the largest kernel backward workspace
  int64_t total() const { return tensors + stats + token_ids + workspace; }
};
// `device` matters for the kernel workspace only (the CPU kernels need none).
ActivationBytes ActivationsPerRank(const ParamLayout& layout, DType dtype,
                                   int micro_batch, int seq_len, Device device);

struct MemoryEstimate {
  int64_t num_params = 0;
  int world_size = 1;
  DType dtype = DType::kFloat16;
  int64_t shard = 0;  // ceil(num_params / world_size)
  std::array<ModelStateBytes, 4> stages;
  // From a config only (they need the model's shape).
  std::optional<std::array<int64_t, 4>> comm_buffers;
  std::optional<ActivationBytes> activations;
  int micro_batch = 0, seq_len = 0;
  int configured_stage = -1;  // the config's zero.stage, else -1
};

MemoryEstimate EstimateFromParamCount(int64_t num_params, int world_size,
                                      DType dtype);
// `config` resolved (ResolveConfig); counts parameters with
// ParamLayout::ForGpt.
absl::StatusOr<MemoryEstimate> EstimateFromConfig(const TrainConfig& config,
                                                  int world_size);

// The report the memory_estimator binary prints.
std::string FormatEstimate(const MemoryEstimate& estimate);

// The memory_estimator command line (arguments without the program name):
//   --params=P --world_size=N [--dtype=fp16|bf16|fp32]
//   --config=FILE [--set=PATH=VALUE ...] --world_size=N
// Returns the report, or kInvalidArgument naming the offending flag (other
// codes from loading the config, e.g. kNotFound for a missing file).
absl::StatusOr<std::string> RunMemoryEstimator(
    absl::Span<const std::string> args);

inline constexpr char kMemoryEstimatorUsage[] =
    "usage: memory_estimator --params=P --world_size=N "
    "[--dtype=fp16|bf16|fp32]\n"
    "       memory_estimator --config=FILE [--set=PATH=VALUE ...] "
    "--world_size=N\n"
    "  --params=P       parameter count, e.g. 7.5e9 (default dtype fp16)\n"
    "  --config=FILE    text-format TrainConfig: exact parameter count, dtype\n"
    "                   and activations of its GPT\n"
    "  --set=PATH=VAL   override a config field (repeatable), as train does\n"
    "  --world_size=N   data-parallel ranks\n"
    "  --dtype=D        with --params: fp16 or bf16 (2-byte parameters and\n"
    "                   gradients) or fp32 (4-byte)\n";

}  // namespace zt

#endif  // ZEROTRAIN_TOOLS_MEMORY_ESTIMATE_H_
