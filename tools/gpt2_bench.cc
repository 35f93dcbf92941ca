// GPU benchmark: GPT-2 124M training steps (forward, backward, clipping to
// 1.0, AdamW; one micro-batch of B x 1024 tokens per step) in zerotrain and
// in PyTorch (eager and torch.compile), bf16 and fp16 with dynamic loss
// scaling, on the same GPU in the same run. PyTorch runs in a child process
// (python3 with a CUDA PyTorch 2.x) from tools/torch_gpt2_bench.py, which is
// compiled into this binary so that the bundle needs no extra file.
//
//   bazel run --config=cuda //tools:gpt2_bench -- [--B=8] [--steps=10]
//   bundle: source env.sh && bin/gpt2_bench [flags]
//
// Flags: --B=N (micro-batch, default 8), --steps=N (timed steps, default 10),
// --warmup=N (default 5), --dtypes=bf16,fp16, --torch=eager,compile ("none"
// skips PyTorch), --python=CMD (default python3), --torch_script=PATH (run
// this file instead of the embedded copy), --set=field=value (config
// overrides after the GPT-2 ones, e.g. for a small smoke test on the CPU).
//
// --profile[=N]: for Nsight Compute (tools/profile_gpu.sh). Runs zerotrain
// only, in the first of --dtypes: --warmup plain steps, then N (default 1)
// training steps between cudaProfilerStart and cudaProfilerStop, so that
// `ncu --profile-from-start off` sees exactly those steps' kernels. No
// PyTorch child process (ncu would follow it) and no timing table. Nothing
// on the GPU waits for the host here (the stream gate that keeps ncu from
// finishing is kernels/bench's), so ncu's one-kernel-at-a-time replay
// cannot stall it.
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#if ZT_WITH_CUDA
#include <cuda_profiler_api.h>
#include <cuda_runtime_api.h>
#endif
#include "core/status_macros.h"
#include "tools/torch_gpt2_bench_py.h"
#include "trainer/config.h"
#include "trainer/param_layout.h"
#include "trainer/trainer.h"
#include "zero/communicator_factory.h"

namespace zt {
namespace {

// H100 SXM dense bf16 (and fp16) tensor-core peak, without sparsity.
constexpr double kPeakFlops = 989e12;

struct Flags {
  int B = 8;
  int steps = 10;
  int warmup = 5;
  std::vector<std::string> dtypes = {"bf16", "fp16"};
  std::vector<std::string> torch_modes = {"eager", "compile"};
  std::string python = "python3";
  std::string torch_script;
  std::vector<std::string> sets;
  int profile_steps = 0;  // > 0: --profile mode
};

// One row of the table.
struct Result {
  std::string system;  // zerotrain, eager, compile
  std::string dtype;
  double step_s = 0;     // median
  int64_t peak_bytes = 0;
  int skipped = 0;       // fp16 overflow steps among the timed ones
  std::string error;     // non-empty: the run failed
};

absl::StatusOr<Flags> ParseFlags(int argc, char** argv) {
  Flags f;
  auto positive = [](const std::string& arg, absl::string_view value, int* out) {
    if (!absl::SimpleAtoi(value, out) || *out < 1) {
      return absl::InvalidArgumentError(absl::StrCat("bad ", arg, ": must be a positive integer"));
    }
    return absl::OkStatus();
  };
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const size_t eq = a.find('=');
    const std::string name = a.substr(0, eq), value = eq == std::string::npos ? "" : a.substr(eq + 1);
    if (name == "--B") {
      ZT_RETURN_IF_ERROR(positive(a, value, &f.B));
    } else if (name == "--steps") {
      ZT_RETURN_IF_ERROR(positive(a, value, &f.steps));
    } else if (name == "--warmup") {
      if (!absl::SimpleAtoi(value, &f.warmup) || f.warmup < 0) {
        return absl::InvalidArgumentError(absl::StrCat("bad ", a, ": must be >= 0"));
      }
    } else if (name == "--dtypes") {
      f.dtypes = absl::StrSplit(value, ',');
      for (const std::string& d : f.dtypes) {
        if (d != "bf16" && d != "fp16") {
          return absl::InvalidArgumentError(absl::StrCat("bad ", a, ": \"", d, "\" is not bf16 or fp16"));
        }
      }
    } else if (name == "--torch") {
      f.torch_modes.clear();
      if (value != "none") f.torch_modes = absl::StrSplit(value, ',');
      for (const std::string& m : f.torch_modes) {
        if (m != "eager" && m != "compile") {
          return absl::InvalidArgumentError(
              absl::StrCat("bad ", a, ": \"", m, "\" is not eager, compile or none"));
        }
      }
    } else if (name == "--python" && !value.empty()) {
      f.python = value;
    } else if (name == "--torch_script" && !value.empty()) {
      f.torch_script = value;
    } else if (name == "--set" && !value.empty()) {
      f.sets.push_back(value);
    } else if (name == "--profile") {
      f.profile_steps = 1;
      if (eq != std::string::npos) ZT_RETURN_IF_ERROR(positive(a, value, &f.profile_steps));
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag \"", a, "\""));
    }
  }
  return f;
}

