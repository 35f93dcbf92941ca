#ifndef ZEROTRAIN_ZERO_NCCL_COMMUNICATOR_H_
#define ZEROTRAIN_ZERO_NCCL_COMMUNICATOR_H_

// The NCCL backend: one rank per GPU (built with --config=cuda only).
//
// Contract:
// - Bootstrap: under an MPI launcher rank 0's ncclUniqueId is broadcast over
//   MPI; with WORLD_SIZE/RANK/MASTER_ADDR/MASTER_PORT it travels over TCP
//   (tcp_rendezvous.h); with neither the communicator has one rank. The
//   communicator is created non-blocking, so a peer that never joins fails
//   the creation with kDeadlineExceeded after `init_timeout`.
// - Every collective runs on a stream the communicator owns. It first waits
//   (cudaStreamWaitEvent, no host block) for the work already issued on the
//   options' stream; a null options.stream means "the buffers are ready".
//   Simple collectives, except the variable-count forms: a group of
//   ncclReduce (reduce-scatter-v) or ncclBroadcast (all-gather-v) calls, one
//   per non-empty piece, rooted at its owner.
// - WorkHandle::Wait polls a CUDA event with a deadline and checks
//   ncclCommGetAsyncError. On timeout it calls ncclCommAbort, so kernels
//   stuck on a dead peer are released, and returns kDeadlineExceeded; the
//   communicator is then unusable (later calls return kUnavailable).
//   OrderBefore(stream) only makes `stream` wait for the collective's event.
// - Two ranks on one GPU are refused by NCCL itself; use the MPI backend's
//   host-staged mode for that.

#include <memory>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "zero/communicator.h"

namespace zt {

struct NcclCommunicatorOptions {
  int device_index = 0;  // This rank's GPU.
  // Bounds bootstrap and ncclCommInitRank together.
  absl::Duration init_timeout = absl::Minutes(5);
};

// FailedPrecondition when built without CUDA or the GPU does not exist.
absl::StatusOr<std::unique_ptr<Communicator>> CreateNcclCommunicator(
    const NcclCommunicatorOptions& options);

}  // namespace zt

#endif  // ZEROTRAIN_ZERO_NCCL_COMMUNICATOR_H_
