// Needs a GPU: the cuBLASLt linear layer against the CPU reference for every
// op, dtype and a range of shapes (odd sizes, sizes that are not multiples of
// 8 or 128, GPT-2's MLP), through both the fused-epilogue and the unfused
// paths; bitwise reproducibility; workspace errors.
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
#include "kernels/core/dtype.h"
#include "kernels/matmul.h"
#include "kernels/matmul_cuda.h"
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

double Rms(const std::vector<float>& v) {
  double sum = 0;
  for (float x : v) sum += double{x} * x;
  return v.empty() ? 0 : std::sqrt(sum / v.size());
}

// Tolerance for a result that is an fp32 sum of `terms` products, computed
// in a different order on each side: the fp32 rounding error grows like
// sqrt(terms) times the size of the partial sums, about the result's RMS
// (atol); each side then rounds to the storage type, so 16-bit results may
// sit on neighbouring values, one ulp = |ref| * eps(dtype) (rtol).
struct Tolerance {
  double atol, rtol;
};
Tolerance SumTolerance(DType dtype, int64_t terms, const std::vector<float>& ref) {
  const double atol =
      4 * kEps32 * std::sqrt(static_cast<double>(std::max<int64_t>(terms, 1))) * (Rms(ref) + 1e-3);
  return {atol, 2 * DTypeEpsilon(dtype)};
}

// cuBLASLt does not document its GELU's accuracy; a hardware tanh
// approximation (relative error about 2^-11) is plausible. `extra` holds,
// per element, what such a tanh error of 2^-10 could move the result.
constexpr double kTanhAllowance = 1.0 / 1024;

void ExpectClose(const std::vector<float>& got, const std::vector<float>& want, Tolerance tol,
                 const std::vector<double>& extra, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  double worst = 0;
  size_t worst_i = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_FALSE(std::isnan(got[i])) << what << " NaN at " << i;
    const double allowed =
        tol.atol + tol.rtol * std::abs(want[i]) + (extra.empty() ? 0.0 : extra[i]);
    const double excess = std::abs(double{got[i]} - want[i]) - allowed;
    if (excess > worst) {
      worst = excess;
      worst_i = i;
    }
  }
  EXPECT_EQ(worst, 0.0) << what << ": index " << worst_i << " got " << got[worst_i] << " want "
                        << want[worst_i] << " (atol " << tol.atol << ", rtol " << tol.rtol << ")";
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

  cudaStream_t stream_ = nullptr;
  cublasLtHandle_t lt_ = nullptr;
  DeviceBuffer workspace_;
  OpContext ctx_;
};