std::vector<std::string> Gpt2Overrides(const Flags& f, const std::string& dtype) {
  std::vector<std::string> s = {
      "model.n_layer=12", "model.n_head=12", "model.n_embd=768", "model.vocab_size=50257",
      "model.max_seq_len=1024",
      // Throughput does not depend on the tokens; the corpus just has to
      // cover the whole vocabulary.
      "data.synthetic.vocab_size=50257", absl::StrCat("batch.micro_batch_size=", f.B),
      "batch.seq_len=1024", "batch.grad_accum_steps=1", "optimizer.lr=6e-4",
      "optimizer.weight_decay=0.1", "optimizer.grad_clip=1.0", "eval.batches=0", "device=CUDA",
      absl::StrCat("precision.dtype=", dtype == "bf16" ? "BF16" : "FP16"),
      absl::StrCat("max_steps=", f.warmup + f.steps)};
  s.insert(s.end(), f.sets.begin(), f.sets.end());
  return s;
}

absl::Status RunZerotrain(const TrainConfig& config, const Flags& f, Result* r) {
  ZT_ASSIGN_OR_RETURN(Device device, ChooseDevice(config, /*local_rank=*/0));
  ZT_ASSIGN_OR_RETURN(auto comm, CreateCommunicator(CommunicatorBackend::kLocal, device));
  ZT_ASSIGN_OR_RETURN(auto trainer, Trainer::Create(config, comm.get()));
  std::vector<double> times;
  for (int s = 0; s < f.warmup + f.steps; ++s) {
    ZT_ASSIGN_OR_RETURN(StepReport rep, trainer->TrainStep());
    if (!std::isfinite(rep.loss) && !rep.skipped) {
      return absl::InternalError(absl::StrCat("step ", rep.step, ": loss ", rep.loss));
    }
    if (s >= f.warmup) {
      times.push_back(rep.seconds);
      r->skipped += rep.skipped ? 1 : 0;
    }
  }
  std::sort(times.begin(), times.end());
  r->step_s = times[times.size() / 2];
  // The cuBLASLt workspace is the model's kWorkspace buffer, so total_peak
  // already counts it; cuBLASLt allocates nothing else when given one.
  r->peak_bytes = trainer->allocator().Stats().total_peak;
  return absl::OkStatus();
}

// Runs `cmd`, echoing its output to stderr as it comes (torch.compile takes
// a minute; a run cut short still shows how far it got).
absl::StatusOr<std::string> RunCommand(const std::string& cmd) {
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(popen(cmd.c_str(), "r"), pclose);
  if (!pipe) return absl::InternalError(absl::StrCat("cannot run: ", cmd));
  std::string out;
  std::array<char, 4096> buf;
  while (fgets(buf.data(), buf.size(), pipe.get())) {
    std::fputs(buf.data(), stderr);
    out += buf.data();
  }
  const int rc = pclose(pipe.release());
  if (rc != 0) {
    const size_t keep = 4000;
    return absl::InternalError(absl::StrCat(
        cmd, " failed (status ", rc, "); output tail:\n",
        out.size() > keep ? out.substr(out.size() - keep) : out));
  }
  return out;
}

