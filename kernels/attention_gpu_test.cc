// Needs a GPU. The CUDA attention kernels against the CPU reference in the
// same storage dtype, on identical inputs.
//
// Tolerance |gpu - ref| <= atol + |ref| * 2 * eps(dtype). Both sides compute
// in fp32 from the same stored inputs and round once on store, so they differ
// by fp32 summation order and exp implementation (atol: up to 1024 terms of
// magnitude <= ~2, ~1e-6 typical; 2e-5 for out/lse, 1e-4 for gradients, which
// sum over up to T rows) plus at most one rounding step of the storage type
// (<= eps * |ref|; doubled for slack). An indexing or masking bug gives
// errors of order 0.1.
//
// fp16/bf16 heads of 64 or 128 channels run on tensor cores, which round one
// more intermediate than the reference: the probabilities P before P V (and
// P^T dO), and dS before dS^T Q and dS K, are rounded to the storage type to
// become mma operands. Rounding x changes it by at most u|x| + s (u = eps / 2,
// round to nearest; s = half the subnormal spacing), so an output that sums
// x * y over terms may move by sum (u|x| + s)|y|. TensorCoreSlack computes
// that bound per element, in double, from the reference's own P and dS, and
// the comparison adds it to the tolerance above. For bf16 at T = 1024 it is
// around 1e-3..1e-2 for out (|v| <= 1.5): still far below an indexing bug.

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kernels/attention.h"
#include "core/device.h"
#include "core/dtype.h"
#include "kernels/op_context.h"
#include "kernels/testutil.h"

