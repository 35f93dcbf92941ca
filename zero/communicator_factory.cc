#include "zero/communicator_factory.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "zero/local_communicator.h"
#include "zero/mpi_communicator.h"
#if ZT_WITH_CUDA
#include "zero/nccl_communicator.h"
#endif

namespace zt {

absl::string_view CommunicatorBackendName(CommunicatorBackend b) {
  switch (b) {
    case CommunicatorBackend::kAuto:
      return "auto";
    case CommunicatorBackend::kLocal:
      return "local";
    case CommunicatorBackend::kMpi:
      return "mpi";
    case CommunicatorBackend::kNccl:
      return "nccl";
  }
  return "unknown";
}

absl::StatusOr<CommunicatorBackend> ParseCommunicatorBackend(absl::string_view name) {
  const std::string n = absl::AsciiStrToLower(name);
  for (CommunicatorBackend b : {CommunicatorBackend::kAuto, CommunicatorBackend::kLocal,
                                CommunicatorBackend::kMpi, CommunicatorBackend::kNccl}) {
    if (n == CommunicatorBackendName(b)) return b;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown communicator backend \"", name, "\" (auto, local, mpi or nccl)"));
}

absl::StatusOr<CommunicatorBackend> ResolveCommunicatorBackend(CommunicatorBackend requested,
                                                               Device device, const LaunchEnv& env,
                                                               bool built_with_cuda,
                                                               int cuda_device_count) {
  const bool env_multi = env.launcher == Launcher::kEnv && env.world_size > 1;
  const bool mpi_multi = env.launcher == Launcher::kMpi && env.world_size > 1;
  switch (requested) {
    case CommunicatorBackend::kLocal:
      if (env_multi || mpi_multi) {
        return absl::FailedPreconditionError(
            absl::StrCat("the local communicator has one rank but this process was launched as "
                         "one of ",
                         env.world_size));
      }
      return requested;
    case CommunicatorBackend::kMpi:
      if (env_multi) {
        return absl::FailedPreconditionError(absl::StrCat(
            "the MPI communicator needs an MPI launcher (mpirun, srun --mpi), but WORLD_SIZE=",
            env.world_size, " came from another launcher"));
      }
      return requested;
    case CommunicatorBackend::kNccl:
      if (!built_with_cuda) {
        return absl::FailedPreconditionError(
            "the NCCL communicator needs a build with --config=cuda");
      }
      if (!device.is_cuda()) {
        return absl::FailedPreconditionError(
            absl::StrCat("the NCCL communicator needs a CUDA device, not ", device.ToString()));
      }
      return requested;
    case CommunicatorBackend::kAuto:
      break;
  }
  const bool nccl_possible = built_with_cuda && device.is_cuda();
  if (env.launcher == Launcher::kMpi) {
    // NCCL refuses two ranks on one GPU.
    if (nccl_possible && env.local_size <= cuda_device_count) return CommunicatorBackend::kNccl;
    return CommunicatorBackend::kMpi;
  }
  if (env_multi) {
    if (nccl_possible) return CommunicatorBackend::kNccl;
    return absl::FailedPreconditionError(absl::StrCat(
        "WORLD_SIZE=", env.world_size, " without an MPI launcher needs NCCL on a CUDA device (",
        device.ToString(), built_with_cuda ? "" : ", a build without CUDA",
        "); start CPU ranks with mpirun"));
  }
  return CommunicatorBackend::kLocal;
}

absl::StatusOr<std::unique_ptr<Communicator>> CreateCommunicator(CommunicatorBackend backend,
                                                                 Device device) {
  ZT_ASSIGN_OR_RETURN(LaunchEnv env, DetectLaunchEnv());
  ZT_ASSIGN_OR_RETURN(CommunicatorBackend resolved,
                      ResolveCommunicatorBackend(backend, device, env, BuiltWithCuda(),
                                                 device.is_cuda() ? CudaDeviceCount() : 0));
  switch (resolved) {
    case CommunicatorBackend::kLocal:
      return CreateLocalCommunicator(device);
    case CommunicatorBackend::kMpi: {
      MpiCommunicatorOptions o;
      o.device = device;
      return CreateMpiCommunicator(o);
    }
    case CommunicatorBackend::kNccl: {
#if ZT_WITH_CUDA
      NcclCommunicatorOptions o;
      o.device_index = device.index;
      return CreateNcclCommunicator(o);
#else
      break;
#endif
    }
    case CommunicatorBackend::kAuto:
      break;
  }
  return absl::FailedPreconditionError(
      absl::StrCat("communicator backend ", CommunicatorBackendName(resolved), " is not built in"));
}

}  // namespace zt
