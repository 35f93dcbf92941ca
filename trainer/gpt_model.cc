#include "trainer/gpt_model.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "kernels/attention.h"
#include "core/status_macros.h"
#include "kernels/cross_entropy.h"
#include "kernels/embedding.h"
#include "kernels/layernorm.h"
#include "kernels/matmul.h"

namespace zt {
namespace {

// Activations (dtype).
enum Act {
  kResidual,   // [L+1][BTC]: input of block l; [L] is the input of ln_f
  kLn1,        // [L][BTC]
  kQkv,        // [L][BT3C]
  kAtty,       // [L][BTC]
  kResidual2,  // [L][BTC]: after the attention residual add
  kLn2,        // [L][BTC]
  kFchPre,     // [L][BT4C]: before GELU
  kFchGelu,    // [L][BT4C]
  kLnf,        // [BTC]
  kLogits,     // [BT Vp]; becomes dlogits when the loss gradient is fused in
  kProj,       // [BTC] scratch: attention / MLP output projection
  kDres,       // [BTC] gradient of the residual stream
  kDbtc,       // [BTC] gradient scratch
  kDbt3c,      // [BT3C]
  kDbt4c,      // [BT4C]
  kNumActs,
};

// fp32 statistics.
enum Stat {
  kLn1Mean,
  kLn1Rstd,
  kLn2Mean,
  kLn2Rstd,
  kLnfMean,
  kLnfRstd,
  kLse,
  kLosses,
  kNumStats
};

// Offsets of a block's parameters, in ParamLayout::ForGpt order.
enum BlockParam {
  kLn1W,
  kLn1B,
  kAttnW,
  kAttnB,
  kProjW,
  kProjB,
  kLn2W,
  kLn2B,
  kFcW,
  kFcB,
  kFcProjW,
  kFcProjB,
  kParamsPerBlock,
};

}  // namespace

GptModel::GptModel(const ParamLayout& layout, DType dtype, int B, int T,
                   Allocator* allocator, const kernels::OpContext& ctx)
    : layout_(layout),
      dtype_(dtype),
      B_(B),
      T_(T),
      allocator_(allocator),
      ctx_(ctx) {}

absl::StatusOr<std::unique_ptr<GptModel>> GptModel::Create(
    const ParamLayout& layout, DType dtype, int B, int T, Allocator* allocator,
    const kernels::OpContext& ctx) {
  if (B <= 0 || T <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "micro-batch ", B, " x sequence ", T, " must be positive"));
  }
  if (T > layout.shape().max_seq_len) {
    return absl::InvalidArgumentError(
        absl::StrCat("sequence length ", T, " exceeds the model's max_seq_len ",
                     layout.shape().max_seq_len));
  }
  std::unique_ptr<GptModel> m(
      new GptModel(layout, dtype, B, T, allocator, ctx));
  ZT_RETURN_IF_ERROR(m->Allocate());
  return m;
}

