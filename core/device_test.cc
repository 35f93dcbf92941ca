#include "core/device.h"

#include <cstring>

#include "gtest/gtest.h"

namespace zt {
namespace {

TEST(AllocatorTest, CountsLiveAndPeakPerCategory) {
  auto alloc = NewCpuAllocator();
  {
    auto params = Buffer::Allocate(*alloc, 1000, MemoryCategory::kParameters);
    ASSERT_TRUE(params.ok());
    auto grads = Buffer::Allocate(*alloc, 3000, MemoryCategory::kGradients);
    ASSERT_TRUE(grads.ok());
    MemoryStats s = alloc->Stats();
    EXPECT_EQ(s.Live(MemoryCategory::kParameters), 1000);
    EXPECT_EQ(s.Live(MemoryCategory::kGradients), 3000);
    EXPECT_EQ(s.total_live, 4000);
    grads->Reset();
    s = alloc->Stats();
    EXPECT_EQ(s.Live(MemoryCategory::kGradients), 0);
    EXPECT_EQ(s.Peak(MemoryCategory::kGradients), 3000);
    EXPECT_EQ(s.total_peak, 4000);
    alloc->ResetPeaks();
    EXPECT_EQ(alloc->Stats().total_peak, 1000);
  }
  EXPECT_EQ(alloc->Stats().total_live, 0);
}

TEST(AllocatorTest, MemoryIsAlignedAndUsable) {
  auto alloc = NewCpuAllocator();
  auto b = Buffer::Allocate(*alloc, 100, MemoryCategory::kActivations);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(reinterpret_cast<uintptr_t>(b->data()) % 64, 0u);
  std::memset(b->data(), 7, 100);
  auto zero = Buffer::Allocate(*alloc, 0, MemoryCategory::kWorkspace);
  ASSERT_TRUE(zero.ok());
  EXPECT_NE(zero->data(), nullptr);
  EXPECT_NE(zero->data(), b->data());
}

TEST(AllocatorTest, BufferMoveTransfersOwnership) {
  auto alloc = NewCpuAllocator();
  Buffer a = *Buffer::Allocate(*alloc, 64, MemoryCategory::kMasterWeights);
  void* p = a.data();
  Buffer b = std::move(a);
  EXPECT_TRUE(a.empty());
  EXPECT_EQ(b.data(), p);
  EXPECT_EQ(alloc->Stats().Live(MemoryCategory::kMasterWeights), 64);
}

TEST(DeviceTest, CpuCopyAndZero) {
  float src[4] = {1, 2, 3, 4}, dst[4] = {};
  auto stream = NewStream(Device::Cpu());
  ASSERT_TRUE(stream.ok());
  ASSERT_TRUE(CopyBytes(dst, Device::Cpu(), src, Device::Cpu(), sizeof(src), (*stream)->cuda_stream()).ok());
  EXPECT_EQ(dst[3], 4.0f);
  ASSERT_TRUE(ZeroBytes(dst, Device::Cpu(), sizeof(dst), nullptr).ok());
  EXPECT_EQ(dst[0], 0.0f);
  EXPECT_TRUE((*stream)->Synchronize().ok());
  EXPECT_EQ(Device::Cuda(1).ToString(), "cuda:1");
}

TEST(DeviceTest, CudaRequestMatchesWhatThisMachineHas) {
  auto alloc = NewCudaAllocator(0);
  auto stream = NewStream(Device::Cuda(0));
  if (CudaDeviceCount() > 0) {
    EXPECT_TRUE(alloc.ok()) << alloc.status();
    EXPECT_TRUE(stream.ok()) << stream.status();
  } else {
    ASSERT_FALSE(alloc.ok());
    EXPECT_EQ(alloc.status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_EQ(stream.status().code(), absl::StatusCode::kFailedPrecondition);
  }
  // Asking past the last device is an error everywhere.
  auto beyond = NewCudaAllocator(CudaDeviceCount() + 7);
  EXPECT_EQ(beyond.status().code(), absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace zt
