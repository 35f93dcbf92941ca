// Needs a GPU: the cuBLASLt linear layer against the CPU reference for every
// op, dtype and a range of shapes (odd sizes, sizes that are not multiples of
// 8 or 128, GPT-2's MLP), through both the fused-epilogue and the unfused
// paths; exact sums rounded once; fused error against unfused; bitwise
// reproducibility; workspace errors.
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "core/dtype.h"
#include "kernels/matmul.h"
#include "kernels/matmul_cuda.h"
#include "kernels/gelu_ref.h"
#include "kernels/matmul_ref.h"
#include "kernels/op_context.h"
#include "kernels/testutil.h"

namespace zt::kernels {
namespace {

using testing::FromBytes;
using testing::RandomFloats;
using testing::ToBytes;

constexpr double kEps32 = 1.1920928955078125e-07;
constexpr size_t kWorkspaceBytes = size_t{32} << 20;

struct Shape {
  int64_t M, N, K;
};

struct CudaFree {
  void operator()(void* p) const { cudaFree(p); }
};
using DeviceBuffer = std::unique_ptr<void, CudaFree>;

// Error model for comparing the GPU with the CPU reference. Both compute
// each output as an fp32 sum and round it once to the storage type.
//  - The two fp32 sums differ by their own rounding errors, which scale with
//    what is summed, sum_k |a_k b_k| plus |bias| or |C_old| ("magnitude",
//    computed by running the reference on absolute values), not with the
//    result: under cancellation the result can be far smaller. Per side we
//    allow sqrt(terms) * eps32 * magnitude (Higham and Mary's probabilistic
//    bound with lambda = 1; OpenBLAS's measured errors on these shapes stay
//    below 0.2 of it).
//  - Rounding the two to the storage type then puts them at most one ulp
//    apart, and one ulp <= eps(dtype) * |ref|.
//  - Below fp16's normal range the ulp is absolute: one subnormal step.
// For large K the first term outgrows a 16-bit ulp, so a double rounding
// could hide in it there; ExactSumsAreRoundedOnce pins single rounding
// exactly instead.
constexpr double kSubnormalStep = 5.9604644775390625e-08;  // 2^-24

std::vector<double> SumAllowance(DType dtype, int64_t terms, const std::vector<float>& ref,
                                 const std::vector<float>& magnitude) {
  const double fp32 = 2 * std::sqrt(static_cast<double>(std::max<int64_t>(terms, 1))) * kEps32;
  std::vector<double> allowed(ref.size());
  for (size_t i = 0; i < ref.size(); ++i) {
    allowed[i] = DTypeEpsilon(dtype) * std::abs(ref[i]) + fp32 * magnitude[i] + kSubnormalStep;
  }
  return allowed;
}

// cuBLASLt does not document its GELU's accuracy; a hardware tanh
// approximation (relative error about 2^-11) is plausible. kTanhAllowance
// bounds such a tanh error, kTanhF32 the difference between tanhf on the
// GPU and std::tanh in float on the CPU plus the fp32 arithmetic around it.
constexpr double kTanhAllowance = 1.0 / 1024;
constexpr double kTanhF32 = 8 * kEps32;

// How far an error dt in tanh moves gelu(x) and gelu'(x).
double GeluTanhSensitivity(double x) { return 0.5 * std::abs(x); }
double GeluGradTanhSensitivity(double x) {
  x = std::abs(x);
  return 0.5 + 0.8 * x + 0.11 * x * x * x;
}

void ExpectClose(const std::vector<float>& got, const std::vector<float>& want,
                 const std::vector<double>& allowed, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  ASSERT_EQ(allowed.size(), want.size()) << what;
  double worst = 0;
  size_t worst_i = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_FALSE(std::isnan(got[i])) << what << " NaN at " << i;
    const double excess = std::abs(double{got[i]} - want[i]) - allowed[i];
    if (excess > worst) {
      worst = excess;
      worst_i = i;
    }
  }
  EXPECT_EQ(worst, 0.0) << what << ": index " << worst_i << " got " << got[worst_i] << " want "
                        << want[worst_i] << " (allowed " << allowed[worst_i] << ")";
}

std::vector<float> Abs(std::vector<float> v) {
  for (float& x : v) x = std::abs(x);
  return v;
}

// Host data of one problem, in the storage dtype. Weights scaled by
// 1/sqrt(K) so pre-activations are O(1) and GELU's curved region is used.
// Dyadic data are multiples of 1/64 (see ExactSumsAreRoundedOnce).
struct Problem {
  Shape s;
  DType dtype;
  std::vector<uint8_t> inp, weight, bias, dout, pre, dweight0, dbias0;
  Problem(Shape shape, DType t, bool dyadic = false) : s(shape), dtype(t) {
    auto data = [&](int64_t n, uint64_t seed, float lo = -1, float hi = 1) {
      std::vector<float> v = RandomFloats(n, seed, lo, hi);
      if (dyadic) {
        for (float& x : v) x = std::round(x * 64) / 64;
      }
      return ToBytes(v, t);
    };
    const float w = 2.0f / std::sqrt(static_cast<float>(s.K));
    inp = data(s.M * s.K, 1);
    weight = data(s.N * s.K, 2, -w, w);
    bias = data(s.N, 3);
    dout = data(s.M * s.N, 4);
    pre = data(s.M * s.K, 5, -3, 3);
    dweight0 = data(s.N * s.K, 6);
    dbias0 = data(s.N, 7);
  }
  size_t Bytes(int64_t elements) const { return elements * DTypeSize(dtype); }
  std::vector<float> F(const std::vector<uint8_t>& b) const {
    return FromBytes(b.data(), b.size() / DTypeSize(dtype), dtype);
  }
};

struct ForwardResult {
  std::vector<uint8_t> out, pre_gelu;
};
struct BackwardResult {
  std::vector<uint8_t> dinp, dweight, dbias;
};

// CPU reference results, in the storage dtype.
ForwardResult CpuForward(const Problem& pr, bool with_bias, bool with_gelu) {
  const Shape s = pr.s;
  ForwardResult r{std::vector<uint8_t>(pr.Bytes(s.M * s.N)),
                  std::vector<uint8_t>(with_gelu ? pr.Bytes(s.M * s.N) : 0)};
  MatmulForwardParams p;
  p.inp = pr.inp.data();
  p.weight = pr.weight.data();
  p.bias = with_bias ? pr.bias.data() : nullptr;
  p.out = r.out.data();
  p.pre_gelu = with_gelu ? r.pre_gelu.data() : nullptr;
  p.M = s.M;
  p.N = s.N;
  p.K = s.K;
  p.dtype = pr.dtype;
  EXPECT_TRUE(MatmulForward(OpContext::Cpu(), p).ok());
  return r;
}

BackwardResult CpuBackward(const Problem& pr, bool with_gelu) {
  const Shape s = pr.s;
  BackwardResult r{std::vector<uint8_t>(pr.Bytes(s.M * s.K)), pr.dweight0, pr.dbias0};
  MatmulBackwardParams p;
  p.dout = pr.dout.data();
  p.inp = pr.inp.data();
  p.weight = pr.weight.data();
  p.dinp = r.dinp.data();
  p.inp_pre_gelu = with_gelu ? pr.pre.data() : nullptr;
  p.dweight = r.dweight.data();
  p.dbias = r.dbias.data();
  p.M = s.M;
  p.N = s.N;
  p.K = s.K;
  p.dtype = pr.dtype;
  EXPECT_TRUE(MatmulBackward(OpContext::Cpu(), p).ok());
  return r;
}

// Per output, the sum of the magnitudes its fp32 sum adds up (see
// SumAllowance): the reference run in fp32 on absolute values.
std::vector<float> ForwardMagnitude(const Problem& pr, bool with_bias) {
  const Shape s = pr.s;
  const std::vector<float> inp = Abs(pr.F(pr.inp)), weight = Abs(pr.F(pr.weight)),
                           bias = Abs(pr.F(pr.bias));
  std::vector<float> out(s.M * s.N);
  MatmulForwardRef<float>(inp.data(), weight.data(), with_bias ? bias.data() : nullptr, out.data(),
                          nullptr, s.M, s.N, s.K);
  return out;
}

BackwardResult BackwardMagnitude(const Problem& pr) {
  const Shape s = pr.s;
  const std::vector<float> dout = Abs(pr.F(pr.dout)), inp = Abs(pr.F(pr.inp)),
                           weight = Abs(pr.F(pr.weight));
  std::vector<float> dinp(s.M * s.K), dweight = Abs(pr.F(pr.dweight0)),
                                      dbias = Abs(pr.F(pr.dbias0));
  MatmulBackwardRef<float>(dout.data(), inp.data(), weight.data(), dinp.data(), nullptr,
                           dweight.data(), dbias.data(), s.M, s.N, s.K);
  return {ToBytes(dinp, DType::kFloat32), ToBytes(dweight, DType::kFloat32),
          ToBytes(dbias, DType::kFloat32)};
}

std::vector<float> F32(const std::vector<uint8_t>& b) {
  return FromBytes(b.data(), b.size() / sizeof(float), DType::kFloat32);
}

class MatmulGpuFixture {
 protected:
  void Init() {
    ASSERT_EQ(cudaStreamCreate(&stream_), cudaSuccess);
    ASSERT_EQ(cublasLtCreate(&lt_), CUBLAS_STATUS_SUCCESS);
    workspace_ = Alloc(kWorkspaceBytes);
    ctx_.device = Device::Cuda(0);
    ctx_.stream = stream_;
    ctx_.cublaslt_handle = lt_;
    ctx_.workspace = workspace_.get();
    ctx_.workspace_bytes = kWorkspaceBytes;
  }
  void Destroy() {
    workspace_.reset();
    if (lt_ != nullptr) cublasLtDestroy(lt_);
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
  }

