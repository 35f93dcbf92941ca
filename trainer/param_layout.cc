#include "trainer/param_layout.h"

#include <cmath>

#include "absl/strings/str_cat.h"

namespace zt {

absl::StatusOr<ParamLayout> ParamLayout::ForGpt(const GptShape& s) {
  if (s.n_layer <= 0 || s.n_head <= 0 || s.n_embd <= 0 || s.vocab_size <= 0 ||
      s.max_seq_len <= 0) {
    return absl::InvalidArgumentError("GPT shape sizes must all be positive");
  }
  if (s.n_embd % s.n_head != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("n_embd ", s.n_embd, " is not divisible by n_head ", s.n_head));
  }
  if (s.padded_vocab_size < s.vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat("padded vocab ", s.padded_vocab_size,
                                                   " is smaller than vocab ", s.vocab_size));
  }
  ParamLayout layout;
  layout.shape_ = s;
  const int64_t C = s.n_embd;
  const double std = 0.02;
  // GPT-2 scales the init of projections into the residual stream by
  // 1/sqrt(2 * n_layer): two such additions per block.
  const double residual_std = std / std::sqrt(2.0 * s.n_layer);

  int unit = 0;
  auto add = [&](std::string name, std::vector<int64_t> shape, bool decay, double init_std,
                 float init_value) {
    ParamSpec p;
    p.name = std::move(name);
    p.shape = std::move(shape);
    p.numel = 1;
    for (int64_t d : p.shape) p.numel *= d;
    p.offset = layout.numel_;
    p.decay = decay;
    p.unit = unit;
    p.init_std = init_std;
    p.init_value = init_value;
    layout.numel_ += p.numel;
    layout.units_[unit].params.push_back(static_cast<int>(layout.params_.size()));
    layout.units_[unit].end = layout.numel_;
    layout.params_.push_back(std::move(p));
  };
  auto begin_unit = [&](std::string name) {
    unit = static_cast<int>(layout.units_.size());
    UnitSpec u;
    u.name = std::move(name);
    u.begin = u.end = layout.numel_;
    layout.units_.push_back(std::move(u));
  };

  begin_unit("embeddings");
  add("wte.weight", {s.padded_vocab_size, C}, true, std, 0);
  add("wpe.weight", {s.max_seq_len, C}, true, std, 0);
  for (int l = 0; l < s.n_layer; ++l) {
    const std::string h = absl::StrCat("h.", l, ".");
    begin_unit(absl::StrCat("block.", l));
    add(h + "ln_1.weight", {C}, false, 0, 1);
    add(h + "ln_1.bias", {C}, false, 0, 0);
    add(h + "attn.c_attn.weight", {3 * C, C}, true, std, 0);
    add(h + "attn.c_attn.bias", {3 * C}, false, 0, 0);
    add(h + "attn.c_proj.weight", {C, C}, true, residual_std, 0);
    add(h + "attn.c_proj.bias", {C}, false, 0, 0);
    add(h + "ln_2.weight", {C}, false, 0, 1);
    add(h + "ln_2.bias", {C}, false, 0, 0);
    add(h + "mlp.c_fc.weight", {4 * C, C}, true, std, 0);
    add(h + "mlp.c_fc.bias", {4 * C}, false, 0, 0);
    add(h + "mlp.c_proj.weight", {C, 4 * C}, true, residual_std, 0);
    add(h + "mlp.c_proj.bias", {C}, false, 0, 0);
  }
  begin_unit("final");
  add("ln_f.weight", {C}, false, 0, 1);
  add("ln_f.bias", {C}, false, 0, 0);
  return layout;
}

absl::StatusOr<int> ParamLayout::Find(absl::string_view name) const {
  for (size_t i = 0; i < params_.size(); ++i) {
    if (params_[i].name == name) return static_cast<int>(i);
  }
  return absl::NotFoundError(absl::StrCat("no parameter named \"", name, "\""));
}

}  // namespace zt