namespace zt::kernels {
namespace {

using ::zt::kernels::testing::ExpectAllClose;
using ::zt::kernels::testing::FromBytes;
using ::zt::kernels::testing::RandomFloats;
using ::zt::kernels::testing::ToBytes;

AttentionParams Params(int64_t B, int64_t T, int64_t C, int64_t NH, DType dtype) {
  AttentionParams p;
  p.B = B;
  p.T = T;
  p.C = C;
  p.NH = NH;
  p.dtype = dtype;
  return p;
}

// Mirrors UseTensorCores in attention.cu (the test's buffers all come from
// the CUDA allocator, so the alignment condition holds).
bool UsesTensorCores(const AttentionParams& p) {
  const int64_t hs = p.C / p.NH;
  return (p.dtype == DType::kFloat16 || p.dtype == DType::kBFloat16) && (hs == 64 || hs == 128);
}

struct Slack {
  std::vector<double> out, dqkv;  // same layouts as out and dqkv
};

// Per-element bound on what rounding P and dS to 16 bits can move each
// output (see the file comment). Inputs are the stored values as float; out
// and lse are the reference forward's, as the GPU backward is fed them.
Slack TensorCoreSlack(const AttentionParams& p, const std::vector<float>& qkv,
                      const std::vector<float>& dout, const std::vector<float>& out,
                      const std::vector<float>& lse) {
  const int64_t T = p.T, C = p.C, hs = p.C / p.NH;
  const double u = DTypeEpsilon(p.dtype) / 2;
  // Half the smallest subnormal: 2^-25 for fp16, 2^-134 for bf16.
  const double s = p.dtype == DType::kFloat16 ? std::ldexp(1.0, -25) : std::ldexp(1.0, -134);
  const double scale = 1.0 / std::sqrt(static_cast<double>(hs));
  Slack slack;
  slack.out.assign(p.B * T * C, 0.0);
  slack.dqkv.assign(p.B * T * 3 * C, 0.0);
  const auto head = [&](int64_t b, int64_t h) {
    const auto q = [&](int64_t t) { return &qkv[(b * T + t) * 3 * C + h * hs]; };
    const auto k = [&](int64_t t) { return q(t) + C; };
    const auto v = [&](int64_t t) { return q(t) + 2 * C; };
    const auto row = [&](const std::vector<float>& x, int64_t t) {
      return &x[(b * T + t) * C + h * hs];
    };
    for (int64_t i = 0; i < T; ++i) {
      double row_dot = 0;
      for (int64_t d = 0; d < hs; ++d) row_dot += double{row(dout, i)[d]} * row(out, i)[d];
      const double row_lse = lse[(b * p.NH + h) * T + i];
      double* out_s = &slack.out[(b * T + i) * C + h * hs];
      double* dq_s = &slack.dqkv[(b * T + i) * 3 * C + h * hs];
      for (int64_t j = 0; j <= i; ++j) {
        double score = 0, dp = 0;
        for (int64_t d = 0; d < hs; ++d) {
          score += double{q(i)[d]} * k(j)[d];
          dp += double{row(dout, i)[d]} * v(j)[d];
        }
        const double prob = std::exp(scale * score - row_lse);
        const double ds = prob * (dp - row_dot);
        const double p_err = u * prob + s, ds_err = scale * (u * std::abs(ds) + s);
        double* dk_s = &slack.dqkv[(b * T + j) * 3 * C + C + h * hs];
        double* dv_s = dk_s + C;
        for (int64_t d = 0; d < hs; ++d) {
          out_s[d] += p_err * std::abs(v(j)[d]);
          dv_s[d] += p_err * std::abs(row(dout, i)[d]);
          dk_s[d] += ds_err * std::abs(q(i)[d]);
          dq_s[d] += ds_err * std::abs(k(j)[d]);
        }
      }
    }
  };
  // Heads touch disjoint elements, so they can run on separate threads.
  const int64_t pairs = p.B * p.NH;
  const int64_t threads =
      std::min<int64_t>(pairs, std::max(1u, std::thread::hardware_concurrency()));
  std::vector<std::thread> workers;
  for (int64_t w = 0; w < threads; ++w) {
    workers.emplace_back([&, w] {
      for (int64_t i = w; i < pairs; i += threads) head(i / p.NH, i % p.NH);
    });
  }
  for (auto& t : workers) t.join();
  return slack;
}

// |got - want| <= atol + rtol |want| + slack[i] for every element.
void ExpectCloseWithSlack(const std::vector<float>& got, const std::vector<float>& want,
                          double atol, double rtol, const std::vector<double>& slack,
                          const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  ASSERT_EQ(slack.size(), want.size()) << what;
  double worst = 0, worst_err = 0, max_slack = 0;
  size_t worst_i = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_FALSE(std::isnan(got[i])) << what << " NaN at " << i;
    const double err = std::abs(double{got[i]} - want[i]);
    const double excess = err - (atol + rtol * std::abs(want[i]) + slack[i]);
    max_slack = std::max(max_slack, slack[i]);
    worst_err = std::max(worst_err, err);
    if (excess > worst) {
      worst = excess;
      worst_i = i;
    }
  }
  EXPECT_EQ(worst, 0.0) << what << ": index " << worst_i << " got " << got[worst_i] << " want "
                        << want[worst_i] << " (atol " << atol << ", rtol " << rtol << ", slack "
                        << slack[worst_i] << ")";
  // Logged so a run shows how much of the budget the 16-bit rounding used.
  std::printf("%s: max |err| %.3g, max slack %.3g\n", what.c_str(), worst_err, max_slack);
}

class AttentionGpuTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_GT(CudaDeviceCount(), 0);
    auto alloc = NewCudaAllocator(0);
    ASSERT_TRUE(alloc.ok()) << alloc.status();
    alloc_ = std::move(*alloc);
    auto stream = NewStream(Device::Cuda(0));
    ASSERT_TRUE(stream.ok()) << stream.status();
    stream_ = std::move(*stream);
    ctx_.device = Device::Cuda(0);
    ctx_.stream = static_cast<cudaStream_t>(stream_->native_handle());
  }

  Buffer Upload(const void* host, size_t bytes) {
    auto buf = Buffer::Allocate(*alloc_, bytes, MemoryCategory::kActivations);
    EXPECT_TRUE(buf.ok()) << buf.status();
    EXPECT_TRUE(
        CopyBytes(buf->data(), Device::Cuda(0), host, Device::Cpu(), bytes, stream_.get()).ok());
    EXPECT_TRUE(stream_->Synchronize().ok());
    return std::move(*buf);
  }

  // Device memory filled with 0xff bytes (NaN in every dtype), so an element
  // a kernel forgets to write fails the comparison.
  Buffer Poisoned(size_t bytes) {
    const std::vector<uint8_t> nan(bytes, 0xff);
    return Upload(nan.data(), bytes);
  }

  std::vector<uint8_t> Download(const Buffer& buf) {
    std::vector<uint8_t> host(buf.bytes());
    EXPECT_TRUE(CopyBytes(host.data(), Device::Cpu(), buf.data(), Device::Cuda(0), buf.bytes(),
                          stream_.get())
                    .ok());
    EXPECT_TRUE(stream_->Synchronize().ok());
    return host;
  }

  // Runs forward and backward on the GPU and on the CPU and compares; the
  // backward on both sides is fed the CPU forward's out and lse so that it is
  // checked on its own. Then checks the GPU gives the same bits twice.
  void CheckAgainstCpu(const AttentionParams& p) {
    const std::string what =
        absl::StrCat(DTypeName(p.dtype), " B=", p.B, " T=", p.T, " C=", p.C, " NH=", p.NH);
    SCOPED_TRACE(what);
    const size_t n_qkv = p.B * p.T * 3 * p.C, n_out = p.B * p.T * p.C, n_lse = p.B * p.NH * p.T;
    const size_t es = DTypeSize(p.dtype);
    const auto qkv = ToBytes(RandomFloats(n_qkv, 21, -1.5f, 1.5f), p.dtype);
    const auto dout = ToBytes(RandomFloats(n_out, 22), p.dtype);
    const double rtol = 2 * DTypeEpsilon(p.dtype);

    // CPU reference.
    const OpContext cpu = OpContext::Cpu();
    std::vector<uint8_t> out_ref(n_out * es), dqkv_ref(n_qkv * es);
    std::vector<float> lse_ref(n_lse);
    ASSERT_TRUE(AttentionForward(cpu, p, qkv.data(), out_ref.data(), lse_ref.data()).ok());
    ASSERT_TRUE(AttentionBackward(cpu, p, dout.data(), qkv.data(), out_ref.data(), lse_ref.data(),
                                  dqkv_ref.data())
                    .ok());

    // GPU.
    Buffer d_qkv = Upload(qkv.data(), qkv.size());
    Buffer d_dout = Upload(dout.data(), dout.size());
    Buffer d_out_ref = Upload(out_ref.data(), out_ref.size());
    Buffer d_lse_ref = Upload(lse_ref.data(), n_lse * 4);
    Buffer d_out = Poisoned(n_out * es), d_lse = Poisoned(n_lse * 4);
    Buffer d_dqkv = Poisoned(n_qkv * es);
    Buffer d_ws = Poisoned(AttentionBackwardWorkspaceBytes(p));
    OpContext ctx = ctx_;
    ctx.workspace = d_ws.data();
    ctx.workspace_bytes = d_ws.bytes();

    ASSERT_TRUE(AttentionForward(ctx, p, d_qkv.data(), d_out.data(), d_lse.as<float>()).ok());
    ASSERT_TRUE(AttentionBackward(ctx, p, d_dout.data(), d_qkv.data(), d_out_ref.data(),
                                  d_lse_ref.as<float>(), d_dqkv.data())
                    .ok());
    const auto out1 = Download(d_out), lse1 = Download(d_lse), dqkv1 = Download(d_dqkv);
    ExpectAllClose(FromBytes(lse1.data(), n_lse, DType::kFloat32), lse_ref, 2e-5,
                   2 * DTypeEpsilon(DType::kFloat32), "lse " + what);
    if (UsesTensorCores(p)) {
      const Slack slack = TensorCoreSlack(p, FromBytes(qkv.data(), n_qkv, p.dtype),
                                          FromBytes(dout.data(), n_out, p.dtype),
                                          FromBytes(out_ref.data(), n_out, p.dtype), lse_ref);
      ExpectCloseWithSlack(FromBytes(out1.data(), n_out, p.dtype),
                           FromBytes(out_ref.data(), n_out, p.dtype), 2e-5, rtol, slack.out,
                           "out (tensor cores) " + what);
      ExpectCloseWithSlack(FromBytes(dqkv1.data(), n_qkv, p.dtype),
                           FromBytes(dqkv_ref.data(), n_qkv, p.dtype), 1e-4, rtol, slack.dqkv,
                           "dqkv (tensor cores) " + what);
    } else {
      ExpectAllClose(FromBytes(out1.data(), n_out, p.dtype),
                     FromBytes(out_ref.data(), n_out, p.dtype), 2e-5, rtol, "out " + what);
      ExpectAllClose(FromBytes(dqkv1.data(), n_qkv, p.dtype),
                     FromBytes(dqkv_ref.data(), n_qkv, p.dtype), 1e-4, rtol, "dqkv " + what);
    }

    // Same inputs, fresh poison: same bits (and every element rewritten).
    Buffer d_out2 = Poisoned(n_out * es), d_lse2 = Poisoned(n_lse * 4);
    Buffer d_dqkv2 = Poisoned(n_qkv * es);
    ASSERT_TRUE(AttentionForward(ctx, p, d_qkv.data(), d_out2.data(), d_lse2.as<float>()).ok());
    ASSERT_TRUE(AttentionBackward(ctx, p, d_dout.data(), d_qkv.data(), d_out_ref.data(),
                                  d_lse_ref.as<float>(), d_dqkv2.data())
                    .ok());
    EXPECT_TRUE(Download(d_out2) == out1) << "out bits differ between runs";
    EXPECT_TRUE(Download(d_lse2) == lse1) << "lse bits differ between runs";
    EXPECT_TRUE(Download(d_dqkv2) == dqkv1) << "dqkv bits differ between runs";
  }

  std::unique_ptr<Allocator> alloc_;
  std::unique_ptr<Stream> stream_;
  OpContext ctx_;
};