  DeviceBuffer Alloc(size_t bytes) {
    void* p = nullptr;
    EXPECT_EQ(cudaMalloc(&p, std::max<size_t>(bytes, 1)), cudaSuccess);
    return DeviceBuffer(p);
  }
  DeviceBuffer Upload(const std::vector<uint8_t>& host) {
    DeviceBuffer d = Alloc(host.size());
    EXPECT_EQ(cudaMemcpyAsync(d.get(), host.data(), host.size(), cudaMemcpyHostToDevice, stream_),
              cudaSuccess);
    EXPECT_EQ(cudaStreamSynchronize(stream_), cudaSuccess);
    return d;
  }
  void Overwrite(const DeviceBuffer& d, const std::vector<uint8_t>& host) {
    EXPECT_EQ(cudaMemcpyAsync(d.get(), host.data(), host.size(), cudaMemcpyHostToDevice, stream_),
              cudaSuccess);
    EXPECT_EQ(cudaStreamSynchronize(stream_), cudaSuccess);
  }
  std::vector<uint8_t> Download(const DeviceBuffer& d, size_t bytes) {
    std::vector<uint8_t> out(bytes);
    EXPECT_EQ(cudaMemcpyAsync(out.data(), d.get(), bytes, cudaMemcpyDeviceToHost, stream_),
              cudaSuccess);
    EXPECT_EQ(cudaStreamSynchronize(stream_), cudaSuccess);
    return out;
  }

