#include "tools/memory_estimate.h"

#include "trainer/gpt_model.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/status_macros.h"
#include "trainer/config.h"

namespace zt {
namespace {

int64_t ShardSize(int64_t numel, int world_size) {
  return (numel + world_size - 1) / world_size;
}

DType FromConfigDType(PrecisionConfig::DType t) {
  switch (t) {
    case PrecisionConfig::FP16:
      return DType::kFloat16;
    case PrecisionConfig::BF16:
      return DType::kBFloat16;
    default:
      return DType::kFloat32;
  }
}

// "12.3 GB" / "11.5 GiB": one decimal in the largest unit that keeps the
// value at least 1, as the ZeRO paper rounds (1.875e9 bytes -> "1.9 GB").
std::string Human(int64_t bytes, bool binary) {
  static const char* const kDecimal[] = {"B", "kB", "MB", "GB", "TB", "PB"};
  static const char* const kBinary[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  const double base = binary ? 1024.0 : 1000.0;
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= base && u < 5) {
    v /= base;
    ++u;
  }
  if (u == 0) return absl::StrCat(bytes, " B");
  return absl::StrFormat("%.1f %s", v, binary ? kBinary[u] : kDecimal[u]);
}

std::string Both(int64_t bytes) {
  return absl::StrFormat("%10s %11s", Human(bytes, false), Human(bytes, true));
}

// The stage's formula in the paper's notation, for this dtype.
std::string Formula(int stage, DType dtype) {
  const int64_t p = DTypeSize(dtype), k = kOptimizerBytesPerParam;
  switch (stage) {
    case 0:
      return absl::StrCat(2 * p + k, " Psi");
    case 1:
      return absl::StrCat(2 * p, " Psi + ", k, " Psi/N");
    case 2:
      return absl::StrCat(p, " Psi + ", p + k, " Psi/N");
    default:
      return absl::StrCat(2 * p + k, " Psi/N");
  }
}

absl::StatusOr<int64_t> ParseParams(const std::string& v) {
  double d = 0;
  if (!absl::SimpleAtod(v, &d) || !std::isfinite(d)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--params=", v, " is not a number (e.g. --params=7.5e9)"));
  }
  // 1e15 parameters is 16 PB of model states: far past any real model, and
  // well inside int64 byte counts.
  if (d < 1 || d > 1e15 || std::floor(d) != d) {
    return absl::InvalidArgumentError(
        absl::StrCat("--params=", v, " must be a whole number in [1, 1e15]"));
  }
  return static_cast<int64_t>(d);
}

absl::StatusOr<int> ParseWorldSize(const std::string& v) {
  int n = 0;
  if (!absl::SimpleAtoi(v, &n) || n < 1 || n > (1 << 24)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--world_size=", v, " must be a whole number in [1, 16777216]"));
  }
  return n;
}

absl::StatusOr<DType> ParseDType(const std::string& v) {
  const std::string d = absl::AsciiStrToLower(v);
  if (d == "fp16") return DType::kFloat16;
  if (d == "bf16") return DType::kBFloat16;
  if (d == "fp32") return DType::kFloat32;
  return absl::InvalidArgumentError(
      absl::StrCat("--dtype=", v, " must be fp16, bf16 or fp32"));
}

}  // namespace

ModelStateBytes ModelStatesPerRank(int64_t numel, int world_size, int stage,
                                   DType dtype) {
  // Mirrors ZeroEngine::Setup: what stays full size below each stage and
  // what becomes one padded shard S from it on.
  const int64_t S = ShardSize(numel, world_size);
  const int64_t es = DTypeSize(dtype);
  ModelStateBytes b;
  b.parameters = (stage < 3 ? numel : S) * es;
  b.gradients = (stage < 2 ? numel : S) * es;
  b.optimizer = (stage < 1 ? numel : S) * kOptimizerBytesPerParam;
  return b;
}

int64_t CommBuffersPerRank(const ParamLayout& layout, int world_size, int stage,
                           DType dtype) {
  // Mirrors ZeroEngine::Setup's kCommBuffers allocations.
  const int64_t S = ShardSize(layout.numel(), world_size);
  const int64_t es = DTypeSize(dtype);
  int64_t max_unit = 0;
  for (size_t u = 1; u < layout.units().size(); ++u) {
    max_unit = std::max(max_unit, layout.units()[u].numel());
  }
  // Slot 0 holds the embeddings for the whole pass; two slots alternate over
  // the other units.
  const int64_t slots = layout.units()[0].numel() + 2 * max_unit;
  switch (stage) {
    case 0:
      return 0;
    case 1:  // reduced gradient shard + updated parameter shard to gather
      return 2 * S * es;
    case 2:  // parameter shard to gather + reduced pieces + gradient slots
      return (2 * S + slots) * es;
    default:  // reduced pieces + gradient slots + gathered-parameter slots
      return (S + 2 * slots) * es;
  }
}

ActivationBytes ActivationsPerRank(const ParamLayout& layout, DType dtype,
                                   int micro_batch, int seq_len, Device device) {
  // Mirrors GptModel::Allocate.
  const GptShape& s = layout.shape();
  const int64_t L = s.n_layer, C = s.n_embd, Vp = s.padded_vocab_size;
  const int64_t B = micro_batch, T = seq_len, BT = B * T;
  const int64_t es = DTypeSize(dtype);
  ActivationBytes a;
  // Per block: residual, ln1, qkv (3C), attention out, residual2, ln2,
  // fc pre-GELU (4C), fc post-GELU (4C) = 16 C. Once: the final residual,
  // ln_f, output projection scratch, and the backward scratch dres, dbtc,
  // dbt3c, dbt4c = 1 + 1 + 1 + 1 + 1 + 3 + 4 = 12 C; and the logits.
  a.tensors = es * (BT * C * (16 * L + 12) + BT * Vp);
  // LayerNorm mean and rstd (2 per block LN, ln_f), attention LSE per head,
  // per-token losses.
  a.stats = static_cast<int64_t>(sizeof(float)) *
            (4 * BT * L + 2 * BT + B * s.n_head * T * L + BT);
  a.token_ids = 2 * BT * static_cast<int64_t>(sizeof(int32_t));
  a.workspace = static_cast<int64_t>(
      GptModel::WorkspaceBytes(layout, dtype, micro_batch, seq_len, device));
  return a;
}

MemoryEstimate EstimateFromParamCount(int64_t num_params, int world_size,
                                      DType dtype) {
  MemoryEstimate e;
  e.num_params = num_params;
  e.world_size = world_size;
  e.dtype = dtype;
  e.shard = ShardSize(num_params, world_size);
  for (int stage = 0; stage < 4; ++stage) {
    e.stages[stage] = ModelStatesPerRank(num_params, world_size, stage, dtype);
  }
  return e;
}

absl::StatusOr<MemoryEstimate> EstimateFromConfig(const TrainConfig& config,
                                                  int world_size) {
  const ModelConfig& m = config.model();
  GptShape shape;
  shape.n_layer = m.n_layer();
  shape.n_head = m.n_head();
  shape.n_embd = m.n_embd();
  shape.vocab_size = m.vocab_size();
  shape.padded_vocab_size = static_cast<int>(PaddedVocabSize(m.vocab_size()));
  shape.max_seq_len = m.max_seq_len();
  ZT_ASSIGN_OR_RETURN(ParamLayout layout, ParamLayout::ForGpt(shape));
  const DType dtype = FromConfigDType(config.precision().dtype());
  MemoryEstimate e = EstimateFromParamCount(layout.numel(), world_size, dtype);
  std::array<int64_t, 4> comm;
  for (int stage = 0; stage < 4; ++stage) {
    comm[stage] = CommBuffersPerRank(layout, world_size, stage, dtype);
  }
  e.comm_buffers = comm;
  e.micro_batch = config.batch().micro_batch_size();
  e.seq_len = config.batch().seq_len();
  // The estimate is for the device the config asks for (AUTO: a GPU, what
  // one estimates memory for).
  const Device device =
      config.device() == TrainConfig::CPU ? Device::Cpu() : Device::Cuda(0);
  e.activations = ActivationsPerRank(layout, dtype, e.micro_batch, e.seq_len, device);
  e.configured_stage = static_cast<int>(config.zero().stage());
  return e;
}

std::string FormatEstimate(const MemoryEstimate& e) {
  const int64_t p = DTypeSize(e.dtype);
  std::string out = absl::StrFormat(
      "ZeRO memory per rank: %d parameters (Psi), %d ranks (N)\n", e.num_params,
      e.world_size);
  if (e.dtype == DType::kFloat32) {
    absl::StrAppend(
        &out,
        "fp32 Adam: 4-byte parameters and gradients, and the trainer keeps a "
        "separate fp32 master copy besides Adam's two moments: 4 + 4 + 12 = "
        "20 bytes per parameter\n");
  } else {
    absl::StrAppend(
        &out, "mixed-precision Adam (", DTypeName(e.dtype),
        "): 2-byte parameters and gradients, fp32 master weights, momentum "
        "and variance: 2 + 2 + 12 = 16 bytes per parameter\n");
  }
  absl::StrAppend(&out, "Psi/N = ceil(", e.num_params, " / ", e.world_size,
                  ") = ", e.shard, " parameters per shard");
  if (e.shard * e.world_size != e.num_params) {
    absl::StrAppend(&out,
                    " (padded: the engine allocates a full shard on "
                    "every rank)");
  }
  absl::StrAppend(&out,
                  "\nGB = 1e9 bytes (as in the ZeRO paper), GiB = 2^30 "
                  "bytes\n\n");
  absl::StrAppend(
      &out,
      absl::StrFormat("%-6s %-17s %22s  %s\n", "stage", "formula",
                      "model states", "(parameters + gradients + optimizer)"));
  for (int stage = 0; stage < 4; ++stage) {
    const ModelStateBytes& b = e.stages[stage];
    absl::StrAppend(
        &out,
        absl::StrFormat("%-6d %-17s %s  (%s + %s + %s)%s\n", stage,
                        Formula(stage, e.dtype), Both(b.total()),
                        Human(b.parameters, false), Human(b.gradients, false),
                        Human(b.optimizer, false),
                        stage == e.configured_stage ? "  <- zero.stage" : ""));
  }
  if (!e.activations) {
    absl::StrAppend(
        &out,
        "\nActivations are extra and not estimated here: they depend on the "
        "model's shape and the micro-batch (use --config).\n");
    return out;
  }
  const ActivationBytes& a = *e.activations;
  absl::StrAppend(&out,
                  "\nCommunication buffers of the engine (per rank, not model "
                  "states):\n");
  for (int stage = 0; stage < 4; ++stage) {
    absl::StrAppend(&out, absl::StrFormat("%-6d %-17s %s\n", stage, "",
                                          Both((*e.comm_buffers)[stage])));
  }
  absl::StrAppend(
      &out,
      absl::StrFormat(
          "\nActivations per rank, any stage (one micro-batch of %d x %d "
          "tokens at a time; gradient accumulation does not add to it):\n"
          "  %s\n  (%s %d-byte tensors + %s fp32 statistics + %s token ids "
          "+ %s kernel workspace)\n",
          e.micro_batch, e.seq_len, Both(a.total()), Human(a.tensors, false), p,
          Human(a.stats, false), Human(a.token_ids, false),
          Human(a.workspace, false)));
  absl::StrAppend(&out,
                  "\nTotal per rank (model states + communication "
                  "buffers + activations):\n");
  for (int stage = 0; stage < 4; ++stage) {
    absl::StrAppend(
        &out,
        absl::StrFormat("%-6d %-17s %s%s\n", stage, "",
                        Both(e.stages[stage].total() +
                             (*e.comm_buffers)[stage] + a.total()),
                        stage == e.configured_stage ? "  <- zero.stage" : ""));
  }
  return out;
}

absl::StatusOr<std::string> RunMemoryEstimator(
    absl::Span<const std::string> args) {
  std::optional<std::string> params, config, world_size, dtype;
  std::vector<std::string> sets;
  for (const std::string& a : args) {
    const size_t eq = a.find('=');
    const std::string name = a.substr(0, eq);
    if (name == "--help" || name == "-h")
      return std::string(kMemoryEstimatorUsage);
    std::optional<std::string>* slot = nullptr;
    if (name == "--params") {
      slot = &params;
    } else if (name == "--config") {
      slot = &config;
    } else if (name == "--world_size") {
      slot = &world_size;
    } else if (name == "--dtype") {
      slot = &dtype;
    } else if (name != "--set") {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown flag \"", a, "\""));
    }
    if (eq == std::string::npos || eq + 1 == a.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, " needs a value: ", name, "=VALUE"));
    }
    const std::string value = a.substr(eq + 1);
    if (slot == nullptr) {
      sets.push_back(value);
    } else if (slot->has_value()) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, " is given more than once"));
    } else {
      *slot = value;
    }
  }
  if (!world_size) {
    return absl::InvalidArgumentError(
        "--world_size is required (the number of data-parallel ranks)");
  }
  ZT_ASSIGN_OR_RETURN(const int n, ParseWorldSize(*world_size));
  if (params && (config || !sets.empty())) {
    return absl::InvalidArgumentError(
        "--params cannot be combined with --config or --set: the config "
        "determines the parameter count");
  }
  if (params) {
    ZT_ASSIGN_OR_RETURN(const int64_t psi, ParseParams(*params));
    DType d = DType::kFloat16;
    if (dtype) {
      ZT_ASSIGN_OR_RETURN(d, ParseDType(*dtype));
    }
    return FormatEstimate(EstimateFromParamCount(psi, n, d));
  }
  if (!config) {
    return absl::InvalidArgumentError(
        "give --params=P or --config=FILE (the model to estimate)");
  }
  if (dtype) {
    return absl::InvalidArgumentError(
        "--dtype applies to --params only; with --config use "
        "--set=precision.dtype=FP16|BF16|FP32");
  }
  // Load and validation errors name the file and the field path.
  ZT_ASSIGN_OR_RETURN(TrainConfig resolved, ResolveConfig(*config, sets));
  ZT_ASSIGN_OR_RETURN(MemoryEstimate e, EstimateFromConfig(resolved, n));
  return FormatEstimate(e);
}

}  // namespace zt
