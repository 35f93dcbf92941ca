// Needs a GPU. ScaleAndCheckFinite and Cast are one correctly rounded
// operation per element on both devices, so they must match the CPU bit for
// bit (NaNs only as NaNs: their payloads may differ). SquaredNorm's fp32
// tree differs from the CPU's double sum by rounding only, and must be the
// same bits from run to run.

#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "glog/logging.h"
#include "gtest/gtest.h"
#include "core/device.h"
#include "core/dtype.h"
#include "kernels/gpu_testutil.h"
#include "kernels/grad_utils.h"
#include "kernels/testutil.h"

namespace zt::kernels {
namespace {

using ::zt::kernels::testing::FromBytes;
using ::zt::kernels::testing::RandomFloats;
using ::zt::kernels::testing::ToBytes;

using Gpu = testing::GpuBuffers;

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

std::string Name(DType t) { return std::string(DTypeName(t)); }

// Equal bits, except that any NaN matches any NaN.
void ExpectSameValues(const std::vector<uint8_t>& got, const std::vector<uint8_t>& want,
                      DType dtype, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  const size_t n = got.size() / DTypeSize(dtype);
  const std::vector<float> g = FromBytes(got.data(), n, dtype);
  const std::vector<float> w = FromBytes(want.data(), n, dtype);
  const size_t size = DTypeSize(dtype);
  for (size_t i = 0; i < n; ++i) {
    if (std::isnan(g[i]) && std::isnan(w[i])) continue;
    ASSERT_EQ(std::memcmp(got.data() + i * size, want.data() + i * size, size), 0)
        << what << ": element " << i << " got " << g[i] << " want " << w[i];
  }
}

// Sizes that hit the vector body, the scalar tail, and (with offset 1) the
// misaligned fallback.
const std::vector<int64_t> kSizes = {1, 7, 1000003};
const std::vector<int64_t> kOffsets = {0, 1};

std::vector<float> Values(int64_t n, uint64_t seed, bool with_specials) {
  std::vector<float> x = RandomFloats(n, seed, -100, 100);
  if (with_specials && n > 6) {
    x[n / 2] = kInf;
    x[n / 3] = kNaN;
    x[n - 1] = -kInf;
    x[1] = 70000.0f;  // overflows fp16
    x[2] = 1e-41f;    // fp32 subnormal
  }
  return x;
}

class GradUtilsGpuDTypeTest : public ::testing::TestWithParam<DType> {};

INSTANTIATE_TEST_SUITE_P(AllDTypes, GradUtilsGpuDTypeTest,
                         ::testing::Values(DType::kFloat32, DType::kFloat16, DType::kBFloat16),
                         [](const ::testing::TestParamInfo<DType>& info) {
                           return Name(info.param);
                         });

TEST_P(GradUtilsGpuDTypeTest, ScaleAndCheckFiniteMatchesCpu) {
  const DType dtype = GetParam();
  Gpu gpu;
  for (const bool specials : {false, true}) {
    for (const int64_t n : kSizes) {
      for (const int64_t offset : kOffsets) {
        const std::string what = "n " + std::to_string(n) + " offset " +
                                 std::to_string(offset) + (specials ? " with specials" : "");
        std::vector<uint8_t> host =
            ToBytes(Values(n + offset, 1 + n + offset, specials), dtype);
        Buffer dev = gpu.Upload(host.data(), host.size());
        const int32_t zero = 0;
        Buffer dev_flag = gpu.Upload(&zero, sizeof(zero));
        int32_t cpu_flag = 0;
        const size_t skip = offset * DTypeSize(dtype);
        ASSERT_TRUE(ScaleAndCheckFinite(OpContext::Cpu(), dtype, host.data() + skip, n, 0.37f,
                                        &cpu_flag)
                        .ok());
        const absl::Status s =
            ScaleAndCheckFinite(gpu.ctx(), dtype, static_cast<uint8_t*>(dev.data()) + skip, n,
                                0.37f, dev_flag.as<int32_t>());
        ASSERT_TRUE(s.ok()) << s;
        std::vector<uint8_t> back(host.size());
        int32_t gpu_flag = -1;
        gpu.Download(back.data(), dev.data(), back.size());
        gpu.Download(&gpu_flag, dev_flag.data(), sizeof(gpu_flag));
        ExpectSameValues(back, host, dtype, what);
        EXPECT_EQ(gpu_flag, cpu_flag) << what;
        EXPECT_EQ(gpu_flag, (specials && n > 6) ? 1 : 0) << what;
      }
    }
  }
}

TEST(ScaleAndCheckFiniteGpuTest, NeverClearsASetFlag) {
  Gpu gpu;
  const std::vector<float> x = RandomFloats(1000, 2);
  Buffer dev = gpu.Upload(x.data(), 4 * x.size());
  const int32_t one = 1;
  Buffer flag = gpu.Upload(&one, sizeof(one));
  ASSERT_TRUE(ScaleAndCheckFinite(gpu.ctx(), DType::kFloat32, dev.data(), 1000, 2.0f,
                                  flag.as<int32_t>())
                  .ok());
  int32_t got = 0;
  gpu.Download(&got, flag.data(), sizeof(got));
  EXPECT_EQ(got, 1);
}

// Tensors at odd sizes and offsets inside one device buffer.
struct TensorSet {
  std::vector<uint8_t> host;
  std::vector<int64_t> offset, n;
};

TensorSet MakeTensorSet(const std::vector<int64_t>& sizes, DType dtype, uint64_t seed) {
  TensorSet t;
  int64_t cur = 0;
  for (size_t i = 0; i < sizes.size(); ++i) {
    const int64_t start = cur + (i % 3 == 1 ? 1 : 0);
    t.offset.push_back(start);
    t.n.push_back(sizes[i]);
    cur = (start + sizes[i] + 7) / 8 * 8;
  }
  t.host = ToBytes(RandomFloats(cur + 8, seed, -3, 3), dtype);
  return t;
}

std::vector<ConstTensorRef> Refs(const TensorSet& t, const void* base, DType dtype) {
  std::vector<ConstTensorRef> refs;
  for (size_t i = 0; i < t.n.size(); ++i) {
    refs.push_back({static_cast<const uint8_t*>(base) + t.offset[i] * DTypeSize(dtype), t.n[i]});
  }
  return refs;
}

std::vector<int64_t> RandomSizes(int count, int64_t max, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int64_t> sizes(count);
  for (auto& s : sizes) s = 1 + static_cast<int64_t>(rng() % max);
  sizes[count / 2] = 0;
  return sizes;
}

// Returns the GPU result; checks it against the CPU and against a rerun.
float CheckSquaredNorm(Gpu& gpu, const TensorSet& t, DType dtype, const std::string& what) {
  float cpu = -1;
  EXPECT_TRUE(SquaredNorm(OpContext::Cpu(), dtype, Refs(t, t.host.data(), dtype), &cpu).ok());
  Buffer data = gpu.Upload(t.host.data(), t.host.size());
  const std::vector<ConstTensorRef> refs = Refs(t, data.data(), dtype);
  const size_t ws_bytes = SquaredNormWorkspaceBytes(refs);
  Buffer ws = gpu.Alloc(ws_bytes);
  Buffer out = gpu.Alloc(2 * sizeof(float));
  gpu.ctx().workspace = ws.data();
  gpu.ctx().workspace_bytes = ws_bytes;
  for (int run = 0; run < 2; ++run) {
    const absl::Status s = SquaredNorm(gpu.ctx(), dtype, refs, out.as<float>() + run);
    EXPECT_TRUE(s.ok()) << s;
  }
  float got[2] = {-1, -2};
  gpu.Download(got, out.data(), sizeof(got));
  gpu.ctx().workspace = nullptr;
  gpu.ctx().workspace_bytes = 0;
  // fp32 partial sums of at most a few thousand terms each, then trees.
  EXPECT_NEAR(got[0], cpu, 1e-5 * cpu) << what;
  EXPECT_EQ(FloatBits(got[0]), FloatBits(got[1])) << what << ": not deterministic";
  return got[0];
}

TEST_P(GradUtilsGpuDTypeTest, SquaredNormMatchesCpuOnOddSizes) {
  const DType dtype = GetParam();
  Gpu gpu;
  CheckSquaredNorm(gpu, MakeTensorSet({1, 7, 1000003}, dtype, 3), dtype, "odd sizes");
  CheckSquaredNorm(gpu, MakeTensorSet({1}, dtype, 4), dtype, "one element");
}

TEST_P(GradUtilsGpuDTypeTest, SquaredNormMatchesCpuOnManyTensors) {
  const DType dtype = GetParam();
  Gpu gpu;
  CheckSquaredNorm(gpu, MakeTensorSet(RandomSizes(150, 50000, 5), dtype, 6), dtype, "150 tensors");
  // More tensors than one launch's table holds.
  CheckSquaredNorm(gpu, MakeTensorSet(RandomSizes(1200, 3000, 7), dtype, 8), dtype,
                   "1200 tensors");
}

TEST(SquaredNormGpuTest, NoElementsWriteZero) {
  Gpu gpu;
  const float junk = 123.0f;
  Buffer out = gpu.Upload(&junk, sizeof(junk));
  const std::vector<ConstTensorRef> refs = {{nullptr, 0}};
  ASSERT_TRUE(SquaredNorm(gpu.ctx(), DType::kFloat32, refs, out.as<float>()).ok());
  float got = -1;
  gpu.Download(&got, out.data(), sizeof(got));
  EXPECT_EQ(got, 0.0f);
}

TEST(SquaredNormGpuTest, TooSmallWorkspaceIsResourceExhausted) {
  Gpu gpu;
  const std::vector<float> x = RandomFloats(100000, 9);
  Buffer data = gpu.Upload(x.data(), 4 * x.size());
  Buffer out = gpu.Alloc(sizeof(float));
  const std::vector<ConstTensorRef> refs = {{data.data(), 100000}};
  ASSERT_GT(SquaredNormWorkspaceBytes(refs), sizeof(float));
  Buffer ws = gpu.Alloc(sizeof(float));
  gpu.ctx().workspace = ws.data();
  gpu.ctx().workspace_bytes = sizeof(float);
  const absl::Status s = SquaredNorm(gpu.ctx(), DType::kFloat32, refs, out.as<float>());
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(s.message().find("SquaredNormWorkspaceBytes"), std::string::npos) << s;
}

using DTypePair = std::tuple<DType, DType>;

class CastGpuTest : public ::testing::TestWithParam<DTypePair> {};

TEST_P(CastGpuTest, MatchesCpu) {
  const auto [src_dtype, dst_dtype] = GetParam();
  Gpu gpu;
  for (const int64_t n : kSizes) {
    for (const int64_t src_offset : kOffsets) {
      for (const int64_t dst_offset : kOffsets) {
        const std::string what = "n " + std::to_string(n) + " offsets " +
                                 std::to_string(src_offset) + "," + std::to_string(dst_offset);
        const std::vector<uint8_t> src = ToBytes(Values(n + src_offset, n, true), src_dtype);
        std::vector<uint8_t> cpu_dst((n + dst_offset) * DTypeSize(dst_dtype), 0x5a);
        const size_t src_skip = src_offset * DTypeSize(src_dtype);
        const size_t dst_skip = dst_offset * DTypeSize(dst_dtype);
        ASSERT_TRUE(Cast(OpContext::Cpu(), src.data() + src_skip, src_dtype,
                         cpu_dst.data() + dst_skip, dst_dtype, n)
                        .ok());
        Buffer dev_src = gpu.Upload(src.data(), src.size());
        Buffer dev_dst = gpu.Upload(std::vector<uint8_t>(cpu_dst.size(), 0x5a).data(),
                                    cpu_dst.size());
        const absl::Status s =
            Cast(gpu.ctx(), static_cast<const uint8_t*>(dev_src.data()) + src_skip, src_dtype,
                 static_cast<uint8_t*>(dev_dst.data()) + dst_skip, dst_dtype, n);
        ASSERT_TRUE(s.ok()) << s;
        std::vector<uint8_t> got(cpu_dst.size());
        gpu.Download(got.data(), dev_dst.data(), got.size());
        ExpectSameValues(got, cpu_dst, dst_dtype, what);
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    AllDTypePairs, CastGpuTest,
    ::testing::Combine(::testing::Values(DType::kFloat32, DType::kFloat16, DType::kBFloat16),
                       ::testing::Values(DType::kFloat32, DType::kFloat16, DType::kBFloat16)),
    [](const ::testing::TestParamInfo<DTypePair>& info) {
      return Name(std::get<0>(info.param)) + "_to_" + Name(std::get<1>(info.param));
    });

TEST(CastGpuTest, SameBitsTwice) {
  Gpu gpu;
  const std::vector<uint8_t> src = ToBytes(Values(100001, 11, true), DType::kFloat32);
  Buffer dev_src = gpu.Upload(src.data(), src.size());
  Buffer a = gpu.Alloc(2 * 100001), b = gpu.Alloc(2 * 100001);
  ASSERT_TRUE(Cast(gpu.ctx(), dev_src.data(), DType::kFloat32, a.data(), DType::kBFloat16, 100001)
                  .ok());
  ASSERT_TRUE(Cast(gpu.ctx(), dev_src.data(), DType::kFloat32, b.data(), DType::kBFloat16, 100001)
                  .ok());
  std::vector<uint8_t> got_a(2 * 100001), got_b(2 * 100001);
  gpu.Download(got_a.data(), a.data(), got_a.size());
  gpu.Download(got_b.data(), b.data(), got_b.size());
  EXPECT_EQ(got_a, got_b);
}

}  // namespace
}  // namespace zt::kernels
