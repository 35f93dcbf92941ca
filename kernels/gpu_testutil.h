#ifndef ZEROTRAIN_KERNELS_GPU_TESTUTIL_H_
#define ZEROTRAIN_KERNELS_GPU_TESTUTIL_H_

// Device-memory plumbing shared by the kernels' GPU tests: an allocator and
// stream on GPU 0 with copies that wait for the stream, and raw cudaMalloc
// buffers for tests that place data at chosen (misaligned) offsets.

#include <cuda_runtime.h>

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "glog/logging.h"
#include "gtest/gtest.h"
#include "core/device.h"
#include "kernels/op_context.h"

namespace zt::kernels::testing {

// The value, or a test failure and abort: a test cannot go on without it.
template <typename T>
T Must(absl::StatusOr<T> v) {
  if (!v.ok()) {
    ADD_FAILURE() << v.status();
    std::abort();
  }
  return std::move(*v);
}

// GPU 0's allocator and one stream. Downloads drain the stream first, so
// they see every kernel queued before them.
class GpuBuffers {
 public:
  GpuBuffers() {
    CHECK_GT(CudaDeviceCount(), 0) << "these tests need a GPU";
    alloc_ = Must(NewCudaAllocator(0));
    stream_ = Must(NewStream(Device::Cuda(0)));
    ctx_.device = Device::Cuda(0);
    ctx_.stream = static_cast<cudaStream_t>(stream_->native_handle());
  }

  OpContext& ctx() { return ctx_; }

  Buffer Alloc(size_t bytes) {
    return Must(Buffer::Allocate(*alloc_, bytes, MemoryCategory::kWorkspace));
  }

  Buffer Upload(const void* host, size_t bytes) {
    Buffer b = Alloc(bytes);
    Check(CopyBytes(b.data(), Device::Cuda(0), host, Device::Cpu(), bytes, stream_.get()));
    Sync();
    return b;
  }
  template <typename V>
  Buffer Upload(const std::vector<V>& v) {
    return Upload(v.data(), v.size() * sizeof(V));
  }

  // Device bytes [offset, offset + bytes) of `b`.
  std::vector<uint8_t> Download(const Buffer& b, size_t bytes, size_t offset = 0) {
    std::vector<uint8_t> out(bytes);
    Download(out.data(), b.as<uint8_t>() + offset, bytes);
    return out;
  }
  void Download(void* host, const void* dev, size_t bytes) {
    Sync();
    Check(CopyBytes(host, Device::Cpu(), dev, Device::Cuda(0), bytes, stream_.get()));
    Sync();
  }
  void Download(void* host, const Buffer& b, size_t bytes) { Download(host, b.data(), bytes); }

  void Sync() { Check(stream_->Synchronize()); }

 protected:
  OpContext ctx_;

 private:
  static void Check(const absl::Status& s) { CHECK(s.ok()) << s; }

  std::unique_ptr<Allocator> alloc_;
  std::unique_ptr<Stream> stream_;
};

struct CudaFree {
  void operator()(void* p) const { cudaFree(p); }
};
using DeviceBuffer = std::unique_ptr<void, CudaFree>;

// cudaMalloc'd memory (256-byte aligned, so an offset picks the alignment)
// and a raw CUDA stream.
class CudaBuffers {
 public:
  CudaBuffers() {
    CHECK_EQ(cudaStreamCreate(&stream_), cudaSuccess);
    ctx_.device = Device::Cuda(0);
    ctx_.stream = stream_;
  }
  ~CudaBuffers() { cudaStreamDestroy(stream_); }
  CudaBuffers(const CudaBuffers&) = delete;
  CudaBuffers& operator=(const CudaBuffers&) = delete;

  DeviceBuffer Alloc(size_t bytes) {
    void* p = nullptr;
    EXPECT_EQ(cudaMalloc(&p, bytes), cudaSuccess);
    return DeviceBuffer(p);
  }
  void Upload(void* dst, const std::vector<uint8_t>& src) {
    ASSERT_EQ(cudaMemcpyAsync(dst, src.data(), src.size(), cudaMemcpyHostToDevice, stream_),
              cudaSuccess);
    ASSERT_EQ(cudaStreamSynchronize(stream_), cudaSuccess);
  }
  std::vector<uint8_t> Download(const void* src, size_t bytes) {
    std::vector<uint8_t> out(bytes);
    EXPECT_EQ(cudaMemcpyAsync(out.data(), src, bytes, cudaMemcpyDeviceToHost, stream_),
              cudaSuccess);
    EXPECT_EQ(cudaStreamSynchronize(stream_), cudaSuccess);
    return out;
  }

 protected:
  cudaStream_t stream_ = nullptr;
  OpContext ctx_;
};

}  // namespace zt::kernels::testing

#endif  // ZEROTRAIN_KERNELS_GPU_TESTUTIL_H_
