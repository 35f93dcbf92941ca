#ifndef ZEROTRAIN_CORE_DEVICE_H_
#define ZEROTRAIN_CORE_DEVICE_H_

// Devices, streams and a counting allocator. Every byte the trainer holds is
// allocated under a category, so ZeRO's memory formulas (parameters,
// gradients, master weights, optimizer moments) can be checked against what
// the program actually allocated.

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "core/cuda_stream_fwd.h"

namespace zt {

enum class DeviceType : int { kCpu = 0, kCuda = 1 };

struct Device {
  DeviceType type = DeviceType::kCpu;
  int index = 0;

  static Device Cpu() { return Device{DeviceType::kCpu, 0}; }
  static Device Cuda(int index) { return Device{DeviceType::kCuda, index}; }
  bool is_cpu() const { return type == DeviceType::kCpu; }
  bool is_cuda() const { return type == DeviceType::kCuda; }
  std::string ToString() const;
  friend bool operator==(const Device& a, const Device& b) {
    return a.type == b.type && a.index == b.index;
  }
};

// True when this binary was built with --config=cuda.
bool BuiltWithCuda();
// Number of visible CUDA devices; 0 without CUDA or without a GPU.
int CudaDeviceCount();

enum class MemoryCategory : int {
  kParameters = 0,     // 16-bit (or fp32) working parameters.
  kGradients,          // Gradients, full or sharded.
  kMasterWeights,      // fp32 master copy for mixed precision.
  kOptimizerStates,    // Adam first and second moments.
  kActivations,        // Forward activations kept for backward.
  kCommBuffers,        // Buckets and staging for collectives.
  kWorkspace,          // Scratch (cuBLASLt workspace, reductions, ...).
  kCount,
};

absl::string_view MemoryCategoryName(MemoryCategory c);

struct MemoryStats {
  static constexpr int kNumCategories = static_cast<int>(MemoryCategory::kCount);
  std::array<int64_t, kNumCategories> live{};
  std::array<int64_t, kNumCategories> peak{};
  int64_t total_live = 0;
  int64_t total_peak = 0;

  int64_t Live(MemoryCategory c) const { return live[static_cast<int>(c)]; }
  int64_t Peak(MemoryCategory c) const { return peak[static_cast<int>(c)]; }
  std::string ToString() const;
};

// Thread-safe. Allocate() never returns nullptr on success; a zero-byte
// request returns a unique non-null pointer of zero accounted size.
class Allocator {
 public:
  explicit Allocator(Device device) : device_(device) {}
  virtual ~Allocator() = default;
  Allocator(const Allocator&) = delete;
  Allocator& operator=(const Allocator&) = delete;

  absl::StatusOr<void*> Allocate(size_t bytes, MemoryCategory category);
  // Frees a pointer from Allocate(); nullptr is ignored. CHECK-fails on a
  // pointer this allocator does not own (a programmer error).
  void Free(void* ptr);

  MemoryStats Stats() const;
  // Sets every peak to the current live value (e.g. after setup, to measure
  // a training step's peak).
  void ResetPeaks();
  Device device() const { return device_; }

 protected:
  virtual absl::StatusOr<void*> RawAllocate(size_t bytes) = 0;
  virtual void RawFree(void* ptr) = 0;

 private:
  struct Record {
    size_t bytes;
    MemoryCategory category;
  };
  const Device device_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<void*, Record> records_ ABSL_GUARDED_BY(mu_);
  MemoryStats stats_ ABSL_GUARDED_BY(mu_);
};

// 64-byte aligned host memory (cache lines, AVX-512 loads).
std::unique_ptr<Allocator> NewCpuAllocator();
// Device memory on GPU `index`; FailedPrecondition when built without CUDA
// or when the device does not exist.
absl::StatusOr<std::unique_ptr<Allocator>> NewCudaAllocator(int index);
absl::StatusOr<std::unique_ptr<Allocator>> NewAllocator(Device device);

// Owning, move-only handle to one allocation.
class Buffer {
 public:
  Buffer() = default;
  static absl::StatusOr<Buffer> Allocate(Allocator& allocator, size_t bytes,
                                         MemoryCategory category);
  ~Buffer() { Reset(); }
  Buffer(Buffer&& other) noexcept { *this = std::move(other); }
  Buffer& operator=(Buffer&& other) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  void Reset();
  // Forgets the allocation without freeing it, for memory that a transport
  // may still write to when the process is going down after an error.
  void Leak() {
    allocator_ = nullptr;
    data_ = nullptr;
    bytes_ = 0;
  }
  void* data() const { return data_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(data_);
  }
  size_t bytes() const { return bytes_; }
  Device device() const { return allocator_ ? allocator_->device() : Device::Cpu(); }
  bool empty() const { return data_ == nullptr; }

 private:
  Allocator* allocator_ = nullptr;
  void* data_ = nullptr;
  size_t bytes_ = 0;
};

// An ordered queue of work on a device. On the CPU, work runs when it is
// issued, so Synchronize() has nothing to wait for.
class Stream {
 public:
  virtual ~Stream() = default;
  virtual Device device() const = 0;
  virtual absl::Status Synchronize() = 0;
  // cudaStream_t for CUDA streams, nullptr on the CPU.
  virtual void* native_handle() const = 0;
  cudaStream_t cuda_stream() const { return static_cast<cudaStream_t>(native_handle()); }
};

absl::StatusOr<std::unique_ptr<Stream>> NewStream(Device device);

// Copies between any two devices, ordered on a raw CUDA stream (what
// kernels::OpContext carries; Stream::cuda_stream() for a Stream; nullptr is
// the legacy default stream, and host-to-host copies ignore it). Host memory
// touched by an asynchronous device copy must stay alive until the stream is
// synchronized. SynchronizeStream waits for `stream` (a no-op on the CPU).
absl::Status CopyBytes(void* dst, Device dst_device, const void* src, Device src_device,
                       size_t bytes, cudaStream_t stream);
absl::Status ZeroBytes(void* dst, Device device, size_t bytes, cudaStream_t stream);
absl::Status SynchronizeStream(Device device, cudaStream_t stream);

// Conveniences for a Stream (and for a literal nullptr, which would otherwise
// be ambiguous between the two).
inline absl::Status CopyBytes(void* dst, Device dst_device, const void* src, Device src_device,
                              size_t bytes, Stream* stream) {
  return CopyBytes(dst, dst_device, src, src_device, bytes,
                   stream ? stream->cuda_stream() : cudaStream_t{nullptr});
}
inline absl::Status CopyBytes(void* dst, Device dst_device, const void* src, Device src_device,
                              size_t bytes, std::nullptr_t) {
  return CopyBytes(dst, dst_device, src, src_device, bytes, cudaStream_t{nullptr});
}
inline absl::Status ZeroBytes(void* dst, Device device, size_t bytes, Stream* stream) {
  return ZeroBytes(dst, device, bytes, stream ? stream->cuda_stream() : cudaStream_t{nullptr});
}
inline absl::Status ZeroBytes(void* dst, Device device, size_t bytes, std::nullptr_t) {
  return ZeroBytes(dst, device, bytes, cudaStream_t{nullptr});
}
inline absl::Status SynchronizeStream(Device device, Stream* stream) {
  return SynchronizeStream(device, stream ? stream->cuda_stream() : cudaStream_t{nullptr});
}
inline absl::Status SynchronizeStream(Device device, std::nullptr_t) {
  return SynchronizeStream(device, cudaStream_t{nullptr});
}

}  // namespace zt

#endif  // ZEROTRAIN_CORE_DEVICE_H_
