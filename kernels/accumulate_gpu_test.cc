// Needs a GPU: CUDA Accumulate against the CPU one, bit for bit (both add in
// fp32 and round once), every dtype, lengths that do and do not fill whole
// 16-byte packs, aligned and misaligned pointers.
#include <cuda_runtime.h>

#include <cstdint>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kernels/accumulate.h"
#include "core/dtype.h"
#include "kernels/gpu_testutil.h"
#include "kernels/op_context.h"
#include "kernels/testutil.h"

namespace zt::kernels {
namespace {

using testing::DeviceBuffer;
using testing::RandomFloats;
using testing::ToBytes;

class AccumulateGpuTest : public ::testing::TestWithParam<std::tuple<DType, int64_t, int, int>>,
                          public testing::CudaBuffers {};

TEST_P(AccumulateGpuTest, EqualsCpuBitForBit) {
  const auto [dtype, n, dst_offset, src_offset] = GetParam();
  const size_t e = DTypeSize(dtype);
  const std::vector<uint8_t> dst0 = ToBytes(RandomFloats(n, 1, -2, 2), dtype);
  const std::vector<uint8_t> src = ToBytes(RandomFloats(n, 2, -2, 2), dtype);
  // Offsets in elements past a cudaMalloc'd base: both 0 take the 16-byte
  // path, anything else the element-wise one.
  DeviceBuffer d_dev = Alloc((n + dst_offset) * e), s_dev = Alloc((n + src_offset) * e);
  uint8_t* d = static_cast<uint8_t*>(d_dev.get()) + dst_offset * e;
  uint8_t* s = static_cast<uint8_t*>(s_dev.get()) + src_offset * e;
  Upload(d, dst0);
  Upload(s, src);
  ASSERT_TRUE(Accumulate(ctx_, dtype, d, s, n).ok());

  std::vector<uint8_t> want = dst0;
  ASSERT_TRUE(Accumulate(OpContext::Cpu(), dtype, want.data(), src.data(), n).ok());
  EXPECT_TRUE(Download(d, n * e) == want)
      << DTypeName(dtype) << " n=" << n << " offsets " << dst_offset << "," << src_offset;
}

INSTANTIATE_TEST_SUITE_P(
    AllDTypes, AccumulateGpuTest,
    ::testing::Combine(::testing::Values(DType::kFloat32, DType::kFloat16, DType::kBFloat16),
                       ::testing::Values(int64_t{1}, int64_t{7}, int64_t{8}, int64_t{4099},
                                         int64_t{(1 << 20) + 5}),
                       ::testing::Values(0, 1), ::testing::Values(0, 1)),
    [](const ::testing::TestParamInfo<AccumulateGpuTest::ParamType>& info) {
      return absl::StrCat(DTypeName(std::get<0>(info.param)), "_n", std::get<1>(info.param), "_dst",
                          std::get<2>(info.param), "_src", std::get<3>(info.param));
    });

}  // namespace
}  // namespace zt::kernels