absl::Status GptModel::Allocate() {
  const GptShape& s = layout_.shape();
  const int64_t L = s.n_layer, C = s.n_embd, BT = int64_t{B_} * T_,
                Vp = s.padded_vocab_size;
  const size_t es = DTypeSize(dtype_);
  struct ActSpec {
    int64_t elems;
    int64_t count;
  };
  const ActSpec act_specs[kNumActs] = {
      {BT * C, L + 1}, {BT * C, L},     {BT * 3 * C, L}, {BT * C, L},
      {BT * C, L},     {BT * C, L},     {BT * 4 * C, L}, {BT * 4 * C, L},
      {BT * C, 1},     {BT * Vp, 1},    {BT * C, 1},     {BT * C, 1},
      {BT * C, 1},     {BT * 3 * C, 1}, {BT * 4 * C, 1},
  };
  const ActSpec stat_specs[kNumStats] = {
      {BT, L},
      {BT, L},
      {BT, L},
      {BT, L},
      {BT, 1},
      {BT, 1},
      {B_ * s.n_head * T_, L},
      {BT, 1},
  };
  acts_.assign(kNumActs, {});
  stats_.assign(kNumStats, {});
  // One allocation per kind keeps the allocator's records few.
  for (int k = 0; k < kNumActs; ++k) {
    const size_t bytes = act_specs[k].elems * act_specs[k].count * es;
    ZT_ASSIGN_OR_RETURN(
        Buffer b,
        Buffer::Allocate(*allocator_, bytes, MemoryCategory::kActivations));
    for (int64_t i = 0; i < act_specs[k].count; ++i) {
      acts_[k].push_back(b.as<char>() + i * act_specs[k].elems * es);
    }
    activation_bytes_ += bytes;
    buffers_.push_back(std::move(b));
  }
  for (int k = 0; k < kNumStats; ++k) {
    const size_t bytes =
        stat_specs[k].elems * stat_specs[k].count * sizeof(float);
    ZT_ASSIGN_OR_RETURN(
        Buffer b,
        Buffer::Allocate(*allocator_, bytes, MemoryCategory::kActivations));
    for (int64_t i = 0; i < stat_specs[k].count; ++i) {
      stats_[k].push_back(b.as<float>() + i * stat_specs[k].elems);
    }
    activation_bytes_ += bytes;
    buffers_.push_back(std::move(b));
  }
  ZT_ASSIGN_OR_RETURN(tokens_,
                      Buffer::Allocate(*allocator_, BT * sizeof(int32_t),
                                       MemoryCategory::kActivations));
  ZT_ASSIGN_OR_RETURN(targets_,
                      Buffer::Allocate(*allocator_, BT * sizeof(int32_t),
                                       MemoryCategory::kActivations));
  activation_bytes_ += 2 * BT * sizeof(int32_t);

  const size_t ws = WorkspaceBytes(layout_, dtype_, B_, T_, ctx_.device);
  ZT_ASSIGN_OR_RETURN(workspace_, Buffer::Allocate(*allocator_, ws,
                                                   MemoryCategory::kWorkspace));
  ctx_.workspace = workspace_.data();
  ctx_.workspace_bytes = ws;
  activation_bytes_ += ws;
  return absl::OkStatus();
}

size_t GptModel::WorkspaceBytes(const ParamLayout& layout, DType dtype, int B, int T,
                                Device device) {
  // The CPU references need no scratch; the CUDA kernels share one buffer
  // sized for the hungriest op (cuBLASLt's fp32 staging, reduction partials).
  if (device.is_cpu()) return 256;
  const GptShape& s = layout.shape();
  const int64_t C = s.n_embd, BT = int64_t{B} * T, Vp = s.padded_vocab_size;
  const kernels::AttentionParams ap{B, T, C, s.n_head, dtype};
  const kernels::EmbeddingParams ep{B, T, C, Vp, dtype};
  return std::max({kernels::MatmulForwardWorkspaceBytes(BT, std::max(Vp, 4 * C)),
                   kernels::MatmulBackwardWorkspaceBytes(BT, std::max(Vp, 4 * C)),
                   kernels::LayerNormBackwardWorkspaceBytes(BT, C),
                   kernels::AttentionBackwardWorkspaceBytes(ap),
                   kernels::EmbeddingBackwardWorkspaceBytes(ep), size_t{256}});
}

void* GptModel::Act(int id, int layer) const { return acts_[id][layer]; }
float* GptModel::Stat(int id, int layer) const { return stats_[id][layer]; }

int GptModel::Param(int layer, int which) const {
  return 2 + kParamsPerBlock * layer + which;
}

const void* GptModel::P(const UnitBuffers& u, int param) const {
  const ParamSpec& p = layout_.params()[param];
  return static_cast<const char*>(u.params) +
         (p.offset - u.begin) * DTypeSize(dtype_);
}

void* GptModel::G(const UnitBuffers& u, int param) const {
  const ParamSpec& p = layout_.params()[param];
  return static_cast<char*>(u.grads) + (p.offset - u.begin) * DTypeSize(dtype_);
}

double GptModel::FlopsPerToken() const {
  const GptShape& s = layout_.shape();
  return 6.0 * layout_.numel() + 6.0 * s.n_layer * s.n_embd * T_;
}