  // Runs the forward on the GPU (through the public entry when fusion is
  // allowed, through the launcher with fusion off otherwise), with the
  // first `workspace_bytes` of the workspace.
  ForwardResult GpuForward(const Problem& pr, bool with_bias, bool with_gelu, bool allow_fused,
                           size_t workspace_bytes = kWorkspaceBytes) {
    const Shape s = pr.s;
    DeviceBuffer inp = Upload(pr.inp), weight = Upload(pr.weight), bias = Upload(pr.bias);
    DeviceBuffer out = Alloc(pr.Bytes(s.M * s.N)), pre = Alloc(pr.Bytes(s.M * s.N));
    MatmulForwardParams p;
    p.inp = inp.get();
    p.weight = weight.get();
    p.bias = with_bias ? bias.get() : nullptr;
    p.out = out.get();
    p.pre_gelu = with_gelu ? pre.get() : nullptr;
    p.M = s.M;
    p.N = s.N;
    p.K = s.K;
    p.dtype = pr.dtype;
    OpContext ctx = ctx_;
    ctx.workspace_bytes = workspace_bytes;
    absl::Status st;
    if (allow_fused) {
      st = MatmulForward(ctx, p);
    } else {
      MatmulCudaOptions o;
      o.allow_fused_epilogue = false;
      st = MatmulForwardCuda(ctx, p, o);
    }
    EXPECT_TRUE(st.ok()) << st;
    ForwardResult r;
    r.out = Download(out, pr.Bytes(s.M * s.N));
    if (with_gelu) r.pre_gelu = Download(pre, pr.Bytes(s.M * s.N));
    return r;
  }

  BackwardResult GpuBackward(const Problem& pr, bool with_gelu, bool allow_fused,
                             size_t workspace_bytes = kWorkspaceBytes, bool accumulate = true) {
    const Shape s = pr.s;
    DeviceBuffer dout = Upload(pr.dout), inp = Upload(pr.inp), weight = Upload(pr.weight),
                 pre = Upload(pr.pre), dweight = Upload(pr.dweight0), dbias = Upload(pr.dbias0);
    // dinp starts as garbage: it must be overwritten.
    DeviceBuffer dinp = Upload(std::vector<uint8_t>(pr.Bytes(s.M * s.K), 0x3c));
    MatmulBackwardParams p;
    p.dout = dout.get();
    p.inp = inp.get();
    p.weight = weight.get();
    p.dinp = dinp.get();
    p.inp_pre_gelu = with_gelu ? pre.get() : nullptr;
    p.dweight = dweight.get();
    p.dbias = dbias.get();
    p.M = s.M;
    p.N = s.N;
    p.K = s.K;
    p.dtype = pr.dtype;
    p.accumulate = accumulate;
    OpContext ctx = ctx_;
    ctx.workspace_bytes = workspace_bytes;
    absl::Status st;
    if (allow_fused) {
      st = MatmulBackward(ctx, p);
    } else {
      MatmulCudaOptions o;
      o.allow_fused_epilogue = false;
      st = MatmulBackwardCuda(ctx, p, o);
    }
    EXPECT_TRUE(st.ok()) << st;
    return {Download(dinp, pr.Bytes(s.M * s.K)), Download(dweight, pr.Bytes(s.N * s.K)),
            Download(dbias, pr.Bytes(s.N))};
  }

