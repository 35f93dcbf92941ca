// The CUDA half of device.h (built with --config=cuda).
#include <cuda_runtime.h>

#include "absl/strings/str_cat.h"
#include "core/device.h"
#include "core/library_errors.h"

namespace zt {

bool BuiltWithCuda() { return true; }

int CudaDeviceCount() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // No driver or no GPU: not an error for callers.
    return 0;
  }
  return count;
}

namespace {

absl::Status CheckDevice(int index) {
  const int count = CudaDeviceCount();
  if (index < 0 || index >= count) {
    return absl::FailedPreconditionError(
        absl::StrCat("CUDA device ", index, " requested but ", count, " visible"));
  }
  return absl::OkStatus();
}

class CudaAllocator final : public Allocator {
 public:
  explicit CudaAllocator(int index) : Allocator(Device::Cuda(index)) {}

 protected:
  absl::StatusOr<void*> RawAllocate(size_t bytes) override {
    ZT_CUDA_RETURN_IF_ERROR(cudaSetDevice(device().index));
    void* ptr = nullptr;
    ZT_CUDA_RETURN_IF_ERROR(cudaMalloc(&ptr, bytes));
    return ptr;
  }
  void RawFree(void* ptr) override { cudaFree(ptr); }
};

class CudaStream final : public Stream {
 public:
  CudaStream(int index, cudaStream_t s) : index_(index), stream_(s) {}
  ~CudaStream() override { cudaStreamDestroy(stream_); }
  Device device() const override { return Device::Cuda(index_); }
  absl::Status Synchronize() override {
    ZT_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
    return absl::OkStatus();
  }
  void* native_handle() const override { return stream_; }

 private:
  int index_;
  cudaStream_t stream_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Allocator>> NewCudaAllocator(int index) {
  if (absl::Status s = CheckDevice(index); !s.ok()) return s;
  return std::unique_ptr<Allocator>(std::make_unique<CudaAllocator>(index));
}

namespace internal {

absl::StatusOr<std::unique_ptr<Stream>> NewCudaStream(int index) {
  if (absl::Status s = CheckDevice(index); !s.ok()) return s;
  ZT_CUDA_RETURN_IF_ERROR(cudaSetDevice(index));
  cudaStream_t stream = nullptr;
  ZT_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  return std::unique_ptr<Stream>(std::make_unique<CudaStream>(index, stream));
}

absl::Status CudaCopyBytes(void* dst, const void* src, size_t bytes, cudaStream_t stream) {
  ZT_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, stream));
  return absl::OkStatus();
}

absl::Status CudaZeroBytes(void* dst, size_t bytes, cudaStream_t stream) {
  ZT_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(dst, 0, bytes, stream));
  return absl::OkStatus();
}

absl::Status CudaSynchronize(cudaStream_t stream) {
  ZT_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
  return absl::OkStatus();
}

}  // namespace internal
}  // namespace zt
