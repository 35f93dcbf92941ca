// Parity with an outside reference: the CPU fp32 trainer and PyTorch
// (Debian's python3-torch under /usr/bin/python3) start from identical
// weights and see identical batches; the loss at every step, every
// parameter's gradient at step 0 and the parameters after 3 AdamW steps must
// agree to 1e-5 relative.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "trainer/config.h"
#include "trainer/data.h"
#include "trainer/trainer.h"
#include "zero/communicator_factory.h"

namespace zt {
namespace {

template <typename T>
void WriteFile(const std::string& path, const std::vector<T>& v) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
  ASSERT_TRUE(f.good()) << path;
}

template <typename T>
std::vector<T> ReadFile(const std::string& path, size_t n) {
  std::vector<T> v(n);
  std::ifstream f(path, std::ios::binary);
  f.read(reinterpret_cast<char*>(v.data()), n * sizeof(T));
  EXPECT_TRUE(f.good()) << "reading " << path;
  return v;
}

// Per tensor, the norm-wise relative error ||ours - torch|| / ||torch||
// must be <= 1e-5. Element-wise relative error is not a meaningful bar in
// fp32: an entry that is the small difference of large terms (most gradient
// entries of a summed batch) carries the rounding noise of those terms, and
// AdamW divides each gradient by its own magnitude, which turns that noise in
// near-zero gradients into O(lr) parameter differences in either framework.
//
// One slice is left out of the parameter comparison: the key part of
// attn.c_attn.bias. Adding a constant vector to every key shifts each row of
// attention scores by a constant, which softmax ignores, so that gradient is
// exactly zero in exact arithmetic and pure rounding noise in both
// frameworks; AdamW then moves those entries by noise-determined amounts.
// The test checks instead that both gradients there are negligible.
bool IsKeyBias(const ParamSpec& p, int64_t i, int64_t C) {
  return p.name.find("attn.c_attn.bias") != std::string::npos && i >= C &&
         i < 2 * C;
}

void ExpectRelClose(const std::vector<float>& ours,
                    const std::vector<float>& ref, const ParamLayout& layout,
                    const std::string& what, double tol) {
  const int64_t C = layout.shape().n_embd;
  for (const ParamSpec& p : layout.params()) {
    double diff = 0, norm = 0;
    for (int64_t i = 0; i < p.numel; ++i) {
      if (IsKeyBias(p, i, C)) continue;
      const double a = ours[p.offset + i], b = ref[p.offset + i];
      diff += (a - b) * (a - b);
      norm += b * b;
    }
    const double rel = std::sqrt(diff) / std::max(std::sqrt(norm), 1e-30);
    EXPECT_LE(rel, tol) << what << " " << p.name << ": relative error " << rel;
    std::printf("%-22s %-28s rel err %.3g\n", what.c_str(), p.name.c_str(),
                rel);
  }
}

TEST(TorchParityTest, LossGradientsAndAdamWStepsMatchPyTorch) {
  const int steps = 3;
  std::vector<std::string> sets = {"model.n_layer=2",
                                   "model.n_head=2",
                                   "model.n_embd=16",
                                   "model.vocab_size=100",
                                   "model.max_seq_len=8",
                                   "batch.micro_batch_size=2",
                                   "batch.seq_len=8",
                                   "optimizer.lr=0.01",
                                   "optimizer.warmup_steps=0",
                                   "optimizer.min_lr_ratio=1",
                                   "optimizer.weight_decay=0.1",
                                   "optimizer.grad_clip=0",
                                   "device=CPU",
                                   "data.synthetic.vocab_size=100",
                                   "max_steps=3",
                                   "eval.batches=0"};
  auto config = ResolveConfig("", sets);
  ASSERT_TRUE(config.ok()) << config.status();
  auto comm = CreateCommunicator(CommunicatorBackend::kLocal, Device::Cpu());
  ASSERT_TRUE(comm.ok()) << comm.status();
  auto trainer = Trainer::Create(*config, comm->get());
  ASSERT_TRUE(trainer.ok()) << trainer.status();
  ZeroEngine& engine = (*trainer)->engine();
  const ParamLayout& layout = (*trainer)->model().layout();
  const int64_t n = layout.numel();

  const std::string dir = absl::StrCat(std::getenv("TEST_TMPDIR"), "/parity");
  ASSERT_EQ(system(absl::StrCat("mkdir -p ", dir).c_str()), 0);
  std::vector<float> init(static_cast<const float*>(engine.parameters()),
                          static_cast<const float*>(engine.parameters()) + n);
  WriteFile(dir + "/params.bin", init);

  // The trainer's batches, reproduced by an identical loader.
  auto loader =
      DataLoader::FromConfig(*config, DataLoader::Split::kTrain, 0, 1);
  ASSERT_TRUE(loader.ok()) << loader.status();
  std::vector<int32_t> inputs, targets;
  for (int s = 0; s < steps; ++s) {
    Batch b;
    ASSERT_TRUE((*loader)->Next(&b).ok());
    inputs.insert(inputs.end(), b.inputs.begin(), b.inputs.end());
    targets.insert(targets.end(), b.targets.begin(), b.targets.end());
  }
  WriteFile(dir + "/inputs.bin", inputs);
  WriteFile(dir + "/targets.bin", targets);

  std::string spec = absl::StrCat(
      "{\"n_layer\": 2, \"n_head\": 2, \"n_embd\": 16, \"vocab_size\": 100, "
      "\"B\": 2, \"T\": 8,"
      " \"steps\": ",
      steps, ", \"lr\": 0.01, \"beta1\": ", config->optimizer().beta1(),
      ", \"beta2\": ", config->optimizer().beta2(),
      ", \"eps\": ", config->optimizer().eps(),
      ", \"weight_decay\": ", config->optimizer().weight_decay(),
      ", \"params\": [");
  for (size_t i = 0; i < layout.params().size(); ++i) {
    const ParamSpec& p = layout.params()[i];
    absl::StrAppend(&spec, i ? ", " : "", "{\"name\": \"", p.name,
                    "\", \"offset\": ", p.offset, ", \"numel\": ", p.numel,
                    ", \"decay\": ", p.decay ? "true" : "false",
                    ", \"shape\": [");
    for (size_t d = 0; d < p.shape.size(); ++d)
      absl::StrAppend(&spec, d ? ", " : "", p.shape[d]);
    absl::StrAppend(&spec, "]}");
  }
  absl::StrAppend(&spec, "]}");
  {
    std::ofstream f(dir + "/spec.json");
    f << spec;
  }
  const std::string cmd = absl::StrCat(
      "/usr/bin/python3 tools/torch_gpt.py parity ", dir, " 2>&1");
  ASSERT_EQ(system(cmd.c_str()), 0)
      << cmd << " failed (is python3-torch installed? run tools/setup.sh)";

  const auto torch_losses = ReadFile<double>(dir + "/torch_losses.bin", steps);
  const auto torch_grads = ReadFile<float>(dir + "/torch_grads0.bin", n);
  const auto torch_final = ReadFile<float>(dir + "/torch_params_final.bin", n);

  for (int s = 0; s < steps; ++s) {
    auto r = (*trainer)->TrainStep();
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_NEAR(r->loss, torch_losses[s], 1e-5 * std::abs(torch_losses[s]))
        << "step " << s;
    ASSERT_FALSE(r->skipped);
    if (s == 0) {
      const float* g = static_cast<const float*>(engine.gradients());
      ExpectRelClose(std::vector<float>(g, g + n), torch_grads, layout,
                     "gradient", 1e-5);
      for (const ParamSpec& p : layout.params()) {
        double max_abs = 0;
        for (int64_t i = 0; i < p.numel; ++i)
          max_abs =
              std::max(max_abs, std::abs(double(torch_grads[p.offset + i])));
        for (int64_t i = 0; i < p.numel; ++i) {
          if (!IsKeyBias(p, i, layout.shape().n_embd)) continue;
          EXPECT_LE(std::abs(g[p.offset + i]), 1e-5 * max_abs)
              << p.name << "[" << i << "] ours";
          EXPECT_LE(std::abs(torch_grads[p.offset + i]), 1e-5 * max_abs)
              << p.name << "[" << i << "] torch";
        }
      }
    }
  }
  std::vector<float> final_params(engine.master(), engine.master() + n);
  ExpectRelClose(final_params, torch_final, layout, "params after 3 steps",
                 1e-5);
}

}  // namespace
}  // namespace zt
