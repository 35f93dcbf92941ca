// ckpt_bench: checkpoint save throughput for a GPT-2 124M-sized optimizer
// state (fp32 master weights + Adam moments, ~1.5 GB) against a raw
// sequential write of the same bytes to the same directory in the same run,
// and how long an async save blocks a training loop compared with a
// synchronous one. A benchmark, not a test.
//
//   bazel run -c opt //tools:ckpt_bench -- [--dir=DIR] [--reps=N (5)]
//
// DIR (default /tmp/zt_ckpt_bench) is created and emptied; everything is
// written with fsync, so the figures are the disk's, not the page cache's.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "checkpoint/checkpointer.h"
#include "checkpoint/file_io.h"
#include "checkpoint/format.h"
#include "core/device.h"
#include "core/status_macros.h"
#include "trainer/config.h"
#include "trainer/param_layout.h"
#include "zero/communicator_factory.h"

namespace zt {
namespace {

using Clock = std::chrono::steady_clock;
double Since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// One file, `chunk`-byte write() calls, fsync: what the disk does with no
// checkpoint logic at all.
absl::StatusOr<double> RawWrite(const std::string& path,
                                const std::vector<const float*>& parts,
                                int64_t n, size_t chunk) {
  const auto start = Clock::now();
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return absl::ErrnoToStatus(errno, path);
  for (const float* p : parts) {
    const char* c = reinterpret_cast<const char*>(p);
    size_t left = static_cast<size_t>(n) * 4;
    while (left > 0) {
      const ssize_t w = ::write(fd, c, std::min(left, chunk));
      if (w < 0) {
        ::close(fd);
        return absl::ErrnoToStatus(errno, path);
      }
      c += w;
      left -= static_cast<size_t>(w);
    }
  }
  if (::fsync(fd) != 0) return absl::ErrnoToStatus(errno, path);
  ::close(fd);
  return Since(start);
}

// A stand-in for a training step: memory-bound passes over 64 MiB.
double FakeStep(std::vector<float>& work) {
  const auto start = Clock::now();
  for (int pass = 0; pass < 6; ++pass) {
    float acc = 0;
    for (float& x : work) {
      x = x * 0.999f + 0.001f;
      acc += x;
    }
    if (acc == -1) std::printf("!");
  }
  return Since(start);
}

struct LoopResult {
  double total = 0;     // loop wall time
  double blocked = 0;   // inside Save/Poll/Finish
};

absl::StatusOr<LoopResult> Loop(ckpt::CheckpointWriter* w,
                                const ckpt::OptimizerStateView& view,
                                std::vector<float>& work, int steps,
                                int save_at, int64_t step_base) {
  LoopResult r;
  const auto start = Clock::now();
  for (int s = 1; s <= steps; ++s) {
    FakeStep(work);
    if (w == nullptr) continue;
    const auto t = Clock::now();
    ZT_RETURN_IF_ERROR(w->Poll());
    if (s == save_at) {
      ckpt::TrainingState ts;
      ts.step = step_base + s;
      ZT_RETURN_IF_ERROR(w->Save(view, ts));
    }
    r.blocked += Since(t);
  }
  if (w != nullptr) {
    const auto t = Clock::now();
    ZT_RETURN_IF_ERROR(w->Finish());
    r.blocked += Since(t);
  }
  r.total = Since(start);
  return r;
}

absl::Status Main(int argc, char** argv) {
  std::string dir = "/tmp/zt_ckpt_bench";
  int reps = 5;
  for (int i = 1; i < argc; ++i) {
    absl::string_view a = argv[i];
    if (absl::ConsumePrefix(&a, "--dir=")) {
      dir = std::string(a);
    } else if (absl::ConsumePrefix(&a, "--reps=") && absl::SimpleAtoi(a, &reps)) {
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("usage: ckpt_bench [--dir=DIR] [--reps=N]; got ", argv[i]));
    }
  }
  GptShape shape;
  shape.n_layer = 12;
  shape.n_head = 12;
  shape.n_embd = 768;
  shape.vocab_size = 50257;
  shape.padded_vocab_size = GptShape::PadVocab(shape.vocab_size);
  shape.max_seq_len = 1024;
  ZT_ASSIGN_OR_RETURN(ParamLayout layout, ParamLayout::ForGpt(shape));
  const int64_t n = layout.numel();
  const double bytes = 3.0 * n * 4;
  std::printf("GPT-2 124M state: %lld parameters, %.2f GB of fp32 master + "
              "exp_avg + exp_avg_sq\n",
              static_cast<long long>(n), bytes / 1e9);

  std::vector<std::unique_ptr<float[]>> state;
  for (int s = 0; s < 3; ++s) {
    state.emplace_back(new float[n]);
    for (int64_t i = 0; i < n; ++i)
      state[s][i] = static_cast<float>((i * 2654435761u + s) % 1000003) * 1e-6f;
  }
  ckpt::OptimizerStateView view;
  view.range = {0, n};
  view.master = state[0].get();
  view.exp_avg = state[1].get();
  view.exp_avg_sq = state[2].get();
  view.device = Device::Cpu();