  cudaStream_t stream_ = nullptr;
  cublasLtHandle_t lt_ = nullptr;
  DeviceBuffer workspace_;
  OpContext ctx_;
};

// ----------------------------------------------------------- parametrised --

using Param = std::tuple<DType, Shape, bool>;  // dtype, shape, allow fused.

class MatmulGpuTest : public MatmulGpuFixture, public ::testing::TestWithParam<Param> {
 protected:
  void SetUp() override { Init(); }
  void TearDown() override { Destroy(); }
};

std::string What(const Problem& pr, bool fused, const std::string& part) {
  return absl::StrCat(part, " ", DTypeName(pr.dtype), " M=", pr.s.M, " N=", pr.s.N, " K=", pr.s.K,
                      fused ? " (fused allowed)" : " (unfused)");
}

TEST_P(MatmulGpuTest, ForwardMatchesCpuReference) {
  const auto [dtype, shape, allow_fused] = GetParam();
  const Problem pr(shape, dtype);
  const Shape s = pr.s;
  for (const bool with_bias : {false, true}) {
    const std::vector<float> magnitude = ForwardMagnitude(pr, with_bias);
    for (const bool with_gelu : {false, true}) {
      const ForwardResult ref = CpuForward(pr, with_bias, with_gelu);
      const ForwardResult got = GpuForward(pr, with_bias, with_gelu, allow_fused);
      const std::string what = absl::StrCat(with_bias ? " +bias" : "", with_gelu ? " +gelu" : "");
      if (!with_gelu) {
        const std::vector<float> out = pr.F(ref.out);
        ExpectClose(pr.F(got.out), out, SumAllowance(dtype, s.K + 1, out, magnitude),
                    What(pr, allow_fused, "out" + what));
        continue;
      }
      const std::vector<float> pre = pr.F(ref.pre_gelu), out = pr.F(ref.out);
      ExpectClose(pr.F(got.pre_gelu), pre, SumAllowance(dtype, s.K + 1, pre, magnitude),
                  What(pr, allow_fused, "pre_gelu" + what));
      // Both sides take GELU of the unrounded fp32 sum: its difference
      // carries over scaled by gelu' <= 1.13; then the tanh terms and one
      // rounding of the output.
      const double tanh_error = kTanhF32 + (allow_fused ? kTanhAllowance : 0.0);
      std::vector<double> allowed = SumAllowance(dtype, s.K + 1, pre, magnitude);
      for (size_t i = 0; i < allowed.size(); ++i) {
        allowed[i] = 1.2 * (allowed[i] - DTypeEpsilon(dtype) * std::abs(pre[i])) +
                     DTypeEpsilon(dtype) * std::abs(out[i]) +
                     tanh_error * GeluTanhSensitivity(pre[i]);
      }
      ExpectClose(pr.F(got.out), out, allowed, What(pr, allow_fused, "out" + what));
    }
  }
}

TEST_P(MatmulGpuTest, BackwardMatchesCpuReference) {
  const auto [dtype, shape, allow_fused] = GetParam();
  const Problem pr(shape, dtype);
  const Shape s = pr.s;
  const BackwardResult magnitude = BackwardMagnitude(pr);
  const std::vector<float> dinp_mag = F32(magnitude.dinp), dweight_mag = F32(magnitude.dweight),
                           dbias_mag = F32(magnitude.dbias);
  // The plain product dout @ weight, for the GELU input's allowance.
  const std::vector<float> plain = pr.F(CpuBackward(pr, /*with_gelu=*/false).dinp);
  const std::vector<float> pre = pr.F(pr.pre);
  for (const bool with_gelu : {false, true}) {
    const BackwardResult ref = CpuBackward(pr, with_gelu);
    const BackwardResult got = GpuBackward(pr, with_gelu, allow_fused);
    const std::string what = with_gelu ? " (gelu input)" : "";

    const std::vector<float> dinp = pr.F(ref.dinp);
    std::vector<double> allowed = SumAllowance(dtype, s.N, dinp, dinp_mag);
    if (with_gelu) {
      // dinp = plain * gelu'(pre), rounded once on both sides: the fp32 sum
      // difference scaled by gelu' <= 1.13, and tanh differences moving
      // gelu'.
      for (size_t i = 0; i < allowed.size(); ++i) {
        allowed[i] = 1.2 * (allowed[i] - DTypeEpsilon(dtype) * std::abs(dinp[i])) +
                     DTypeEpsilon(dtype) * std::abs(dinp[i]) +
                     (kTanhF32 + (allow_fused ? kTanhAllowance : 0.0)) * std::abs(plain[i]) *
                         GeluGradTanhSensitivity(pre[i]);
      }
    }
    ExpectClose(pr.F(got.dinp), dinp, allowed, What(pr, allow_fused, "dinp" + what));
    const std::vector<float> dweight = pr.F(ref.dweight), dbias = pr.F(ref.dbias);
    ExpectClose(pr.F(got.dweight), dweight, SumAllowance(dtype, s.M + 1, dweight, dweight_mag),
                What(pr, allow_fused, "dweight" + what));
    ExpectClose(pr.F(got.dbias), dbias, SumAllowance(dtype, s.M + 1, dbias, dbias_mag),
                What(pr, allow_fused, "dbias" + what));
  }
}

// Multiples of 1/64 times multiples of 1/64 are multiples of 2^-12, and
// every sum here stays below 2^12 in magnitude: all fp32 partial sums are
// exact in any order, on either side. A result rounded once from fp32 is
// then bitwise the reference's, while a 16-bit intermediate (the product
// rounded before bias or C_old is added, split-K partial sums added in the
// output type) shows up as a mismatch wherever it costs accuracy. GELU
// outputs are left out (tanh is not exact), their inputs are not. A
// workspace of a few rows forces the staged path through many chunks.
TEST_P(MatmulGpuTest, ExactSumsAreRoundedOnce) {
  const auto [dtype, shape, allow_fused] = GetParam();
  const Problem pr(shape, dtype, /*dyadic=*/true);
  const Shape s = pr.s;
  const size_t few_rows = std::max<size_t>(3 * std::max(s.N, s.K) * sizeof(float),
                                           MatmulBiasGradWorkspaceBytes(s.M, s.N));
  for (const size_t workspace : {kWorkspaceBytes, few_rows}) {
    const std::string ws = absl::StrCat(" workspace ", workspace);
    for (const bool with_bias : {false, true}) {
      for (const bool with_gelu : {false, true}) {
        const ForwardResult ref = CpuForward(pr, with_bias, with_gelu);
        const ForwardResult got = GpuForward(pr, with_bias, with_gelu, allow_fused, workspace);
        const std::string what = absl::StrCat(with_bias ? " +bias" : "", ws);
        if (with_gelu) {
          EXPECT_EQ(pr.F(got.pre_gelu), pr.F(ref.pre_gelu))
              << What(pr, allow_fused, "pre_gelu +gelu" + what);
        } else {
          EXPECT_EQ(pr.F(got.out), pr.F(ref.out)) << What(pr, allow_fused, "out" + what);
        }
      }
    }
    const BackwardResult ref = CpuBackward(pr, /*with_gelu=*/false);
    const BackwardResult got = GpuBackward(pr, /*with_gelu=*/false, allow_fused, workspace);
    EXPECT_EQ(pr.F(got.dinp), pr.F(ref.dinp)) << What(pr, allow_fused, "dinp" + ws);
    EXPECT_EQ(pr.F(got.dweight), pr.F(ref.dweight)) << What(pr, allow_fused, "dweight" + ws);
    EXPECT_EQ(pr.F(got.dbias), pr.F(ref.dbias)) << What(pr, allow_fused, "dbias" + ws);
  }
}

// accumulate = false (a gradient buffer known to hold zeros): dweight and
// dbias overwrite what was there (NaN here, so a read of it shows) and match
// the CPU reference accumulating onto zeros: within the sum allowance on
// random data, bitwise on exact (dyadic) data, where one rounding from fp32
// is all either side may do.
TEST_P(MatmulGpuTest, OverwrittenParameterGradientsIgnoreOldContents) {
  const auto [dtype, shape, allow_fused] = GetParam();
  for (const bool dyadic : {false, true}) {
    Problem pr(shape, dtype, dyadic);
    const Shape s = pr.s;
    std::fill(pr.dweight0.begin(), pr.dweight0.end(), 0);
    std::fill(pr.dbias0.begin(), pr.dbias0.end(), 0);
    const BackwardResult ref = CpuBackward(pr, /*with_gelu=*/false);
    Problem poisoned = pr;
    std::fill(poisoned.dweight0.begin(), poisoned.dweight0.end(), 0xff);
    std::fill(poisoned.dbias0.begin(), poisoned.dbias0.end(), 0xff);
    const BackwardResult got = GpuBackward(poisoned, /*with_gelu=*/false, allow_fused,
                                           kWorkspaceBytes, /*accumulate=*/false);
    const std::string what = dyadic ? " overwritten, exact data" : " overwritten";
    const std::vector<float> dweight = pr.F(ref.dweight), dbias = pr.F(ref.dbias);
    if (dyadic) {
      EXPECT_EQ(pr.F(got.dweight), dweight) << What(pr, allow_fused, "dweight" + what);
      EXPECT_EQ(pr.F(got.dbias), dbias) << What(pr, allow_fused, "dbias" + what);
    } else {
      const BackwardResult magnitude = BackwardMagnitude(pr);
      ExpectClose(pr.F(got.dweight), dweight,
                  SumAllowance(dtype, s.M, dweight, F32(magnitude.dweight)),
                  What(pr, allow_fused, "dweight" + what));
      ExpectClose(pr.F(got.dbias), dbias, SumAllowance(dtype, s.M, dbias, F32(magnitude.dbias)),
                  What(pr, allow_fused, "dbias" + what));
    }
  }
}

TEST_P(MatmulGpuTest, SameInputsGiveSameBits) {
  const auto [dtype, shape, allow_fused] = GetParam();
  const Problem pr(shape, dtype);
  const ForwardResult f1 = GpuForward(pr, true, true, allow_fused);
  const ForwardResult f2 = GpuForward(pr, true, true, allow_fused);
  EXPECT_EQ(f1.out, f2.out);
  EXPECT_EQ(f1.pre_gelu, f2.pre_gelu);
  const BackwardResult b1 = GpuBackward(pr, true, allow_fused);
  const BackwardResult b2 = GpuBackward(pr, true, allow_fused);
  EXPECT_EQ(b1.dinp, b2.dinp);
  EXPECT_EQ(b1.dweight, b2.dweight);
  EXPECT_EQ(b1.dbias, b2.dbias);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, MatmulGpuTest,
    ::testing::Combine(::testing::Values(DType::kFloat32, DType::kFloat16, DType::kBFloat16),
                       ::testing::Values(Shape{1, 1, 1}, Shape{5, 7, 3}, Shape{37, 129, 65},
                                         Shape{8, 16, 24}, Shape{33, 40, 17}, Shape{300, 64, 128},
                                         Shape{256, 3072, 768}, Shape{256, 768, 3072}),
                       ::testing::Bool()),
    [](const ::testing::TestParamInfo<Param>& info) {
      const Shape s = std::get<1>(info.param);
      return absl::StrCat(DTypeName(std::get<0>(info.param)), "_M", s.M, "N", s.N, "K", s.K,
                          std::get<2>(info.param) ? "_fused" : "_unfused");
    });

// ---------------------------------------------------------------- others --

class MatmulGpuPathTest : public MatmulGpuFixture, public ::testing::Test {
 protected:
  void SetUp() override { Init(); }
  void TearDown() override { Destroy(); }
};

// GPT-2's MLP shapes are what the epilogues exist for: a silent fallback to
// the unfused path there would cost a pass over the activations.
TEST_F(MatmulGpuPathTest, Gpt2ShapesUseFusedEpilogues) {
  for (const DType dtype : {DType::kFloat16, DType::kBFloat16}) {
    for (const Shape s : {Shape{256, 3072, 768}, Shape{256, 768, 3072}}) {
      const Problem pr(s, dtype);
      DeviceBuffer inp = Upload(pr.inp), weight = Upload(pr.weight), bias = Upload(pr.bias),
                   dout = Upload(pr.dout), pre = Upload(pr.pre), out = Alloc(pr.Bytes(s.M * s.N)),
                   pre_gelu = Alloc(pr.Bytes(s.M * s.N)), dinp = Alloc(pr.Bytes(s.M * s.K));
      MatmulForwardParams f;
      f.inp = inp.get();
      f.weight = weight.get();
      f.bias = bias.get();
      f.out = out.get();
      f.pre_gelu = pre_gelu.get();
      f.M = s.M;
      f.N = s.N;
      f.K = s.K;
      f.dtype = dtype;
      bool fused = false;
      MatmulCudaOptions o;
      o.used_fused_epilogue = &fused;
      ASSERT_TRUE(MatmulForwardCuda(ctx_, f, o).ok());
      EXPECT_TRUE(fused) << "GELU_AUX_BIAS " << DTypeName(dtype) << " N=" << s.N;
      f.pre_gelu = nullptr;
      fused = false;
      ASSERT_TRUE(MatmulForwardCuda(ctx_, f, o).ok());
      EXPECT_TRUE(fused) << "BIAS " << DTypeName(dtype) << " N=" << s.N;
      MatmulBackwardParams b;
      b.dout = dout.get();
      b.weight = weight.get();
      b.dinp = dinp.get();
      b.inp_pre_gelu = pre.get();
      b.M = s.M;
      b.N = s.N;
      b.K = s.K;
      b.dtype = dtype;
      fused = false;
      ASSERT_TRUE(MatmulBackwardCuda(ctx_, b, o).ok());
      EXPECT_TRUE(fused) << "DGELU " << DTypeName(dtype) << " K=" << s.K;
      ASSERT_EQ(cudaStreamSynchronize(stream_), cudaSuccess);
    }
  }
}

// GELU's aux leading dimension must be a multiple of 8 for cuBLASLt: N = 129
// has to take the unfused path, and says so.
TEST_F(MatmulGpuPathTest, GeluWithUnalignedWidthFallsBackToUnfused) {
  const Problem pr(Shape{37, 129, 65}, DType::kBFloat16);
  const Shape s = pr.s;
  DeviceBuffer inp = Upload(pr.inp), weight = Upload(pr.weight), bias = Upload(pr.bias),
               out = Alloc(pr.Bytes(s.M * s.N)), pre_gelu = Alloc(pr.Bytes(s.M * s.N));
  MatmulForwardParams f;
  f.inp = inp.get();
  f.weight = weight.get();
  f.bias = bias.get();
  f.out = out.get();
  f.pre_gelu = pre_gelu.get();
  f.M = s.M;
  f.N = s.N;
  f.K = s.K;
  f.dtype = pr.dtype;
  bool fused = true;
  MatmulCudaOptions o;
  o.used_fused_epilogue = &fused;
  ASSERT_TRUE(MatmulForwardCuda(ctx_, f, o).ok());
  EXPECT_FALSE(fused);
  ASSERT_EQ(cudaStreamSynchronize(stream_), cudaSuccess);
}

TEST_F(MatmulGpuPathTest, TooSmallWorkspaceForDbiasIsResourceExhausted) {
  const Problem pr(Shape{600, 40, 8}, DType::kFloat16);
  const Shape s = pr.s;
  DeviceBuffer dout = Upload(pr.dout), dbias = Upload(pr.dbias0);
  MatmulBackwardParams b;
  b.dout = dout.get();
  b.dbias = dbias.get();
  b.M = s.M;
  b.N = s.N;
  b.K = s.K;
  b.dtype = pr.dtype;
  OpContext ctx = ctx_;
  ctx.workspace_bytes = MatmulBiasGradWorkspaceBytes(s.M, s.N) - 1;
  const absl::Status st = MatmulBackward(ctx, b);
  EXPECT_EQ(st.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(st.message().find("workspace"), std::string::npos) << st;
  // Nothing was enqueued: dbias is untouched.
  EXPECT_EQ(Download(dbias, pr.Bytes(s.N)), pr.dbias0);
}

// A 16-bit result needing the unfused epilogue or dweight's accumulation is
// staged in fp32 in the workspace; without room for one row of it the op
// says so before enqueueing anything.
TEST_F(MatmulGpuPathTest, SixteenBitStagingWithoutRoomForARowIsResourceExhausted) {
  const Problem pr(Shape{4, 40, 24}, DType::kFloat16);
  const Shape s = pr.s;
  const std::vector<uint8_t> sentinel(pr.Bytes(s.M * s.N), 0x3c);
  DeviceBuffer inp = Upload(pr.inp), weight = Upload(pr.weight), bias = Upload(pr.bias),
               out = Upload(sentinel), dout = Upload(pr.dout), dweight = Upload(pr.dweight0);
  MatmulForwardParams f;
  f.inp = inp.get();
  f.weight = weight.get();
  f.bias = bias.get();
  f.out = out.get();
  f.M = s.M;
  f.N = s.N;
  f.K = s.K;
  f.dtype = pr.dtype;
  OpContext ctx = ctx_;
  ctx.workspace_bytes = s.N * sizeof(float) - 1;
  MatmulCudaOptions unfused;
  unfused.allow_fused_epilogue = false;
  absl::Status st = MatmulForwardCuda(ctx, f, unfused);
  EXPECT_EQ(st.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(st.message().find("workspace"), std::string::npos) << st;
  EXPECT_EQ(Download(out, pr.Bytes(s.M * s.N)), sentinel);

  MatmulBackwardParams b;
  b.dout = dout.get();
  b.inp = inp.get();
  b.dweight = dweight.get();
  b.M = s.M;
  b.N = s.N;
  b.K = s.K;
  b.dtype = pr.dtype;
  ctx.workspace_bytes = s.K * sizeof(float) - 1;
  st = MatmulBackward(ctx, b);
  EXPECT_EQ(st.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(st.message().find("workspace"), std::string::npos) << st;
  EXPECT_EQ(Download(dweight, pr.Bytes(s.N * s.K)), pr.dweight0);
}

double MaxError(const std::vector<float>& got, const std::vector<double>& exact) {
  double worst = 0;
  for (size_t i = 0; i < got.size(); ++i) worst = std::max(worst, std::abs(got[i] - exact[i]));
  return worst;
}

// STYLE.md: a fused 16-bit kernel's error is at most about twice the
// unfused computation's. Worst errors against double precision on the same
// 16-bit inputs, at GPT-2's MLP shapes (where Gpt2ShapesUseFusedEpilogues
// shows the epilogues fuse). The unfused path rounds once, so its worst is
// half an ulp of the largest outputs. The fused DGELU measured 2.06x (fp16)
// and 2.03x (bf16) on H100, as if it rounded the product before scaling it
// by gelu': a relative error that cancellation cannot magnify, so "about
// twice" gets a little room.
constexpr double kAboutTwice = 2.25;

TEST_F(MatmulGpuPathTest, FusedErrorIsAtMostTwiceUnfused) {
  for (const DType dtype : {DType::kFloat16, DType::kBFloat16}) {
    for (const Shape s : {Shape{256, 3072, 768}, Shape{256, 768, 3072}}) {
      const Problem pr(s, dtype);
      const std::vector<float> inp = pr.F(pr.inp), weight = pr.F(pr.weight),
                               bias = pr.F(pr.bias), dout = pr.F(pr.dout), pre = pr.F(pr.pre);
      const std::vector<double> inp_d(inp.begin(), inp.end()),
          weight_d(weight.begin(), weight.end()), dout_d(dout.begin(), dout.end());
      std::vector<double> weight_t(s.K * s.N);
      for (int64_t n = 0; n < s.N; ++n) {
        for (int64_t k = 0; k < s.K; ++k) weight_t[k * s.N + n] = weight[n * s.K + k];
      }
      std::vector<double> z = GemmRef<double>(false, true, s.M, s.N, s.K, inp_d.data(),
                                              weight_d.data());
      std::vector<double> gelu(z.size());
      for (size_t i = 0; i < z.size(); ++i) {
        z[i] += bias[i % s.N];
        gelu[i] = GeluValue(z[i]);
      }
      std::vector<double> dinp = GemmRef<double>(false, true, s.M, s.K, s.N, dout_d.data(),
                                                 weight_t.data());
      for (size_t i = 0; i < dinp.size(); ++i) dinp[i] *= GeluGrad(double{pre[i]});

      const ForwardResult bias_f = GpuForward(pr, true, false, true);
      const ForwardResult bias_u = GpuForward(pr, true, false, false);
      const ForwardResult gelu_f = GpuForward(pr, true, true, true);
      const ForwardResult gelu_u = GpuForward(pr, true, true, false);
      const BackwardResult back_f = GpuBackward(pr, true, true);
      const BackwardResult back_u = GpuBackward(pr, true, false);
      const std::string name = absl::StrCat(DTypeName(dtype), " M=", s.M, " N=", s.N, " K=", s.K);
      const struct {
        const char* what;
        const std::vector<uint8_t>& fused;
        const std::vector<uint8_t>& unfused;
        const std::vector<double>& exact;
      } checks[] = {{"out +bias", bias_f.out, bias_u.out, z},
                    {"pre_gelu +bias +gelu", gelu_f.pre_gelu, gelu_u.pre_gelu, z},
                    {"out +bias +gelu", gelu_f.out, gelu_u.out, gelu},
                    {"dinp (gelu input)", back_f.dinp, back_u.dinp, dinp}};
      for (const auto& c : checks) {
        const double fused = MaxError(pr.F(c.fused), c.exact);
        const double unfused = MaxError(pr.F(c.unfused), c.exact);
        EXPECT_LE(fused, kAboutTwice * unfused) << c.what << " " << name << ": fused max error "
                                                << fused << ", unfused " << unfused;
      }
    }
  }
}

TEST_F(MatmulGpuPathTest, MissingCublasLtHandleIsInvalidArgument) {
  const Problem pr(Shape{4, 8, 8}, DType::kFloat32);
  DeviceBuffer inp = Upload(pr.inp), weight = Upload(pr.weight), out = Alloc(pr.Bytes(32));
  MatmulForwardParams f;
  f.inp = inp.get();
  f.weight = weight.get();
  f.out = out.get();
  f.M = 4;
  f.N = 8;
  f.K = 8;
  OpContext ctx = ctx_;
  ctx.cublaslt_handle = nullptr;
  const absl::Status st = MatmulForward(ctx, f);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("cublaslt_handle"), std::string::npos) << st;
}

}  // namespace
}  // namespace zt::kernels
