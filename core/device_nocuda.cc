// The CUDA half of device.h in a build without --config=cuda.
#include "absl/status/status.h"
#include "core/device.h"

namespace zt {
namespace {
absl::Status NoCuda() {
  return absl::FailedPreconditionError(
      "this binary was built without CUDA; rebuild with --config=cuda or use device: CPU");
}
}  // namespace

bool BuiltWithCuda() { return false; }
int CudaDeviceCount() { return 0; }

absl::StatusOr<std::unique_ptr<Allocator>> NewCudaAllocator(int) { return NoCuda(); }

namespace internal {
absl::StatusOr<std::unique_ptr<Stream>> NewCudaStream(int) { return NoCuda(); }
absl::Status CudaCopyBytes(void*, const void*, size_t, cudaStream_t) { return NoCuda(); }
absl::Status CudaZeroBytes(void*, size_t, cudaStream_t) { return NoCuda(); }
absl::Status CudaSynchronize(cudaStream_t) { return NoCuda(); }
}  // namespace internal

}  // namespace zt
