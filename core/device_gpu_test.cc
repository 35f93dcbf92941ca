// Needs a GPU. Proves the cuda build links cudart, cuBLASLt and NCCL and that
// the allocator, streams and error translation work on a real device.
#include <cublasLt.h>
#include <cuda_runtime.h>
#include <nccl.h>

#include <vector>

#include "gtest/gtest.h"
#include "core/device.h"
#include "core/library_errors.h"

namespace zt {
namespace {

TEST(DeviceGpuTest, AllocateCopyRoundTripAndCount) {
  ASSERT_GT(CudaDeviceCount(), 0);
  auto alloc = NewCudaAllocator(0);
  ASSERT_TRUE(alloc.ok()) << alloc.status();
  auto stream = NewStream(Device::Cuda(0));
  ASSERT_TRUE(stream.ok()) << stream.status();
  std::vector<float> host(1000), back(1000, -1.0f);
  for (int i = 0; i < 1000; ++i) host[i] = i * 0.5f;
  auto dev = Buffer::Allocate(**alloc, 4000, MemoryCategory::kParameters);
  ASSERT_TRUE(dev.ok()) << dev.status();
  EXPECT_EQ((*alloc)->Stats().Live(MemoryCategory::kParameters), 4000);
  ASSERT_TRUE(CopyBytes(dev->data(), Device::Cuda(0), host.data(), Device::Cpu(), 4000,
                        (*stream)->cuda_stream()).ok());
  ASSERT_TRUE(CopyBytes(back.data(), Device::Cpu(), dev->data(), Device::Cuda(0), 4000,
                        (*stream)->cuda_stream()).ok());
  ASSERT_TRUE((*stream)->Synchronize().ok());
  EXPECT_EQ(back, host);
}

absl::Status HugeMalloc() {
  void* p = nullptr;
  ZT_CUDA_RETURN_IF_ERROR(cudaMalloc(&p, size_t{1} << 50));
  return absl::OkStatus();
}

TEST(DeviceGpuTest, CudaErrorBecomesStatusAndIsCleared) {
  const absl::Status s = HugeMalloc();
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(s.message().find("cudaMalloc"), std::string::npos) << s;
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
}

TEST(DeviceGpuTest, CublasLtAndNcclInitialise) {
  cublasLtHandle_t lt = nullptr;
  ASSERT_EQ(cublasLtCreate(&lt), CUBLAS_STATUS_SUCCESS);
  cublasLtDestroy(lt);
  ncclComm_t comm = nullptr;
  int dev = 0;
  ASSERT_EQ(ncclCommInitAll(&comm, 1, &dev), ncclSuccess);
  ncclCommDestroy(comm);
}

}  // namespace
}  // namespace zt