// The value of "key" in a one-line JSON object as written by json.dumps:
// numbers raw, strings without their quotes (no escapes expected).
std::optional<std::string> JsonField(absl::string_view line, absl::string_view key) {
  const std::string pat = absl::StrCat("\"", key, "\": ");
  const size_t k = line.find(pat);
  if (k == absl::string_view::npos) return std::nullopt;
  absl::string_view v = line.substr(k + pat.size());
  if (absl::StartsWith(v, "\"")) {
    size_t end = 1;
    while (end < v.size() && !(v[end] == '"' && v[end - 1] != '\\')) ++end;
    return std::string(v.substr(1, end - 1));
  }
  return std::string(v.substr(0, v.find_first_of(",}")));
}

// Writes the embedded PyTorch script to a temporary file.
absl::StatusOr<std::string> WriteEmbeddedScript() {
  const char* tmp = std::getenv("TMPDIR");
  std::string path = absl::StrCat(tmp != nullptr && *tmp ? tmp : "/tmp", "/gpt2_bench_XXXXXX.py");
  const int fd = mkstemps(path.data(), 3);
  if (fd < 0) return absl::InternalError(absl::StrCat("cannot create ", path));
  const std::string text = kTorchGpt2BenchPy;
  const bool ok = write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  close(fd);
  if (!ok) return absl::InternalError(absl::StrCat("cannot write ", path));
  return path;
}

// Runs PyTorch for every mode x dtype; a failure becomes the rows' error.
std::vector<Result> RunTorch(const Flags& f, const TrainConfig& config, std::string* header) {
  std::vector<Result> rows;
  std::vector<std::string> runs;
  for (const std::string& d : f.dtypes) {
    for (const std::string& m : f.torch_modes) runs.push_back(absl::StrCat(m, ":", d));
  }
  auto fail_all = [&](const std::string& error) {
    for (const std::string& d : f.dtypes) {
      for (const std::string& m : f.torch_modes) rows.push_back({m, d, 0, 0, 0, error});
    }
    return rows;
  };
  std::string script = f.torch_script;
  if (script.empty()) {
    absl::StatusOr<std::string> p = WriteEmbeddedScript();
    if (!p.ok()) return fail_all(p.status().ToString());
    script = *p;
  }
  const ModelConfig& m = config.model();
  const std::string cmd = absl::StrCat(
      f.python, " ", script, " --n_layer ", m.n_layer(), " --n_head ", m.n_head(), " --n_embd ",
      m.n_embd(), " --vocab_size ", m.vocab_size(), " --B ", config.batch().micro_batch_size(),
      " --T ", config.batch().seq_len(), " --steps ", f.steps, " --warmup ", f.warmup, " --runs ",
      absl::StrJoin(runs, ","), " 2>&1");
  std::fprintf(stderr, "gpt2_bench: running PyTorch: %s\n", cmd.c_str());
  absl::StatusOr<std::string> out = RunCommand(cmd);
  if (f.torch_script.empty()) std::remove(script.c_str());
  if (!out.ok()) return fail_all(out.status().ToString());
  std::map<std::string, Result> by_run;
  for (absl::string_view line : absl::StrSplit(*out, '\n')) {
    if (!absl::StartsWith(line, "{")) continue;
    if (auto t = JsonField(line, "torch")) {
      *header = absl::StrCat("PyTorch ", *t, " on ", JsonField(line, "device").value_or("?"));
      continue;
    }
    const auto mode = JsonField(line, "mode"), dtype = JsonField(line, "dtype");
    if (!mode || !dtype) continue;
    Result r{*mode, *dtype};
    if (auto e = JsonField(line, "error")) {
      r.error = *e;
    } else {
      const auto step = JsonField(line, "median_step_s"), peak = JsonField(line, "peak_bytes"),
                 skipped = JsonField(line, "skipped");
      if (!step || !absl::SimpleAtod(*step, &r.step_s) || !peak ||
          !absl::SimpleAtoi(*peak, &r.peak_bytes) || !skipped ||
          !absl::SimpleAtoi(*skipped, &r.skipped)) {
        r.error = absl::StrCat("unparsable PyTorch output: ", line);
      }
    }
    by_run[absl::StrCat(*mode, ":", *dtype)] = r;
  }
  for (const std::string& d : f.dtypes) {
    for (const std::string& m : f.torch_modes) {
      auto it = by_run.find(absl::StrCat(m, ":", d));
      if (it != by_run.end()) {
        rows.push_back(it->second);
      } else {
        rows.push_back({m, d, 0, 0, 0, absl::StrCat("no result from PyTorch; output:\n", *out)});
      }
    }
  }
  return rows;
}