constexpr DType kDTypes[] = {DType::kFloat32, DType::kFloat16, DType::kBFloat16};

// GPT-2 124M heads (hs = 64) with T = 1, not a multiple of the 32-row tile,
// just past one, and the full context.
TEST_F(AttentionGpuTest, Gpt2HeadsMatchCpuReference) {
  for (DType dtype : kDTypes) {
    for (int64_t T : {1, 37, 130, 1024}) {
      CheckAgainstCpu(Params(T == 37 ? 2 : 1, T, 768, 12, dtype));
    }
  }
}

// 32 and 128 fill their padded width; 20, 48 and 200 exercise the zero
// padding up to 32, 64 and 256.
TEST_F(AttentionGpuTest, OtherHeadSizesMatchCpuReference) {
  for (DType dtype : kDTypes) {
    CheckAgainstCpu(Params(2, 70, 128, 4, dtype));   // hs 32
    CheckAgainstCpu(Params(1, 100, 256, 2, dtype));  // hs 128
    CheckAgainstCpu(Params(2, 300, 512, 4, dtype));  // hs 128, several 64-row tiles
    CheckAgainstCpu(Params(1, 33, 40, 2, dtype));    // hs 20
    CheckAgainstCpu(Params(1, 45, 96, 2, dtype));    // hs 48
    CheckAgainstCpu(Params(1, 65, 400, 2, dtype));   // hs 200
    CheckAgainstCpu(Params(1, 40, 512, 2, dtype));   // hs 256
  }
}

