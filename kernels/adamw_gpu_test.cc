// Needs a GPU. The CUDA kernel and the CPU reference run the same fp32
// operations in the same order (adamw_internal.h), so they must agree bit
// for bit, on aligned (vectorized) and misaligned (scalar) tensors alike.

#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "glog/logging.h"
#include "gtest/gtest.h"
#include "kernels/adamw.h"
#include "core/device.h"
#include "core/dtype.h"
#include "kernels/gpu_testutil.h"
#include "kernels/testutil.h"

namespace zt::kernels {
namespace {

using ::zt::kernels::testing::RandomFloats;
using ::zt::kernels::testing::ToBytes;

using Gpu = testing::GpuBuffers;

// Tensors laid out in shared flat arrays; some start one element past a
// 16-byte boundary so both the vector and the scalar paths run.
struct Layout {
  std::vector<int64_t> offset, n;
  std::vector<bool> decay, has_param;
  int64_t total = 0;
};

Layout MakeLayout(const std::vector<int64_t>& sizes, uint64_t seed) {
  std::mt19937_64 rng(seed);
  Layout l;
  int64_t cur = 0;
  for (size_t i = 0; i < sizes.size(); ++i) {
    const bool misaligned = i % 3 == 2;
    const int64_t start = cur + (misaligned ? 1 : 0);
    l.offset.push_back(start);
    l.n.push_back(sizes[i]);
    l.decay.push_back(rng() % 2 == 0);
    l.has_param.push_back(i % 5 != 4);
    cur = (start + sizes[i] + 7) / 8 * 8;  // the next tensor starts 32-byte aligned
  }
  l.total = cur + 8;
  return l;
}

// Host-side state in the layout's flat arrays.
struct State {
  std::vector<float> master, m, v;
  std::vector<uint8_t> grad, param;
};

State InitialState(const Layout& l, DType grad_dtype, DType param_dtype, uint64_t seed) {
  State s;
  s.master = RandomFloats(l.total, seed);
  s.m = RandomFloats(l.total, seed + 1, -0.1f, 0.1f);
  s.v = RandomFloats(l.total, seed + 2, 0.0f, 0.01f);
  s.grad = ToBytes(RandomFloats(l.total, seed + 3), grad_dtype);
  s.param = ToBytes(s.master, param_dtype);
  return s;
}

std::vector<AdamWTensor> Tensors(const Layout& l, float* master, float* m, float* v, void* grad,
                                 DType grad_dtype, void* param, DType param_dtype) {
  std::vector<AdamWTensor> out;
  for (size_t i = 0; i < l.n.size(); ++i) {
    const int64_t o = l.offset[i];
    out.push_back(AdamWTensor{
        master + o, m + o, v + o, static_cast<const uint8_t*>(grad) + o * DTypeSize(grad_dtype),
        l.has_param[i] ? static_cast<uint8_t*>(param) + o * DTypeSize(param_dtype) : nullptr,
        l.n[i], l.decay[i]});
  }
  return out;
}

AdamWHyper Hyper(int64_t step) {
  AdamWHyper h;
  h.lr = 3e-3f;
  h.weight_decay = 0.1f;
  h.step = step;
  h.grad_scale = 0.25f;
  return h;
}

// Runs `steps` updates on the CPU and on the GPU from the same state, with a
// fresh gradient each step, and returns both final states.
std::pair<State, State> RunBoth(Gpu& gpu, const Layout& l, DType gd, DType pd, int steps,
                                uint64_t seed) {
  State cpu = InitialState(l, gd, pd, seed);
  State dev_result = cpu;
  Buffer master = gpu.Upload(cpu.master.data(), 4 * l.total);
  Buffer m = gpu.Upload(cpu.m.data(), 4 * l.total);
  Buffer v = gpu.Upload(cpu.v.data(), 4 * l.total);
  Buffer param = gpu.Upload(cpu.param.data(), cpu.param.size());
  for (int step = 1; step <= steps; ++step) {
    cpu.grad = ToBytes(RandomFloats(l.total, seed + 100 + step, -3, 3), gd);
    Buffer grad = gpu.Upload(cpu.grad.data(), cpu.grad.size());
    const std::vector<AdamWTensor> host_tensors = Tensors(
        l, cpu.master.data(), cpu.m.data(), cpu.v.data(), cpu.grad.data(), gd, cpu.param.data(), pd);
    const std::vector<AdamWTensor> dev_tensors =
        Tensors(l, master.as<float>(), m.as<float>(), v.as<float>(), grad.data(), gd,
                param.data(), pd);
    EXPECT_TRUE(AdamWUpdate(OpContext::Cpu(), gd, pd, Hyper(step), host_tensors).ok());
    const absl::Status s = AdamWUpdate(gpu.ctx(), gd, pd, Hyper(step), dev_tensors);
    EXPECT_TRUE(s.ok()) << s;
    gpu.Sync();  // before `grad` and its host copy go away
  }
  gpu.Download(dev_result.master.data(), master, 4 * l.total);
  gpu.Download(dev_result.m.data(), m, 4 * l.total);
  gpu.Download(dev_result.v.data(), v, 4 * l.total);
  gpu.Download(dev_result.param.data(), param, dev_result.param.size());
  dev_result.grad = cpu.grad;
  return {cpu, dev_result};
}

std::vector<uint32_t> Bits(const std::vector<float>& v) {
  std::vector<uint32_t> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = FloatBits(v[i]);
  return out;
}

void ExpectSameBits(const State& want, const State& got) {
  EXPECT_EQ(Bits(got.master), Bits(want.master));
  EXPECT_EQ(Bits(got.m), Bits(want.m));
  EXPECT_EQ(Bits(got.v), Bits(want.v));
  EXPECT_EQ(got.param, want.param);
}

using DTypePair = std::tuple<DType, DType>;

class AdamWGpuTest : public ::testing::TestWithParam<DTypePair> {};

TEST_P(AdamWGpuTest, MatchesCpuBitsOnOddSizes) {
  const auto [gd, pd] = GetParam();
  Gpu gpu;
  const Layout l = MakeLayout({1, 7, 1000003, 5, 4096, 4099}, 1);
  const auto [cpu, dev] = RunBoth(gpu, l, gd, pd, 3, 10);
  ExpectSameBits(cpu, dev);
}

INSTANTIATE_TEST_SUITE_P(
    AllDTypePairs, AdamWGpuTest,
    ::testing::Combine(::testing::Values(DType::kFloat32, DType::kFloat16, DType::kBFloat16),
                       ::testing::Values(DType::kFloat32, DType::kFloat16, DType::kBFloat16)),
    [](const ::testing::TestParamInfo<DTypePair>& info) {
      return "grad_" + std::string(DTypeName(std::get<0>(info.param))) + "_param_" +
             std::string(DTypeName(std::get<1>(info.param)));
    });

std::vector<int64_t> RandomSizes(int count, int64_t max, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int64_t> sizes(count);
  for (auto& s : sizes) s = 1 + static_cast<int64_t>(rng() % max);
  sizes[count / 2] = 0;  // an empty piece of a ZeRO shard
  return sizes;
}

TEST(AdamWGpuManyTensorsTest, OneLaunchOver150TensorsMatchesCpuBits) {
  Gpu gpu;
  const Layout l = MakeLayout(RandomSizes(150, 30000, 2), 3);
  const auto [cpu, dev] = RunBoth(gpu, l, DType::kFloat32, DType::kBFloat16, 2, 20);
  ExpectSameBits(cpu, dev);
}

TEST(AdamWGpuManyTensorsTest, MoreTensorsThanOneLaunchHoldsMatchCpuBits) {
  Gpu gpu;
  const Layout l = MakeLayout(RandomSizes(700, 3000, 4), 5);
  const auto [cpu, dev] = RunBoth(gpu, l, DType::kBFloat16, DType::kFloat16, 2, 30);
  ExpectSameBits(cpu, dev);
}

TEST(AdamWGpuManyTensorsTest, SameBitsTwice) {
  Gpu gpu;
  const Layout l = MakeLayout(RandomSizes(150, 30000, 6), 7);
  const auto first = RunBoth(gpu, l, DType::kFloat16, DType::kFloat16, 2, 40);
  const auto second = RunBoth(gpu, l, DType::kFloat16, DType::kFloat16, 2, 40);
  ExpectSameBits(first.second, second.second);
}

}  // namespace
}  // namespace zt::kernels
