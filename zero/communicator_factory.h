#ifndef ZEROTRAIN_ZERO_COMMUNICATOR_FACTORY_H_
#define ZEROTRAIN_ZERO_COMMUNICATOR_FACTORY_H_

// Picks and creates the communicator for this process.
//
// kAuto:
// - started by an MPI launcher: NCCL when the device is a GPU, the build has
//   CUDA, and this machine has at least as many GPUs as ranks on it;
//   otherwise MPI (host-staged for a GPU device: several ranks share one
//   GPU, which NCCL refuses);
// - WORLD_SIZE > 1 without MPI (torchrun/Slurm-style): NCCL, which needs a
//   GPU device; CPU ranks must be started by mpirun;
// - otherwise: LocalCommunicator (world size 1, no MPI at all).

#include <memory>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/device.h"
#include "zero/communicator.h"
#include "zero/launch_env.h"

namespace zt {

enum class CommunicatorBackend : int { kAuto = 0, kLocal, kMpi, kNccl };

absl::string_view CommunicatorBackendName(CommunicatorBackend b);
// "auto", "local", "mpi", "nccl".
absl::StatusOr<CommunicatorBackend> ParseCommunicatorBackend(absl::string_view name);

// The backend `requested` resolves to (never kAuto), or why it cannot work
// here: FailedPrecondition for NCCL without CUDA or on a CPU device, for MPI
// or local with WORLD_SIZE > 1 and no MPI launcher, and for local under a
// multi-rank MPI launch.
absl::StatusOr<CommunicatorBackend> ResolveCommunicatorBackend(CommunicatorBackend requested,
                                                               Device device, const LaunchEnv& env,
                                                               bool built_with_cuda,
                                                               int cuda_device_count);

absl::StatusOr<std::unique_ptr<Communicator>> CreateCommunicator(CommunicatorBackend backend,
                                                                 Device device);

}  // namespace zt

#endif  // ZEROTRAIN_ZERO_COMMUNICATOR_FACTORY_H_
