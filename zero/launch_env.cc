#include "zero/launch_env.h"

#include <cstdlib>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "core/status_macros.h"

namespace zt {
namespace {

using GetEnv = std::function<const char*(const char*)>;

// Reads an integer variable; `fallback` when unset.
absl::StatusOr<int> IntVar(const GetEnv& env, const char* name, int fallback, int min, int max) {
  const char* v = env(name);
  if (v == nullptr) return fallback;
  int value = 0;
  if (!absl::SimpleAtoi(v, &value) || value < min || value > max) {
    return absl::InvalidArgumentError(absl::StrCat(
        "environment variable ", name, "=\"", v, "\" is not an integer in [", min, ", ", max, "]"));
  }
  return value;
}

absl::Status CheckRank(const LaunchEnv& e, const char* rank_var, const char* size_var) {
  if (e.rank >= e.world_size) {
    return absl::InvalidArgumentError(absl::StrCat("environment variable ", rank_var, "=", e.rank,
                                                   " is not below ", size_var, "=", e.world_size));
  }
  if (e.local_rank >= e.local_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("local rank ", e.local_rank, " is not below the local size ", e.local_size));
  }
  return absl::OkStatus();
}

constexpr int kMaxRanks = 1 << 24;

}  // namespace

absl::StatusOr<LaunchEnv> DetectLaunchEnv(const GetEnv& getenv_fn) {
  const GetEnv env = getenv_fn ? getenv_fn : GetEnv([](const char* n) { return std::getenv(n); });
  LaunchEnv e;
  if (env("OMPI_COMM_WORLD_SIZE") != nullptr) {
    e.launcher = Launcher::kMpi;
    ZT_ASSIGN_OR_RETURN(e.world_size, IntVar(env, "OMPI_COMM_WORLD_SIZE", 1, 1, kMaxRanks));
    ZT_ASSIGN_OR_RETURN(e.rank, IntVar(env, "OMPI_COMM_WORLD_RANK", 0, 0, kMaxRanks));
    ZT_ASSIGN_OR_RETURN(e.local_size, IntVar(env, "OMPI_COMM_WORLD_LOCAL_SIZE", 1, 1, kMaxRanks));
    ZT_ASSIGN_OR_RETURN(e.local_rank, IntVar(env, "OMPI_COMM_WORLD_LOCAL_RANK", 0, 0, kMaxRanks));
    ZT_RETURN_IF_ERROR(CheckRank(e, "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"));
    return e;
  }
  if (env("PMI_SIZE") != nullptr) {
    e.launcher = Launcher::kMpi;
    ZT_ASSIGN_OR_RETURN(e.world_size, IntVar(env, "PMI_SIZE", 1, 1, kMaxRanks));
    ZT_ASSIGN_OR_RETURN(e.rank, IntVar(env, "PMI_RANK", 0, 0, kMaxRanks));
    ZT_ASSIGN_OR_RETURN(e.local_size, IntVar(env, "MPI_LOCALNRANKS", 1, 1, kMaxRanks));
    ZT_ASSIGN_OR_RETURN(e.local_rank, IntVar(env, "MPI_LOCALRANKID", 0, 0, kMaxRanks));
    ZT_RETURN_IF_ERROR(CheckRank(e, "PMI_RANK", "PMI_SIZE"));
    return e;
  }
  if (env("WORLD_SIZE") != nullptr) {
    e.launcher = Launcher::kEnv;
    ZT_ASSIGN_OR_RETURN(e.world_size, IntVar(env, "WORLD_SIZE", 1, 1, kMaxRanks));
    ZT_ASSIGN_OR_RETURN(e.rank, IntVar(env, "RANK", 0, 0, kMaxRanks));
    ZT_ASSIGN_OR_RETURN(e.local_size, IntVar(env, "LOCAL_WORLD_SIZE", 1, 1, kMaxRanks));
    ZT_ASSIGN_OR_RETURN(e.local_rank, IntVar(env, "LOCAL_RANK", 0, 0, kMaxRanks));
    ZT_RETURN_IF_ERROR(CheckRank(e, "RANK", "WORLD_SIZE"));
    if (e.world_size > 1) {
      const char* addr = env("MASTER_ADDR");
      if (addr == nullptr || *addr == '\0') {
        return absl::InvalidArgumentError(
            absl::StrCat("WORLD_SIZE=", e.world_size,
                         " needs environment variable MASTER_ADDR (rank 0's host)"));
      }
      e.master_addr = addr;
      if (env("MASTER_PORT") == nullptr) {
        return absl::InvalidArgumentError(
            absl::StrCat("WORLD_SIZE=", e.world_size, " needs environment variable MASTER_PORT"));
      }
      ZT_ASSIGN_OR_RETURN(e.master_port, IntVar(env, "MASTER_PORT", 0, 1, 65535));
    }
    return e;
  }
  return e;
}

bool LaunchedUnderMpi() {
  return std::getenv("OMPI_COMM_WORLD_SIZE") != nullptr || std::getenv("PMI_SIZE") != nullptr;
}

}  // namespace zt
