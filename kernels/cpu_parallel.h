#ifndef ZEROTRAIN_KERNELS_CPU_PARALLEL_H_
#define ZEROTRAIN_KERNELS_CPU_PARALLEL_H_

// The CPU ops' one source of threads: a persistent pool (a parallel loop
// costs microseconds, not a thread start) with OpenBLAS kept single-threaded
// inside it. Two thread pools on the same few cores, each spinning while the
// other works, cost the CPU trainer about a third of its step time before
// this existed.
//
// Determinism: ParallelFor cuts [0, n) into chunks that depend only on n and
// the grain, never on the thread count, so an fn that writes only its own
// chunk's outputs (and combines per-chunk partials in chunk order) gives the
// same bits on 1 thread as on 16, on the same CPU and OpenBLAS build.
// (Another CPU model may get other OpenBLAS kernels, and another rank count
// other batch shapes and reduction orders.)

#include <cstdint>

#include "absl/functional/function_ref.h"

namespace zt::kernels {

// Runs fn(begin, end) for the chunks [0, grain), [grain, 2 grain), ... of
// [0, n), spread over the CPU threads (the caller is one of them). Runs
// inline when there is one chunk, one thread, when called from inside
// another ParallelFor, or while another thread's ParallelFor holds the pool.
// Thread-safe, also against SetCpuThreads (a loop running then finishes on
// the old pool).
void ParallelFor(int64_t n, int64_t grain, absl::FunctionRef<void(int64_t, int64_t)> fn);

// The number of threads ParallelFor uses: OMP_NUM_THREADS when set (the
// variable users already set for PyTorch and OpenMP programs), else the
// cores this process may run on.
int CpuThreads();

// Overrides CpuThreads() (at least 1). The trainer calls it when several
// ranks share one machine, so ranks do not oversubscribe the cores.
void SetCpuThreads(int threads);

// Shares this process's cores (its affinity mask) evenly among `local_ranks`
// ranks on one machine, unless OMP_NUM_THREADS says otherwise or the
// launcher already bound the rank to part of the machine: N ranks with all
// cores each would spin against each other.
void ShareCpuThreadsAmongLocalRanks(int local_ranks);

// Makes OpenBLAS run each call on the calling thread. Every CPU GEMM calls
// this first (it is cheap after the first call).
void UseSingleThreadedBlas();

}  // namespace zt::kernels

#endif  // ZEROTRAIN_KERNELS_CPU_PARALLEL_H_