absl::Status GptModel::Forward(ParamProvider& provider,
                               const ForwardOptions& o) {
  using Pass = ParamProvider::Pass;
  const GptShape& s = layout_.shape();
  const int L = s.n_layer;
  const int64_t C = s.n_embd, BT = int64_t{B_} * T_, Vp = s.padded_vocab_size;
  const int wte = 0, wpe = 1, lnf_w = Param(L, 0), lnf_b = Param(L, 1);
  grad_ready_ = false;
  have_targets_ = o.targets != nullptr;

  // Token ids are checked on the host: an id outside the vocabulary would
  // read past wte on the device, where no error could be raised.
  for (int64_t i = 0; i < BT; ++i) {
    if (o.inputs[i] < 0 || o.inputs[i] >= s.vocab_size) {
      return absl::InvalidArgumentError(
          absl::StrCat("input token ", o.inputs[i], " at position ", i,
                       " is outside the vocabulary [0, ", s.vocab_size, ")"));
    }
    if (o.targets && (o.targets[i] < -1 || o.targets[i] >= s.vocab_size)) {
      return absl::InvalidArgumentError(
          absl::StrCat("target token ", o.targets[i], " at position ", i,
                       " is outside the vocabulary"));
    }
  }
  ZT_RETURN_IF_ERROR(CopyBytes(tokens_.data(), ctx_.device, o.inputs,
                               Device::Cpu(), BT * sizeof(int32_t),
                               ctx_.stream));
  if (o.targets) {
    host_targets_.assign(o.targets, o.targets + BT);
    ZT_RETURN_IF_ERROR(CopyBytes(targets_.data(), ctx_.device, o.targets,
                                 Device::Cpu(), BT * sizeof(int32_t),
                                 ctx_.stream));
  }
  const int32_t* tokens = tokens_.as<int32_t>();

  ZT_ASSIGN_OR_RETURN(
      UnitBuffers emb,
      provider.Acquire(layout_.embedding_unit(), Pass::kForward));
  ZT_RETURN_IF_ERROR(kernels::EmbeddingForward(ctx_, {B_, T_, C, Vp, dtype_},
                                               tokens, P(emb, wte), P(emb, wpe),
                                               Act(kResidual, 0)));
  const kernels::AttentionParams ap{B_, T_, C, s.n_head, dtype_};
  for (int l = 0; l < L; ++l) {
    ZT_ASSIGN_OR_RETURN(
        UnitBuffers u, provider.Acquire(layout_.block_unit(l), Pass::kForward));
    if (l == 0) {
      ZT_RETURN_IF_ERROR(kernels::LayerNormForward(
          ctx_, dtype_, BT, C, Act(kResidual, 0), P(u, Param(l, kLn1W)),
          P(u, Param(l, kLn1B)), Act(kLn1, l), Stat(kLn1Mean, l),
          Stat(kLn1Rstd, l)));
    } else {
      // The previous block's MLP residual add is fused with this block's
      // first LayerNorm.
      ZT_RETURN_IF_ERROR(kernels::ResidualLayerNormForward(
          ctx_, dtype_, BT, C, Act(kResidual2, l - 1), Act(kProj),
          P(u, Param(l, kLn1W)), P(u, Param(l, kLn1B)), Act(kResidual, l),
          Act(kLn1, l), Stat(kLn1Mean, l), Stat(kLn1Rstd, l)));
    }
    kernels::MatmulForwardParams mm;
    mm.dtype = dtype_;
    mm.M = BT;
    mm.inp = Act(kLn1, l);
    mm.weight = P(u, Param(l, kAttnW));
    mm.bias = P(u, Param(l, kAttnB));
    mm.out = Act(kQkv, l);
    mm.N = 3 * C;
    mm.K = C;
    ZT_RETURN_IF_ERROR(kernels::MatmulForward(ctx_, mm));
    ZT_RETURN_IF_ERROR(kernels::AttentionForward(ctx_, ap, Act(kQkv, l),
                                                 Act(kAtty, l), Stat(kLse, l)));
    mm.inp = Act(kAtty, l);
    mm.weight = P(u, Param(l, kProjW));
    mm.bias = P(u, Param(l, kProjB));
    mm.out = Act(kProj);
    mm.N = C;
    mm.K = C;
    ZT_RETURN_IF_ERROR(kernels::MatmulForward(ctx_, mm));
    ZT_RETURN_IF_ERROR(kernels::ResidualLayerNormForward(
        ctx_, dtype_, BT, C, Act(kResidual, l), Act(kProj),
        P(u, Param(l, kLn2W)), P(u, Param(l, kLn2B)), Act(kResidual2, l),
        Act(kLn2, l), Stat(kLn2Mean, l), Stat(kLn2Rstd, l)));
    mm.inp = Act(kLn2, l);
    mm.weight = P(u, Param(l, kFcW));
    mm.bias = P(u, Param(l, kFcB));
    mm.out = Act(kFchGelu, l);
    mm.pre_gelu = Act(kFchPre, l);
    mm.N = 4 * C;
    mm.K = C;
    ZT_RETURN_IF_ERROR(kernels::MatmulForward(ctx_, mm));
    mm.pre_gelu = nullptr;
    mm.inp = Act(kFchGelu, l);
    mm.weight = P(u, Param(l, kFcProjW));
    mm.bias = P(u, Param(l, kFcProjB));
    mm.out = Act(kProj);
    mm.N = C;
    mm.K = 4 * C;
    ZT_RETURN_IF_ERROR(kernels::MatmulForward(ctx_, mm));
    ZT_RETURN_IF_ERROR(provider.Release(layout_.block_unit(l), Pass::kForward));
  }
  ZT_ASSIGN_OR_RETURN(UnitBuffers fin,
                      provider.Acquire(layout_.final_unit(), Pass::kForward));
  ZT_RETURN_IF_ERROR(kernels::ResidualLayerNormForward(
      ctx_, dtype_, BT, C, Act(kResidual2, L - 1), Act(kProj), P(fin, lnf_w),
      P(fin, lnf_b), Act(kResidual, L), Act(kLnf), Stat(kLnfMean),
      Stat(kLnfRstd)));
  ZT_RETURN_IF_ERROR(provider.Release(layout_.final_unit(), Pass::kForward));

  // Tied LM head: logits = lnf @ wte^T.
  kernels::MatmulForwardParams head;
  head.dtype = dtype_;
  head.inp = Act(kLnf);
  head.weight = P(emb, wte);
  head.out = Act(kLogits);
  head.M = BT;
  head.N = Vp;
  head.K = C;
  ZT_RETURN_IF_ERROR(kernels::MatmulForward(ctx_, head));
  ZT_RETURN_IF_ERROR(
      provider.Release(layout_.embedding_unit(), Pass::kForward));

  if (o.targets) {
    kernels::CrossEntropyParams xp;
    xp.rows = BT;
    xp.V = s.vocab_size;
    xp.Vp = Vp;
    xp.dtype = dtype_;
    xp.dloss = o.compute_grad ? o.dloss : 0.0f;
    xp.compute_grad = o.compute_grad;
    ZT_RETURN_IF_ERROR(kernels::SoftmaxCrossEntropy(
        ctx_, xp, Act(kLogits), targets_.as<int32_t>(), Stat(kLosses)));
    grad_ready_ = o.compute_grad;
  }
  return absl::OkStatus();
}