#if ZT_WITH_CUDA
absl::Status CudaStatus(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return absl::OkStatus();
  return absl::InternalError(absl::StrCat(what, ": ", cudaGetErrorString(e)));
}
#endif

// Brackets the profiled steps for `ncu --profile-from-start off` (and nsys
// --capture-range=cudaProfilerApi). A CPU run has nothing to bracket.
absl::Status ProfilerRange(bool start, const Device& device) {
  if (!device.is_cuda()) return absl::OkStatus();
#if ZT_WITH_CUDA
  // Everything before the range has finished, everything in it is inside.
  ZT_RETURN_IF_ERROR(CudaStatus(cudaDeviceSynchronize(), "cudaDeviceSynchronize"));
  return start ? CudaStatus(cudaProfilerStart(), "cudaProfilerStart")
               : CudaStatus(cudaProfilerStop(), "cudaProfilerStop");
#else
  return absl::FailedPreconditionError("a CUDA device in a build without CUDA");
#endif
}

absl::Status RunProfile(const Flags& f) {
  const std::string& d = f.dtypes.front();
  ZT_ASSIGN_OR_RETURN(TrainConfig config, ResolveConfig("", Gpt2Overrides(f, d)));
  config.set_max_steps(f.warmup + f.profile_steps);
  ZT_ASSIGN_OR_RETURN(Device device, ChooseDevice(config, /*local_rank=*/0));
  ZT_ASSIGN_OR_RETURN(auto comm, CreateCommunicator(CommunicatorBackend::kLocal, device));
  ZT_ASSIGN_OR_RETURN(auto trainer, Trainer::Create(config, comm.get()));
  std::printf("gpt2_bench --profile: %s on %s, B = %d, T = %d; %d warmup step(s), then %d "
              "profiled step(s) between cudaProfilerStart and cudaProfilerStop\n",
              d.c_str(), device.ToString().c_str(), config.batch().micro_batch_size(),
              config.batch().seq_len(), f.warmup, f.profile_steps);
  std::fflush(stdout);
  for (int s = 0; s < f.warmup + f.profile_steps; ++s) {
    const bool profiled = s >= f.warmup;
    if (s == f.warmup) ZT_RETURN_IF_ERROR(ProfilerRange(true, device));
    ZT_ASSIGN_OR_RETURN(StepReport rep, trainer->TrainStep());
    if (!std::isfinite(rep.loss) && !rep.skipped) {
      return absl::InternalError(absl::StrCat("step ", rep.step, ": loss ", rep.loss));
    }
    std::printf("%s step %lld: loss %.4f, %.2f ms%s\n", profiled ? "profiled" : "warmup",
                static_cast<long long>(rep.step), rep.loss, rep.seconds * 1e3,
                rep.skipped ? " (skipped: fp16 overflow)" : "");
    std::fflush(stdout);
  }
  ZT_RETURN_IF_ERROR(ProfilerRange(false, device));
  return absl::OkStatus();
}

