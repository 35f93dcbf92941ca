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

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kernels/attention.h"
#include "kernels/core/device.h"
#include "kernels/core/dtype.h"
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
    ExpectAllClose(FromBytes(out1.data(), n_out, p.dtype),
                   FromBytes(out_ref.data(), n_out, p.dtype), 2e-5, rtol, "out " + what);
    ExpectAllClose(FromBytes(lse1.data(), n_lse, DType::kFloat32), lse_ref, 2e-5,
                   2 * DTypeEpsilon(DType::kFloat32), "lse " + what);
    ExpectAllClose(FromBytes(dqkv1.data(), n_qkv, p.dtype),
                   FromBytes(dqkv_ref.data(), n_qkv, p.dtype), 1e-4, rtol, "dqkv " + what);

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