absl::Status GptModel::Backward(ParamProvider& provider) {
  using Pass = ParamProvider::Pass;
  if (!grad_ready_) {
    return absl::FailedPreconditionError(
        "Backward() needs a preceding Forward() with targets and compute_grad");
  }
  grad_ready_ = false;
  const GptShape& s = layout_.shape();
  const int L = s.n_layer;
  const int64_t C = s.n_embd, BT = int64_t{B_} * T_, Vp = s.padded_vocab_size;
  const int wte = 0, wpe = 1, lnf_w = Param(L, 0), lnf_b = Param(L, 1);
  const size_t es = DTypeSize(dtype_);

  ZT_ASSIGN_OR_RETURN(
      UnitBuffers emb,
      provider.Acquire(layout_.embedding_unit(), Pass::kBackward));
  ZT_ASSIGN_OR_RETURN(UnitBuffers fin,
                      provider.Acquire(layout_.final_unit(), Pass::kBackward));
  ZT_RETURN_IF_ERROR(
      ZeroBytes(Act(kDres), ctx_.device, BT * C * es, ctx_.stream));

  kernels::MatmulBackwardParams mb;
  mb.dtype = dtype_;
  mb.M = BT;
  mb.dout = Act(kLogits);
  mb.inp = Act(kLnf);
  mb.weight = P(emb, wte);
  mb.dinp = Act(kDbtc);
  mb.dweight = G(emb, wte);
  // The tied head writes wte's gradient first; EmbeddingBackward adds to it.
  mb.accumulate = !emb.grads_zeroed;
  mb.N = Vp;
  mb.K = C;
  ZT_RETURN_IF_ERROR(kernels::MatmulBackward(ctx_, mb));
  ZT_RETURN_IF_ERROR(kernels::LayerNormBackward(
      ctx_, dtype_, BT, C, Act(kDbtc), Act(kResidual, L), P(fin, lnf_w),
      Stat(kLnfMean), Stat(kLnfRstd), Act(kDres), G(fin, lnf_w),
      G(fin, lnf_b)));
  ZT_RETURN_IF_ERROR(provider.GradientsReady(layout_.final_unit()));
  ZT_RETURN_IF_ERROR(provider.Release(layout_.final_unit(), Pass::kBackward));

  const kernels::AttentionParams ap{B_, T_, C, s.n_head, dtype_};
  for (int l = L - 1; l >= 0; --l) {
    ZT_ASSIGN_OR_RETURN(UnitBuffers u, provider.Acquire(layout_.block_unit(l),
                                                        Pass::kBackward));
    auto linear = [&](const void* dout, const void* inp,
                      const void* inp_pre_gelu, int w, int b, void* dinp,
                      int64_t N, int64_t K) {
      kernels::MatmulBackwardParams p;
      p.dtype = dtype_;
      p.M = BT;
      p.N = N;
      p.K = K;
      p.dout = dout;
      p.inp = inp;
      p.inp_pre_gelu = inp_pre_gelu;
      p.weight = P(u, Param(l, w));
      p.dweight = G(u, Param(l, w));
      p.dbias = G(u, Param(l, b));
      // Each block weight and bias has exactly one writer.
      p.accumulate = !u.grads_zeroed;
      p.dinp = dinp;
      return kernels::MatmulBackward(ctx_, p);
    };
    // MLP: dres is the gradient of this block's output.
    ZT_RETURN_IF_ERROR(linear(Act(kDres), Act(kFchGelu, l), Act(kFchPre, l),
                              kFcProjW, kFcProjB, Act(kDbt4c), C, 4 * C));
    ZT_RETURN_IF_ERROR(linear(Act(kDbt4c), Act(kLn2, l), nullptr, kFcW, kFcB,
                              Act(kDbtc), 4 * C, C));
    ZT_RETURN_IF_ERROR(kernels::LayerNormBackward(
        ctx_, dtype_, BT, C, Act(kDbtc), Act(kResidual2, l),
        P(u, Param(l, kLn2W)), Stat(kLn2Mean, l), Stat(kLn2Rstd, l), Act(kDres),
        G(u, Param(l, kLn2W)), G(u, Param(l, kLn2B))));
    // Attention.
    ZT_RETURN_IF_ERROR(linear(Act(kDres), Act(kAtty, l), nullptr, kProjW,
                              kProjB, Act(kDbtc), C, C));
    ZT_RETURN_IF_ERROR(kernels::AttentionBackward(ctx_, ap, Act(kDbtc),
                                                  Act(kQkv, l), Act(kAtty, l),
                                                  Stat(kLse, l), Act(kDbt3c)));
    ZT_RETURN_IF_ERROR(linear(Act(kDbt3c), Act(kLn1, l), nullptr, kAttnW,
                              kAttnB, Act(kDbtc), 3 * C, C));
    ZT_RETURN_IF_ERROR(kernels::LayerNormBackward(
        ctx_, dtype_, BT, C, Act(kDbtc), Act(kResidual, l),
        P(u, Param(l, kLn1W)), Stat(kLn1Mean, l), Stat(kLn1Rstd, l), Act(kDres),
        G(u, Param(l, kLn1W)), G(u, Param(l, kLn1B))));
    ZT_RETURN_IF_ERROR(provider.GradientsReady(layout_.block_unit(l)));
    ZT_RETURN_IF_ERROR(
        provider.Release(layout_.block_unit(l), Pass::kBackward));
  }
  ZT_RETURN_IF_ERROR(kernels::EmbeddingBackward(
      ctx_, {B_, T_, C, Vp, dtype_}, tokens_.as<int32_t>(), Act(kDres),
      G(emb, wte), G(emb, wpe)));
  ZT_RETURN_IF_ERROR(provider.GradientsReady(layout_.embedding_unit()));
  ZT_RETURN_IF_ERROR(
      provider.Release(layout_.embedding_unit(), Pass::kBackward));
  return absl::OkStatus();
}

absl::StatusOr<std::vector<float>> GptModel::Losses() {
  if (!have_targets_)
    return absl::FailedPreconditionError("the last Forward() had no targets");
  const int64_t BT = int64_t{B_} * T_;
  std::vector<float> out(BT);
  ZT_RETURN_IF_ERROR(CopyBytes(out.data(), Device::Cpu(), Stat(kLosses),
                               ctx_.device, BT * sizeof(float), ctx_.stream));
  ZT_RETURN_IF_ERROR(SynchronizeStream(ctx_.device, ctx_.stream));
  return out;
}

absl::StatusOr<double> GptModel::MeanLoss() {
  ZT_ASSIGN_OR_RETURN(std::vector<float> losses, Losses());
  double sum = 0;
  int64_t n = 0;
  for (size_t i = 0; i < losses.size(); ++i) {
    if (host_targets_[i] == -1) continue;
    sum += losses[i];
    ++n;
  }
  return n ? sum / n : 0.0;
}

}  // namespace zt
