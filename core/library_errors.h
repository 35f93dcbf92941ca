#ifndef ZEROTRAIN_CORE_LIBRARY_ERRORS_H_
#define ZEROTRAIN_CORE_LIBRARY_ERRORS_H_

// Turns error codes of CUDA, cuBLAS(Lt), NCCL and MPI into absl::Status with
// the call, file, line and the library's own message. The header includes no
// library header: codes travel as int, and each library's translation lives
// in its own target (:library_errors_cuda, :library_errors_mpi) so CPU-only
// code never links CUDA.

#include "absl/status/status.h"

namespace zt {

// Each returns OkStatus() for the library's success code. The CUDA one also
// clears CUDA's sticky last-error state so the next check starts clean.
absl::Status CudaErrorToStatus(int code, const char* expr, const char* file, int line);
absl::Status CublasErrorToStatus(int code, const char* expr, const char* file, int line);
absl::Status NcclErrorToStatus(int code, const char* expr, const char* file, int line);
absl::Status MpiErrorToStatus(int code, const char* expr, const char* file, int line);

// Checks cudaGetLastError() after a kernel launch; `kernel` names it.
absl::Status CudaLaunchStatus(const char* kernel, const char* file, int line);

}  // namespace zt

#define ZT_LIBRARY_RETURN_IF_ERROR_(fn, expr)                                  \
  do {                                                                         \
    ::absl::Status zt_lib_status_ = fn(static_cast<int>(expr), #expr, __FILE__, __LINE__); \
    if (!zt_lib_status_.ok()) return zt_lib_status_;                           \
  } while (false)

#define ZT_CUDA_RETURN_IF_ERROR(expr) ZT_LIBRARY_RETURN_IF_ERROR_(::zt::CudaErrorToStatus, expr)
#define ZT_CUBLAS_RETURN_IF_ERROR(expr) ZT_LIBRARY_RETURN_IF_ERROR_(::zt::CublasErrorToStatus, expr)
#define ZT_NCCL_RETURN_IF_ERROR(expr) ZT_LIBRARY_RETURN_IF_ERROR_(::zt::NcclErrorToStatus, expr)
#define ZT_MPI_RETURN_IF_ERROR(expr) ZT_LIBRARY_RETURN_IF_ERROR_(::zt::MpiErrorToStatus, expr)

#define ZT_CUDA_RETURN_IF_LAUNCH_ERROR(kernel)                                  \
  do {                                                                         \
    ::absl::Status zt_lib_status_ = ::zt::CudaLaunchStatus(kernel, __FILE__, __LINE__); \
    if (!zt_lib_status_.ok()) return zt_lib_status_;                           \
  } while (false)

#endif  // ZEROTRAIN_CORE_LIBRARY_ERRORS_H_
