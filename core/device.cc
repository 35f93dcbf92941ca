#include "core/device.h"

#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "glog/logging.h"
#include "core/status_macros.h"

namespace zt {

std::string Device::ToString() const {
  return is_cpu() ? std::string("cpu") : absl::StrCat("cuda:", index);
}

absl::string_view MemoryCategoryName(MemoryCategory c) {
  switch (c) {
    case MemoryCategory::kParameters:
      return "parameters";
    case MemoryCategory::kGradients:
      return "gradients";
    case MemoryCategory::kMasterWeights:
      return "master_weights";
    case MemoryCategory::kOptimizerStates:
      return "optimizer_states";
    case MemoryCategory::kActivations:
      return "activations";
    case MemoryCategory::kCommBuffers:
      return "comm_buffers";
    case MemoryCategory::kWorkspace:
      return "workspace";
    case MemoryCategory::kCount:
      break;
  }
  return "unknown";
}

std::string MemoryStats::ToString() const {
  std::string out;
  for (int i = 0; i < kNumCategories; ++i) {
    absl::StrAppendFormat(&out, "%s=%d/%d ", MemoryCategoryName(static_cast<MemoryCategory>(i)),
                          live[i], peak[i]);
  }
  absl::StrAppendFormat(&out, "total=%d/%d (live/peak bytes)", total_live, total_peak);
  return out;
}

absl::StatusOr<void*> Allocator::Allocate(size_t bytes, MemoryCategory category) {
  CHECK(category != MemoryCategory::kCount);
  // Zero-byte requests still get a distinct pointer so ownership stays simple.
  ZT_ASSIGN_OR_RETURN(void* ptr, RawAllocate(bytes == 0 ? 1 : bytes));
  absl::MutexLock lock(&mu_);
  records_[ptr] = Record{bytes, category};
  const int c = static_cast<int>(category);
  stats_.live[c] += static_cast<int64_t>(bytes);
  stats_.peak[c] = std::max(stats_.peak[c], stats_.live[c]);
  stats_.total_live += static_cast<int64_t>(bytes);
  stats_.total_peak = std::max(stats_.total_peak, stats_.total_live);
  return ptr;
}

void Allocator::Free(void* ptr) {
  if (ptr == nullptr) return;
  {
    absl::MutexLock lock(&mu_);
    auto it = records_.find(ptr);
    CHECK(it != records_.end()) << "Free of a pointer not allocated here on "
                                << device_.ToString();
    const int c = static_cast<int>(it->second.category);
    stats_.live[c] -= static_cast<int64_t>(it->second.bytes);
    stats_.total_live -= static_cast<int64_t>(it->second.bytes);
    records_.erase(it);
  }
  RawFree(ptr);
}

MemoryStats Allocator::Stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

void Allocator::ResetPeaks() {
  absl::MutexLock lock(&mu_);
  stats_.peak = stats_.live;
  stats_.total_peak = stats_.total_live;
}

namespace {

class CpuAllocator final : public Allocator {
 public:
  CpuAllocator() : Allocator(Device::Cpu()) {}

 protected:
  absl::StatusOr<void*> RawAllocate(size_t bytes) override {
    const size_t rounded = (bytes + 63) / 64 * 64;
    void* ptr = std::aligned_alloc(64, rounded);
    if (ptr == nullptr) {
      return absl::ResourceExhaustedError(
          absl::StrCat("host allocation of ", bytes, " bytes failed"));
    }
    return ptr;
  }
  void RawFree(void* ptr) override { std::free(ptr); }
};

class CpuStream final : public Stream {
 public:
  Device device() const override { return Device::Cpu(); }
  absl::Status Synchronize() override { return absl::OkStatus(); }
  void* native_handle() const override { return nullptr; }
};

}  // namespace

std::unique_ptr<Allocator> NewCpuAllocator() { return std::make_unique<CpuAllocator>(); }

absl::StatusOr<std::unique_ptr<Allocator>> NewAllocator(Device device) {
  if (device.is_cpu()) return NewCpuAllocator();
  return NewCudaAllocator(device.index);
}

absl::StatusOr<Buffer> Buffer::Allocate(Allocator& allocator, size_t bytes,
                                        MemoryCategory category) {
  ZT_ASSIGN_OR_RETURN(void* ptr, allocator.Allocate(bytes, category));
  Buffer b;
  b.allocator_ = &allocator;
  b.data_ = ptr;
  b.bytes_ = bytes;
  return b;
}

Buffer& Buffer::operator=(Buffer&& other) noexcept {
  if (this != &other) {
    Reset();
    allocator_ = std::exchange(other.allocator_, nullptr);
    data_ = std::exchange(other.data_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
  }
  return *this;
}

void Buffer::Reset() {
  if (allocator_ != nullptr) allocator_->Free(data_);
  allocator_ = nullptr;
  data_ = nullptr;
  bytes_ = 0;
}

namespace internal {
absl::StatusOr<std::unique_ptr<Stream>> NewCudaStream(int index);
absl::Status CudaCopyBytes(void* dst, const void* src, size_t bytes, cudaStream_t stream);
absl::Status CudaZeroBytes(void* dst, size_t bytes, cudaStream_t stream);
absl::Status CudaSynchronize(cudaStream_t stream);
}  // namespace internal

absl::StatusOr<std::unique_ptr<Stream>> NewStream(Device device) {
  if (device.is_cpu()) return std::unique_ptr<Stream>(std::make_unique<CpuStream>());
  return internal::NewCudaStream(device.index);
}

absl::Status SynchronizeStream(Device device, cudaStream_t stream) {
  if (device.is_cpu()) return absl::OkStatus();
  return internal::CudaSynchronize(stream);
}

absl::Status CopyBytes(void* dst, Device dst_device, const void* src, Device src_device,
                       size_t bytes, cudaStream_t stream) {
  if (bytes == 0) return absl::OkStatus();
  if (dst_device.is_cpu() && src_device.is_cpu()) {
    std::memcpy(dst, src, bytes);
    return absl::OkStatus();
  }
  return internal::CudaCopyBytes(dst, src, bytes, stream);
}

absl::Status ZeroBytes(void* dst, Device device, size_t bytes, cudaStream_t stream) {
  if (bytes == 0) return absl::OkStatus();
  if (device.is_cpu()) {
    std::memset(dst, 0, bytes);
    return absl::OkStatus();
  }
  return internal::CudaZeroBytes(dst, bytes, stream);
}

}  // namespace zt