// Host data of one problem, in the storage dtype. Weights scaled by
// 1/sqrt(K) so pre-activations are O(1) and GELU's curved region is used.
struct Problem {
  Shape s;
  DType dtype;
  std::vector<uint8_t> inp, weight, bias, dout, pre, dweight0, dbias0;
  Problem(Shape shape, DType t) : s(shape), dtype(t) {
    const float w = 2.0f / std::sqrt(static_cast<float>(s.K));
    inp = ToBytes(RandomFloats(s.M * s.K, 1), t);
    weight = ToBytes(RandomFloats(s.N * s.K, 2, -w, w), t);
    bias = ToBytes(RandomFloats(s.N, 3), t);
    dout = ToBytes(RandomFloats(s.M * s.N, 4), t);
    pre = ToBytes(RandomFloats(s.M * s.K, 5, -3, 3), t);
    dweight0 = ToBytes(RandomFloats(s.N * s.K, 6), t);
    dbias0 = ToBytes(RandomFloats(s.N, 7), t);
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

// ----------------------------------------------------------- parametrised --

using Param = std::tuple<DType, Shape, bool>;  // dtype, shape, allow fused.

class MatmulGpuTest : public MatmulGpuFixture, public ::testing::TestWithParam<Param> {
 protected:
  void SetUp() override { Init(); }
  void TearDown() override { Destroy(); }

  // Runs the forward on the GPU (through the public entry when fusion is
  // allowed, through the launcher with fusion off otherwise).
  ForwardResult GpuForward(const Problem& pr, bool with_bias, bool with_gelu, bool allow_fused) {
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
    absl::Status st;
    if (allow_fused) {
      st = MatmulForward(ctx_, p);
    } else {
      MatmulCudaOptions o;
      o.allow_fused_epilogue = false;
      st = MatmulForwardCuda(ctx_, p, o);
    }
    EXPECT_TRUE(st.ok()) << st;
    ForwardResult r;
    r.out = Download(out, pr.Bytes(s.M * s.N));
    if (with_gelu) r.pre_gelu = Download(pre, pr.Bytes(s.M * s.N));
    return r;
  }

  BackwardResult GpuBackward(const Problem& pr, bool with_gelu, bool allow_fused) {
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
    absl::Status st;
    if (allow_fused) {
      st = MatmulBackward(ctx_, p);
    } else {
      MatmulCudaOptions o;
      o.allow_fused_epilogue = false;
      st = MatmulBackwardCuda(ctx_, p, o);
    }
    EXPECT_TRUE(st.ok()) << st;
    return {Download(dinp, pr.Bytes(s.M * s.K)), Download(dweight, pr.Bytes(s.N * s.K)),
            Download(dbias, pr.Bytes(s.N))};
  }
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
    for (const bool with_gelu : {false, true}) {
      std::vector<uint8_t> out_ref(pr.Bytes(s.M * s.N)), pre_ref(pr.Bytes(s.M * s.N));
      MatmulForwardParams p;
      p.inp = pr.inp.data();
      p.weight = pr.weight.data();
      p.bias = with_bias ? pr.bias.data() : nullptr;
      p.out = out_ref.data();
      p.pre_gelu = with_gelu ? pre_ref.data() : nullptr;
      p.M = s.M;
      p.N = s.N;
      p.K = s.K;
      p.dtype = dtype;
      ASSERT_TRUE(MatmulForward(OpContext::Cpu(), p).ok());

      const ForwardResult got = GpuForward(pr, with_bias, with_gelu, allow_fused);
      const std::string what = absl::StrCat(with_bias ? " +bias" : "", with_gelu ? " +gelu" : "");
      if (!with_gelu) {
        const std::vector<float> ref = pr.F(out_ref);
        ExpectClose(pr.F(got.out), ref, SumTolerance(dtype, s.K, ref), {},
                    What(pr, allow_fused, "out" + what));
        continue;
      }
      const std::vector<float> pre = pr.F(pre_ref), out = pr.F(out_ref);
      const Tolerance pre_tol = SumTolerance(dtype, s.K, pre);
      ExpectClose(pr.F(got.pre_gelu), pre, pre_tol, {}, What(pr, allow_fused, "pre_gelu" + what));
      // gelu' <= 1.13 carries the pre-activation error (x2 for margin); the
      // GELU itself may use an approximate tanh when fused.
      std::vector<double> extra(pre.size());
      for (size_t i = 0; i < pre.size(); ++i) {
        extra[i] = 2 * (pre_tol.atol + pre_tol.rtol * std::abs(pre[i])) +
                   (allow_fused ? kTanhAllowance * 0.5 * std::abs(pre[i]) : 0.0);
      }
      ExpectClose(pr.F(got.out), out, {0, 2 * DTypeEpsilon(dtype)}, extra,
                  What(pr, allow_fused, "out" + what));
    }
  }
}

TEST_P(MatmulGpuTest, BackwardMatchesCpuReference) {
  const auto [dtype, shape, allow_fused] = GetParam();
  const Problem pr(shape, dtype);
  const Shape s = pr.s;
  for (const bool with_gelu : {false, true}) {
    BackwardResult ref{std::vector<uint8_t>(pr.Bytes(s.M * s.K)), pr.dweight0, pr.dbias0};
    std::vector<uint8_t> plain_dinp(pr.Bytes(s.M * s.K));
    MatmulBackwardParams p;
    p.dout = pr.dout.data();
    p.inp = pr.inp.data();
    p.weight = pr.weight.data();
    p.dinp = plain_dinp.data();
    p.M = s.M;
    p.N = s.N;
    p.K = s.K;
    p.dtype = dtype;
    ASSERT_TRUE(MatmulBackward(OpContext::Cpu(), p).ok());
    p.dinp = ref.dinp.data();
    p.inp_pre_gelu = with_gelu ? pr.pre.data() : nullptr;
    p.dweight = ref.dweight.data();
    p.dbias = ref.dbias.data();
    ASSERT_TRUE(MatmulBackward(OpContext::Cpu(), p).ok());

    const BackwardResult got = GpuBackward(pr, with_gelu, allow_fused);
    const std::string what = with_gelu ? " (gelu input)" : "";

    const std::vector<float> plain = pr.F(plain_dinp), dinp = pr.F(ref.dinp);
    const std::vector<float> pre = pr.F(pr.pre);
    const Tolerance plain_tol = SumTolerance(dtype, s.N, plain);
    std::vector<double> extra;
    if (with_gelu) {
      // dinp = plain * gelu'(pre): gelu' <= 1.13 scales the product's error;
      // unfused 16-bit rounds the product before scaling (one more ulp); a
      // fused approximate tanh error dt moves gelu' by at most
      // dt (0.5 + 0.8|x| + 0.11|x|^3).
      extra.resize(dinp.size());
      for (size_t i = 0; i < dinp.size(); ++i) {
        const double x = std::abs(pre[i]);
        extra[i] =
            1.2 * (plain_tol.atol + plain_tol.rtol * std::abs(plain[i])) +
            (allow_fused ? kTanhAllowance * std::abs(plain[i]) * (0.5 + 0.8 * x + 0.11 * x * x * x)
                         : 0.0);
      }
    }
    ExpectClose(pr.F(got.dinp), with_gelu ? dinp : plain,
                with_gelu ? Tolerance{0, 2 * DTypeEpsilon(dtype)} : plain_tol, extra,
                What(pr, allow_fused, "dinp" + what));
    const std::vector<float> dweight = pr.F(ref.dweight), dbias = pr.F(ref.dbias);
    ExpectClose(pr.F(got.dweight), dweight, SumTolerance(dtype, s.M, dweight), {},
                What(pr, allow_fused, "dweight" + what));
    ExpectClose(pr.F(got.dbias), dbias, SumTolerance(dtype, s.M, dbias), {},
                What(pr, allow_fused, "dbias" + what));
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
  ctx.workspace_bytes = MatmulBackwardWorkspaceBytes(s.M, s.N) - 1;
  const absl::Status st = MatmulBackward(ctx, b);
  EXPECT_EQ(st.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(st.message().find("workspace"), std::string::npos) << st;
  // Nothing was enqueued: dbias is untouched.
  EXPECT_EQ(Download(dbias, pr.Bytes(s.N)), pr.dbias0);
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
