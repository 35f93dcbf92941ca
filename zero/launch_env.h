#ifndef ZEROTRAIN_ZERO_LAUNCH_ENV_H_
#define ZEROTRAIN_ZERO_LAUNCH_ENV_H_

// How this process was launched, read from the environment:
// - under MPI (mpirun/mpiexec of Open MPI: OMPI_COMM_WORLD_SIZE, RANK,
//   LOCAL_RANK, LOCAL_SIZE; or a PMI launcher such as MPICH's or Slurm's
//   srun --mpi=pmi2: PMI_SIZE, PMI_RANK);
// - by a torchrun/Slurm-style script: WORLD_SIZE, RANK, MASTER_ADDR,
//   MASTER_PORT (and LOCAL_RANK, LOCAL_WORLD_SIZE when set);
// - not at all: one rank.
// MPI wins when both are present (mpirun may export WORLD_SIZE too).

#include <functional>
#include <string>

#include "absl/status/statusor.h"

namespace zt {

enum class Launcher : int {
  kNone = 0,  // A plain process: rank 0 of 1.
  kMpi,       // Started by an MPI launcher.
  kEnv,       // WORLD_SIZE/RANK/MASTER_ADDR/MASTER_PORT.
};

struct LaunchEnv {
  Launcher launcher = Launcher::kNone;
  int rank = 0;
  int world_size = 1;
  // Ranks on this machine and this one's index among them (0 and 1 when the
  // launcher does not say).
  int local_rank = 0;
  int local_size = 1;
  // kEnv only: where rank 0 listens for the others.
  std::string master_addr;
  int master_port = 0;
};

// `getenv` is injectable for tests. InvalidArgument names the variable when
// one is malformed or out of range (e.g. RANK >= WORLD_SIZE, or WORLD_SIZE
// > 1 without MASTER_ADDR/MASTER_PORT).
absl::StatusOr<LaunchEnv> DetectLaunchEnv(
    const std::function<const char*(const char*)>& getenv_fn = nullptr);

// True when an MPI launcher started this process (cheap, no MPI calls).
bool LaunchedUnderMpi();

}  // namespace zt

#endif  // ZEROTRAIN_ZERO_LAUNCH_ENV_H_