absl::Status Main(int argc, char** argv) {
  ZT_ASSIGN_OR_RETURN(Flags f, ParseFlags(argc, argv));
  if (f.profile_steps > 0) return RunProfile(f);
  std::vector<Result> rows;
  std::optional<TrainConfig> first_config;
  for (const std::string& d : f.dtypes) {
    ZT_ASSIGN_OR_RETURN(TrainConfig config, ResolveConfig("", Gpt2Overrides(f, d)));
    if (!first_config) first_config = config;
    Result r{"zerotrain", d};
    std::fprintf(stderr, "gpt2_bench: zerotrain %s, %d warmup + %d timed steps\n", d.c_str(),
                 f.warmup, f.steps);
    const absl::Status s = RunZerotrain(config, f, &r);
    if (!s.ok()) r.error = s.ToString();
    rows.push_back(r);
  }
  const TrainConfig& config = *first_config;
  std::string torch_header;
  if (!f.torch_modes.empty()) {
    for (Result& r : RunTorch(f, config, &torch_header)) rows.push_back(r);
  }

  const ModelConfig& m = config.model();
  GptShape shape;
  shape.n_layer = m.n_layer();
  shape.n_head = m.n_head();
  shape.n_embd = m.n_embd();
  shape.vocab_size = m.vocab_size();
  shape.padded_vocab_size = static_cast<int>(PaddedVocabSize(m.vocab_size()));
  shape.max_seq_len = m.max_seq_len();
  ZT_ASSIGN_OR_RETURN(ParamLayout layout, ParamLayout::ForGpt(shape));
  const int T = config.batch().seq_len();
  const double n = static_cast<double>(layout.numel());
  const double flops_per_token = 6.0 * n + 6.0 * m.n_layer() * m.n_embd() * T;
  const double tokens = double(config.batch().micro_batch_size()) * T;
  const bool gpu = config.device() != TrainConfig::CPU;

  std::printf("GPT-2: %d layers, %d heads, %d channels, vocab %d (padded %d), N = %.0f parameters; "
              "B = %d, T = %d, %.0f tokens per step%s%s\n",
              m.n_layer(), m.n_head(), m.n_embd(), m.vocab_size(), shape.padded_vocab_size, n,
              config.batch().micro_batch_size(), T, tokens, torch_header.empty() ? "" : "; ",
              torch_header.c_str());
  std::printf("median of %d steps after %d warmup; each step: forward, backward, clip 1.0, AdamW "
              "(fp32 master weights and moments)\n\n",
              f.steps, f.warmup);
  std::printf("%-10s %-5s %12s %10s %7s %11s %12s\n", "system", "dtype", "tokens/s", "ms/step",
              "MFU", "peak mem", "vs compile");
  std::vector<std::string> errors;
  for (const std::string& d : f.dtypes) {
    const Result* compiled = nullptr;
    for (const Result& r : rows) {
      if (r.dtype == d && r.system == "compile" && r.error.empty()) compiled = &r;
    }
    for (const Result& r : rows) {
      if (r.dtype != d) continue;
      if (!r.error.empty()) {
        std::printf("%-10s %-5s %12s %10s %7s %11s %12s  (error %zu below)\n", r.system.c_str(),
                    d.c_str(), "-", "-", "-", "-", "-", errors.size() + 1);
        errors.push_back(absl::StrCat(r.system, " ", d, ": ", r.error));
        continue;
      }
      const double tps = tokens / r.step_s;
      const std::string mfu =
          gpu ? absl::StrFormat("%.1f%%", 100 * tps * flops_per_token / kPeakFlops) : "-";
      const std::string ratio =
          compiled != nullptr ? absl::StrFormat("%.2fx", compiled->step_s / r.step_s) : "-";
      std::printf("%-10s %-5s %12.0f %10.2f %7s %7.2f GiB %12s%s\n", r.system.c_str(), d.c_str(),
                  tps, r.step_s * 1e3, mfu.c_str(), r.peak_bytes / double(1 << 30), ratio.c_str(),
                  r.skipped > 0 ? absl::StrFormat("  (%d skipped fp16 steps)", r.skipped).c_str()
                                : "");
    }
  }
  std::printf(
      "\nMFU = tokens/s x (6N + 6LCT = %.4g FLOP/token) / 989 TFLOP/s (H100 SXM dense bf16/fp16 "
      "peak).\npeak mem: zerotrain = its allocator's total_peak (parameters, gradients, master "
      "weights, Adam moments, activations, cuBLASLt and op workspace); PyTorch = "
      "torch.cuda.max_memory_allocated(). Neither counts the CUDA context.\nvs compile = "
      "tokens/s relative to PyTorch torch.compile in the same precision.\n",
      flops_per_token);
  for (size_t i = 0; i < errors.size(); ++i) {
    std::printf("error %zu: %s\n", i + 1, errors[i].c_str());
  }
  return errors.empty() ? absl::OkStatus()
                        : absl::InternalError(absl::StrCat(errors.size(), " run(s) failed"));
}

}  // namespace
}  // namespace zt

int main(int argc, char** argv) {
  const absl::Status s = zt::Main(argc, argv);
  if (!s.ok()) {
    std::fprintf(stderr, "gpt2_bench: %s\n", s.ToString().c_str());
    return absl::IsInvalidArgument(s) ? 2 : 1;
  }
  return 0;
}
