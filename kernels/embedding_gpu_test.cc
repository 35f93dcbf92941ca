// Needs a GPU. The CUDA embedding against the CPU reference on the same
// storage dtype. Both add in fp32 in the same order (the backward sums a
// token's rows in increasing position order on both sides) and round once,
// so results must agree bit for bit, which is stricter than the usual
// atol + |ref| * eps(dtype) rule.

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "core/device.h"
#include "kernels/embedding.h"
#include "kernels/gpu_testutil.h"
#include "kernels/testutil.h"

namespace zt::kernels {
namespace {

using ::testing::HasSubstr;
using testing::RandomFloats;
using testing::ToBytes;

class EmbeddingGpuTest : public ::testing::Test, public testing::GpuBuffers {};

struct Shape {
  int64_t B, T, C, V;
  int64_t used_vocab;  // tokens are drawn from [0, used_vocab)
  size_t misalign;     // elements by which every T buffer is offset
};

std::string Describe(const Shape& s, DType dtype) {
  return absl::StrCat(DTypeName(dtype), " B=", s.B, " T=", s.T, " C=", s.C, " V=", s.V,
                      " misalign=", s.misalign);
}

// Half the positions share one token so the bucketed backward sees long runs.
std::vector<int32_t> Tokens(const Shape& s, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int32_t> dist(0, static_cast<int32_t>(s.used_vocab - 1));
  std::vector<int32_t> tokens(s.B * s.T);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = i % 2 == 0 ? dist(rng) : tokens[0];
  return tokens;
}

TEST_F(EmbeddingGpuTest, ForwardAndBackwardEqualCpuReferenceBitForBit) {
  const Shape shapes[] = {
      {1, 1, 1, 1, 1, 0},             // everything size 1
      {2, 3, 5, 11, 11, 0},           // odd, scalar path
      {3, 37, 769, 50304, 50257, 0},  // GPT-2 vocab, C not a multiple of 8
      {4, 64, 768, 1000, 1000, 0},    // vectorized path
      {4, 64, 768, 1000, 1000, 1},    // same sizes, misaligned: scalar path
      {2, 1024, 64, 8, 8, 0},         // very long runs of few tokens
      // Sorting: up to 8192 positions one block sorts 8 per thread, up to
      // 16384 16 per thread; beyond, CUB's device sort.
      {9, 1024, 64, 50304, 50257, 0},
      {17, 1024, 16, 1000, 1000, 0},
  };
  for (const Shape& s : shapes) {
    for (DType dtype : {DType::kFloat32, DType::kFloat16, DType::kBFloat16}) {
      SCOPED_TRACE(Describe(s, dtype));
      const size_t es = DTypeSize(dtype), off = s.misalign * es;
      const int64_t maxT = s.T + 1, N = s.B * s.T;
      EmbeddingParams p;
      p.B = s.B;
      p.T = s.T;
      p.C = s.C;
      p.V = s.V;
      p.dtype = dtype;
      const auto tokens = Tokens(s, 1);
      // Host copies carry `misalign` leading elements too, so the same
      // bytes are uploaded and compared.
      auto host = [&](size_t n, uint64_t seed) {
        return ToBytes(RandomFloats(n + s.misalign, seed), dtype);
      };
      const auto wte = host(s.V * s.C, 2), wpe = host(maxT * s.C, 3), dout = host(N * s.C, 4);
      const auto dwte0 = host(s.V * s.C, 5), dwpe0 = host(maxT * s.C, 6);

      std::vector<uint8_t> out_ref(N * s.C * es + off), dwte_ref = dwte0, dwpe_ref = dwpe0;
      ASSERT_TRUE(EmbeddingForward(OpContext::Cpu(), p, tokens.data(), wte.data() + off,
                                   wpe.data() + off, out_ref.data() + off)
                      .ok());
      ASSERT_TRUE(EmbeddingBackward(OpContext::Cpu(), p, tokens.data(), dout.data() + off,
                                    dwte_ref.data() + off, dwpe_ref.data() + off)
                      .ok());

      Buffer d_tokens = Upload(tokens), d_wte = Upload(wte), d_wpe = Upload(wpe);
      Buffer d_dout = Upload(dout), d_out = Alloc(out_ref.size());
      const size_t ws_bytes = EmbeddingBackwardWorkspaceBytes(p);
      ASSERT_GT(ws_bytes, 0u);
      Buffer ws = Alloc(ws_bytes);
      ctx_.workspace = ws.data();
      ctx_.workspace_bytes = ws_bytes;
      ASSERT_TRUE(EmbeddingForward(ctx_, p, d_tokens.as<int32_t>(), d_wte.as<uint8_t>() + off,
                                   d_wpe.as<uint8_t>() + off, d_out.as<uint8_t>() + off)
                      .ok());
      std::vector<uint8_t> dwte_runs[2], dwpe_runs[2];
      for (int run = 0; run < 2; ++run) {
        Buffer d_dwte = Upload(dwte0), d_dwpe = Upload(dwpe0);
        ASSERT_TRUE(EmbeddingBackward(ctx_, p, d_tokens.as<int32_t>(), d_dout.as<uint8_t>() + off,
                                      d_dwte.as<uint8_t>() + off, d_dwpe.as<uint8_t>() + off)
                        .ok());
        dwte_runs[run] = Download(d_dwte, dwte0.size());
        dwpe_runs[run] = Download(d_dwpe, dwpe0.size());
      }
      const auto out = Download(d_out, N * s.C * es, off);
      EXPECT_TRUE(std::equal(out.begin(), out.end(), out_ref.begin() + off)) << "out";
      EXPECT_TRUE(dwte_runs[0] == dwte_ref) << "dwte";
      EXPECT_TRUE(dwpe_runs[0] == dwpe_ref) << "dwpe";
      EXPECT_TRUE(dwte_runs[0] == dwte_runs[1]) << "dwte differs between runs";
      EXPECT_TRUE(dwpe_runs[0] == dwpe_runs[1]) << "dwpe differs between runs";
    }
  }
}

TEST_F(EmbeddingGpuTest, OutOfRangeTokenReadsZeroRowAndIsSkippedInBackward) {
  EmbeddingParams p;
  p.B = 1;
  p.T = 3;
  p.C = 8;
  p.V = 4;
  const std::vector<int32_t> tokens = {1, 4, -3};  // two invalid ids
  const auto wte = RandomFloats(p.V * p.C, 1), wpe = RandomFloats(p.T * p.C, 2);
  const std::vector<float> dout(p.T * p.C, 1.0f), zeros(p.V * p.C, 0.0f);
  Buffer d_tokens = Upload(tokens), d_wte = Upload(wte), d_wpe = Upload(wpe);
  Buffer d_dout = Upload(dout), d_out = Alloc(p.T * p.C * 4), d_dwte = Upload(zeros);
  Buffer d_dwpe = Upload(std::vector<float>(p.T * p.C, 0.0f));
  const size_t ws_bytes = EmbeddingBackwardWorkspaceBytes(p);
  Buffer ws = Alloc(ws_bytes);
  ctx_.workspace = ws.data();
  ctx_.workspace_bytes = ws_bytes;
  ASSERT_TRUE(
      EmbeddingForward(ctx_, p, d_tokens.as<int32_t>(), d_wte.data(), d_wpe.data(), d_out.data())
          .ok());
  ASSERT_TRUE(EmbeddingBackward(ctx_, p, d_tokens.as<int32_t>(), d_dout.data(), d_dwte.data(),
                                d_dwpe.data())
                  .ok());
  const auto out =
      testing::FromBytes(Download(d_out, p.T * p.C * 4).data(), p.T * p.C, DType::kFloat32);
  const auto dwte =
      testing::FromBytes(Download(d_dwte, p.V * p.C * 4).data(), p.V * p.C, DType::kFloat32);
  for (int64_t c = 0; c < p.C; ++c) {
    EXPECT_EQ(out[0 * p.C + c], wte[1 * p.C + c] + wpe[0 * p.C + c]);
    EXPECT_EQ(out[1 * p.C + c], wpe[1 * p.C + c]);
    EXPECT_EQ(out[2 * p.C + c], wpe[2 * p.C + c]);
    for (int64_t v = 0; v < p.V; ++v) EXPECT_EQ(dwte[v * p.C + c], v == 1 ? 1.0f : 0.0f);
  }
}

TEST_F(EmbeddingGpuTest, TooSmallWorkspaceIsResourceExhausted) {
  EmbeddingParams p;
  p.B = 2;
  p.T = 5;
  p.C = 8;
  p.V = 16;
  const size_t ws_bytes = EmbeddingBackwardWorkspaceBytes(p);
  Buffer ws = Alloc(ws_bytes);
  Buffer d_tokens = Upload(std::vector<int32_t>(10, 3)), d_dout = Alloc(10 * 8 * 4);
  Buffer d_dwte = Alloc(16 * 8 * 4), d_dwpe = Alloc(5 * 8 * 4);
  ctx_.workspace = ws.data();
  ctx_.workspace_bytes = ws_bytes - 1;
  const absl::Status s = EmbeddingBackward(ctx_, p, d_tokens.as<int32_t>(), d_dout.data(),
                                           d_dwte.data(), d_dwpe.data());
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(s.message(), HasSubstr(absl::StrCat("needs ", ws_bytes, " workspace bytes")));
}

}  // namespace
}  // namespace zt::kernels
