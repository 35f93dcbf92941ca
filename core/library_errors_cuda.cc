#include <cublasLt.h>
#include <cuda_runtime.h>
#include <nccl.h>

#include "core/library_errors.h"
#include "core/library_errors_internal.h"

namespace zt {

absl::Status CudaErrorToStatus(int code, const char* expr, const char* file, int line) {
  if (code == cudaSuccess) return absl::OkStatus();
  // Clear the sticky error so later, unrelated checks do not report it again.
  cudaGetLastError();
  const auto err = static_cast<cudaError_t>(code);
  const absl::StatusCode status_code = err == cudaErrorMemoryAllocation
                                           ? absl::StatusCode::kResourceExhausted
                                           : absl::StatusCode::kInternal;
  return internal::LibraryError(status_code, "CUDA", code, cudaGetErrorString(err), expr, file,
                                line);
}

absl::Status CudaLaunchStatus(const char* kernel, const char* file, int line) {
  return CudaErrorToStatus(static_cast<int>(cudaGetLastError()), kernel, file, line);
}

absl::Status CublasErrorToStatus(int code, const char* expr, const char* file, int line) {
  if (code == CUBLAS_STATUS_SUCCESS) return absl::OkStatus();
  const auto err = static_cast<cublasStatus_t>(code);
  const absl::StatusCode status_code =
      err == CUBLAS_STATUS_NOT_SUPPORTED || err == CUBLAS_STATUS_INVALID_VALUE
          ? absl::StatusCode::kInvalidArgument
          : absl::StatusCode::kInternal;
  return internal::LibraryError(status_code, "cuBLAS", code, cublasGetStatusString(err), expr,
                                file, line);
}

absl::Status NcclErrorToStatus(int code, const char* expr, const char* file, int line) {
  if (code == ncclSuccess) return absl::OkStatus();
  const auto err = static_cast<ncclResult_t>(code);
  const absl::StatusCode status_code = err == ncclInvalidArgument || err == ncclInvalidUsage
                                           ? absl::StatusCode::kInvalidArgument
                                           : absl::StatusCode::kUnavailable;
  return internal::LibraryError(status_code, "NCCL", code, ncclGetErrorString(err), expr, file,
                                line);
}

}  // namespace zt
