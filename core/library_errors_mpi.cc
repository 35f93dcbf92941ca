#include <mpi.h>

#include "core/library_errors.h"
#include "core/library_errors_internal.h"

namespace zt {

absl::Status MpiErrorToStatus(int code, const char* expr, const char* file, int line) {
  if (code == MPI_SUCCESS) return absl::OkStatus();
  char message[MPI_MAX_ERROR_STRING] = "unknown MPI error";
  int length = 0;
  // OpenMPI aborts the process on MPI_Error_string outside MPI_Init/Finalize.
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (initialized && !finalized) MPI_Error_string(code, message, &length);
  // Every MPI failure we can see is a peer or transport problem.
  return internal::LibraryError(absl::StatusCode::kUnavailable, "MPI", code, message, expr, file,
                                line);
}

}  // namespace zt
