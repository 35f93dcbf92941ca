#ifndef ZEROTRAIN_ZERO_MPI_COMMUNICATOR_H_
#define ZEROTRAIN_ZERO_MPI_COMMUNICATOR_H_

// The MPI backend: CPU ranks, and GPU ranks that share a GPU (NCCL refuses
// two ranks on one device), through host memory.
//
// Contract:
// - One communicator = a duplicate of MPI_COMM_WORLD with MPI_ERRORS_RETURN,
//   so MPI failures come back as kUnavailable instead of aborting.
// - Collectives are non-blocking MPI (MPI_Iallreduce,
//   MPI_Ireduce_scatter_block, MPI_Iallgather, MPI_Ibcast, MPI_Ibarrier;
//   the variable-count forms are MPI_Ireduce_scatter and MPI_Iallgatherv).
//   MPI progresses them only inside MPI calls: WorkHandle::Poll() between
//   pieces of compute lets communication overlap with it; Wait(timeout) polls
//   MPI_Test until the deadline.
// - A Wait that times out leaves the collective pending (MPI cannot cancel a
//   collective): Wait may be called again and completes if the late peer
//   joins. A handle destroyed while its collective is pending waits for it
//   (kDefaultCollectiveTimeout) and, if that fails, leaks its request and
//   staging memory rather than free memory MPI may still write.
// - fp32 sums use MPI_SUM. fp16 and bf16 sums use our own MPI_Op declared
//   non-commutative, so MPI combines ranks in rank order; each pairwise add
//   converts both operands to float, adds, and rounds once to the 16-bit type
//   (round to nearest even). Float holds more than 2p+2 bits of either
//   16-bit type, so this equals the correctly rounded 16-bit sum of the two
//   operands. A sum over N ranks therefore rounds N-1 times, in an order
//   fixed by MPI's algorithm for that world size and count (the same on
//   every run, and the result is the same bits on every rank). Reduce-scatter
//   (both forms) leaves each element on one rank only; its association may
//   differ from all-reduce's, so the two can differ in the last bits.
// - kAverage: the sum divided by world_size on each rank after the
//   collective (one more rounding for every dtype).
// - Host-staged mode (any CUDA device; optional on the CPU, where it only
//   exercises the same path): device buffers are copied to host staging
//   memory on the options' stream, which is then synchronized (the host
//   waits for the producer), the collective runs on host memory, and Wait()
//   copies the result back on the same stream and synchronizes it. Staged
//   collectives on a CUDA device need a non-null options.stream.
// - Calls on one communicator come from one thread at a time. MPI is
//   initialized (MPI_THREAD_SERIALIZED) on first use if the program has not
//   done it, and then finalized at exit once every communicator is gone.

#include <memory>

#include "absl/status/statusor.h"
#include "core/device.h"
#include "zero/communicator.h"

namespace zt {

struct MpiCommunicatorOptions {
  // Where the collectives' buffers live. A CUDA device means host-staged.
  Device device = Device::Cpu();
  // Stage through host memory even for a CPU device (for tests of that path).
  bool host_staged = false;
  // Staging memory is counted under MemoryCategory::kCommBuffers here;
  // null: an allocator of the communicator's own. Must outlive it.
  Allocator* staging_allocator = nullptr;
};

// Works in a plain process too (MPI singleton: rank 0 of 1), but a plain
// process is better served by CreateLocalCommunicator, which needs no MPI.
absl::StatusOr<std::unique_ptr<Communicator>> CreateMpiCommunicator(
    const MpiCommunicatorOptions& options = {});

}  // namespace zt

#endif  // ZEROTRAIN_ZERO_MPI_COMMUNICATOR_H_