TEST_F(AttentionGpuTest, HeadSizeAbove256IsUnimplemented) {
  const AttentionParams p = Params(1, 4, 2 * 320, 2, DType::kFloat32);
  Buffer qkv = Poisoned(p.T * 3 * p.C * 4), out = Poisoned(p.T * p.C * 4);
  Buffer lse = Poisoned(p.NH * p.T * 4);
  const absl::Status s = AttentionForward(ctx_, p, qkv.data(), out.data(), lse.as<float>());
  EXPECT_EQ(s.code(), absl::StatusCode::kUnimplemented) << s;
  EXPECT_NE(s.message().find("head size"), std::string::npos) << s;
}

TEST_F(AttentionGpuTest, BackwardWithTooSmallWorkspaceIsResourceExhausted) {
  const AttentionParams p = Params(1, 8, 64, 2, DType::kFloat32);
  Buffer buf = Poisoned(p.T * 3 * p.C * 4);
  Buffer ws = Poisoned(AttentionBackwardWorkspaceBytes(p));
  OpContext ctx = ctx_;
  ctx.workspace = ws.data();
  ctx.workspace_bytes = ws.bytes() - 4;
  const absl::Status s =
      AttentionBackward(ctx, p, buf.data(), buf.data(), buf.data(), buf.as<float>(), buf.data());
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  EXPECT_NE(s.message().find("workspace"), std::string::npos) << s;
}

}  // namespace
}  // namespace zt::kernels
