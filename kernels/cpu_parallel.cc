#include "kernels/cpu_parallel.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <mutex>

namespace zt::kernels {

void UseSingleThreadedBlas() {
  static std::once_flag once;
  std::call_once(once, [] { openblas_set_num_threads(1); });
}

int CpuThreads() { return std::max(1, omp_get_max_threads()); }

void SetCpuThreads(int threads) { omp_set_num_threads(std::max(1, threads)); }

void ShareCpuThreadsAmongLocalRanks(int local_ranks) {
  if (local_ranks <= 1 || std::getenv("OMP_NUM_THREADS") != nullptr) return;
  SetCpuThreads(omp_get_num_procs() / local_ranks);
}

void ParallelFor(int64_t n, int64_t grain, absl::FunctionRef<void(int64_t, int64_t)> fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  const int64_t chunks = (n + grain - 1) / grain;
  const int threads = static_cast<int>(std::min<int64_t>(chunks, CpuThreads()));
  if (threads <= 1 || omp_in_parallel()) {
    for (int64_t c = 0; c < chunks; ++c) fn(c * grain, std::min(n, (c + 1) * grain));
    return;
  }
  UseSingleThreadedBlas();
  // Dynamic scheduling: chunk costs differ (causal attention rows, the last
  // short chunk), and which thread runs a chunk changes no result.
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
  for (int64_t c = 0; c < chunks; ++c) fn(c * grain, std::min(n, (c + 1) * grain));
}

}  // namespace zt::kernels