  ZT_RETURN_IF_ERROR(ckpt::RemoveRecursively(dir));
  ZT_RETURN_IF_ERROR(ckpt::MakeDirectories(dir));
  ZT_ASSIGN_OR_RETURN(auto comm, CreateCommunicator(CommunicatorBackend::kLocal,
                                                    Device::Cpu()));
  auto allocator = NewCpuAllocator();
  TrainConfig config = DefaultConfig();
  auto make_writer = [&](bool async, const std::string& root) {
    ckpt::CheckpointWriterOptions o;
    o.dir = root;
    o.keep = 0;  // old checkpoints are removed outside the timings
    o.async = async;
    o.verbose = false;
    return ckpt::CheckpointWriter::Create(o, config, layout, comm.get(),
                                          allocator.get(), nullptr);
  };

  // 1. Throughput: a raw write and a synchronous checkpoint save, back to
  // back in each repetition so both see the same disk; the raw write uses
  // 4 MiB calls like the checkpoint's ranges (64 MiB calls shown too: on
  // some disks they are slower).
  std::vector<double> ratios, raw_times, ckpt_times;
  ZT_ASSIGN_OR_RETURN(auto sync_writer, make_writer(false, dir + "/sync"));
  const std::vector<const float*> parts = {state[0].get(), state[1].get(),
                                           state[2].get()};
  for (int r = 0; r < reps; ++r) {
    ZT_ASSIGN_OR_RETURN(double raw64, RawWrite(dir + "/raw.bin", parts, n,
                                               size_t{64} << 20));
    ZT_RETURN_IF_ERROR(ckpt::Unlink(dir + "/raw.bin"));
    ZT_ASSIGN_OR_RETURN(double raw,
                        RawWrite(dir + "/raw.bin", parts, n, size_t{4} << 20));
    ZT_RETURN_IF_ERROR(ckpt::Unlink(dir + "/raw.bin"));
    ckpt::TrainingState ts;
    ts.step = r + 1;
    const auto t = Clock::now();
    ZT_RETURN_IF_ERROR(sync_writer->Save(view, ts));
    const double c = Since(t);
    ZT_RETURN_IF_ERROR(ckpt::RemoveRecursively(
        ckpt::JoinPath(dir + "/sync", ckpt::StepDirName(r + 1))));
    const ckpt::SaveStats st = sync_writer->last_stats();
    raw_times.push_back(raw);
    ckpt_times.push_back(c);
    ratios.push_back(raw / c);
    std::printf("rep %d: raw write %.2f GB/s (64 MiB calls: %.2f GB/s) | "
                "checkpoint save %.2f s = %.2f GB/s (shard write with "
                "checksums and fsync %.2f s, commit %.3f s) | ratio %.2f\n",
                r + 1, bytes / raw / 1e9, bytes / raw64 / 1e9, c,
                bytes / c / 1e9, st.write_seconds, st.commit_seconds,
                raw / c);
  }
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  std::printf("\nsave throughput, median of %d: checkpoint %.2f GB/s vs raw "
              "sequential write %.2f GB/s; checkpoint/raw ratio %.2f "
              "(per-repetition ratios %.2f..%.2f)\n",
              reps, bytes / median(ckpt_times) / 1e9,
              bytes / median(raw_times) / 1e9, median(ratios),
              *std::min_element(ratios.begin(), ratios.end()),
              *std::max_element(ratios.begin(), ratios.end()));
  sync_writer.reset();
  ZT_RETURN_IF_ERROR(ckpt::RemoveRecursively(dir + "/sync"));

  // 2. A loop of fake steps with one save: no save, async, sync. Long
  // enough for the async write to finish inside it.
  std::vector<float> work(16 << 20, 1.0f);
  const int steps = 60, save_at = 4;
  ZT_ASSIGN_OR_RETURN(LoopResult none,
                      Loop(nullptr, view, work, steps, save_at, 0));
  ZT_ASSIGN_OR_RETURN(auto async_writer, make_writer(true, dir + "/async"));
  ZT_ASSIGN_OR_RETURN(LoopResult async_r, Loop(async_writer.get(), view, work,
                                               steps, save_at, 100));
  const double async_save_call = async_writer->last_stats().blocked_seconds;
  async_writer.reset();
  ZT_ASSIGN_OR_RETURN(sync_writer, make_writer(false, dir + "/sync2"));
  ZT_ASSIGN_OR_RETURN(LoopResult sync_r, Loop(sync_writer.get(), view, work,
                                              steps, save_at, 200));
  sync_writer.reset();
  std::printf("\ntraining loop, %d steps of %.0f ms, one save at step %d "
              "(the async writer's host buffers are allocated up front):\n",
              steps, 1e3 * none.total / steps, save_at);
  std::printf("  no save      %.2f s\n", none.total);
  std::printf("  async save   %.2f s; the loop was blocked %.3f s (Save() "
              "itself: %.3f s, the copy to host memory)\n",
              async_r.total, async_r.blocked, async_save_call);
  std::printf("  sync save    %.2f s; the loop was blocked %.3f s\n",
              sync_r.total, sync_r.blocked);
  std::printf("  async blocks the loop %.1fx less than sync\n",
              sync_r.blocked / std::max(async_r.blocked, 1e-9));
  return ckpt::RemoveRecursively(dir);
}

}  // namespace
}  // namespace zt

int main(int argc, char** argv) {
  if (const char* wd = std::getenv("BUILD_WORKING_DIRECTORY"); wd && *wd) {
    if (chdir(wd) != 0) return 1;
  }
  const absl::Status s = zt::Main(argc, argv);
  if (!s.ok()) {
    std::fprintf(stderr, "ckpt_bench: error: %s\n", s.ToString().c_str());
    return 1;
  }
  return 0;
}
