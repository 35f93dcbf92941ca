// CPU benchmark: one training step (forward, backward, clipping, AdamW) of
// the same small GPT in zerotrain and in PyTorch (Debian's python3-torch),
// on the same machine in the same run, with the same thread budget.
//
//   bazel run -c opt //tools:cpu_bench -- [--steps=20] [--rounds=3] [--set=model.n_layer=4 ...]
#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "kernels/cpu_parallel.h"
#include "trainer/config.h"
#include "trainer/trainer.h"
#include "zero/communicator_factory.h"

namespace zt {
namespace {

absl::StatusOr<std::string> RunCommand(const std::string& cmd) {
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(popen(cmd.c_str(), "r"), pclose);
  if (!pipe) return absl::InternalError(absl::StrCat("cannot run: ", cmd));
  std::string out;
  std::array<char, 512> buf;
  while (fgets(buf.data(), buf.size(), pipe.get())) out += buf.data();
  const int rc = pclose(pipe.release());
  if (rc != 0) return absl::InternalError(absl::StrCat(cmd, " failed (", rc, "): ", out));
  return out;
}

absl::Status Main(int argc, char** argv) {
  int steps = 20, warmup = 3, rounds = 3;
  std::vector<std::string> sets = {"device=CPU", "eval.batches=0"};
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (absl::StartsWith(a, "--steps=")) {
      if (!absl::SimpleAtoi(a.substr(8), &steps) || steps < 1) {
        return absl::InvalidArgumentError(absl::StrCat("bad ", a));
      }
    } else if (absl::StartsWith(a, "--rounds=")) {
      if (!absl::SimpleAtoi(a.substr(9), &rounds) || rounds < 1) {
        return absl::InvalidArgumentError(absl::StrCat("bad ", a));
      }
    } else if (absl::StartsWith(a, "--set=")) {
      sets.push_back(a.substr(6));
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag \"", a, "\""));
    }
  }
  sets.push_back(absl::StrCat("max_steps=", rounds * steps + warmup));
  ZT_ASSIGN_OR_RETURN(TrainConfig config, ResolveConfig("", sets));
  ZT_ASSIGN_OR_RETURN(auto comm, CreateCommunicator(CommunicatorBackend::kLocal, Device::Cpu()));
  ZT_ASSIGN_OR_RETURN(auto trainer, Trainer::Create(config, comm.get()));
  const int threads = kernels::CpuThreads();
  const ModelConfig& m = config.model();
  // Warm-up steps of the first round only; later rounds continue the run.
  int ours_warmup = warmup;
  auto our_step = [&]() -> absl::StatusOr<double> {
    std::vector<double> times;
    for (int s = 0; s < ours_warmup + steps; ++s) {
      ZT_ASSIGN_OR_RETURN(StepReport r, trainer->TrainStep());
      if (s >= ours_warmup) times.push_back(r.seconds);
    }
    ours_warmup = 0;
    std::sort(times.begin(), times.end());
    return times[times.size() / 2];
  };
  // PyTorch twice: as installed (its OpenBLAS threads on top of its own
  // intra-op threads) and with OpenBLAS single-threaded, which is faster on
  // few cores. The ratio is against the faster of the two.
  auto torch_step = [&](const std::string& env) -> absl::StatusOr<double> {
    const std::string cmd = absl::StrCat(
        env, " /usr/bin/python3 tools/torch_gpt.py bench --n_layer ", m.n_layer(), " --n_head ",
        m.n_head(), " --n_embd ", m.n_embd(), " --vocab_size ", m.vocab_size(), " --B ",
        config.batch().micro_batch_size(), " --T ", config.batch().seq_len(), " --steps ", steps,
        " --warmup ", warmup, " --threads ", threads, " 2>&1");
    ZT_ASSIGN_OR_RETURN(std::string out, RunCommand(cmd));
    const size_t k = out.find("\"median_step_s\": ");
    double s = 0;
    if (k == std::string::npos ||
        !absl::SimpleAtod(out.substr(k + 17, out.find(',', k) - k - 17), &s)) {
      return absl::InternalError(absl::StrCat("unexpected PyTorch output: ", out));
    }
    return s;
  };
  // Rounds alternate the three so that load from other work on a shared
  // machine hits all of them alike; each keeps its fastest round's median.
  double ours = 1e30, torch_default = 1e30, torch_blas1 = 1e30;
  for (int round = 0; round < rounds; ++round) {
    ZT_ASSIGN_OR_RETURN(const double o, our_step());
    ZT_ASSIGN_OR_RETURN(const double d, torch_step(""));
    ZT_ASSIGN_OR_RETURN(const double b, torch_step("OPENBLAS_NUM_THREADS=1"));
    ours = std::min(ours, o);
    torch_default = std::min(torch_default, d);
    torch_blas1 = std::min(torch_blas1, b);
  }
  const double torch_best = std::min(torch_default, torch_blas1);
  const double tokens = double(config.batch().micro_batch_size()) * config.batch().seq_len();
  std::printf("model: %d layers, %d heads, %d channels, vocab %d; batch %d x %d; %d threads\n",
              m.n_layer(), m.n_head(), m.n_embd(), m.vocab_size(),
              config.batch().micro_batch_size(), config.batch().seq_len(), threads);
  std::printf("%d rounds of %d steps each; per row the fastest round's median step\n", rounds,
              steps);
  std::printf("%-34s %14s %12s\n", "", "median step", "tokens/s");
  std::printf("%-34s %11.2f ms %12.0f\n", "zerotrain", ours * 1e3, tokens / ours);
  std::printf("%-34s %11.2f ms %12.0f\n", "pytorch (as installed)", torch_default * 1e3,
              tokens / torch_default);
  std::printf("%-34s %11.2f ms %12.0f\n", "pytorch (OPENBLAS_NUM_THREADS=1)", torch_blas1 * 1e3,
              tokens / torch_blas1);
  std::printf("zerotrain speed / best pytorch speed: %.2fx (target >= 1.0)\n", torch_best / ours);
  return absl::OkStatus();
}

}  // namespace
}  // namespace zt

int main(int argc, char** argv) {
  const absl::Status s = zt::Main(argc, argv);
  if (!s.ok()) {
    std::fprintf(stderr, "cpu_bench: %s\n", s.ToString().c_str());
    return 1;
  }
  return 0;
}
