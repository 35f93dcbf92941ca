// Needs a GPU. The CUDA LayerNorm against the CPU reference run in double on
// the very same (dtype-rounded) inputs, with |got - ref| <= atol + |ref| *
// eps(dtype) * 2: the CUDA result is fp32 math rounded once to the storage
// dtype, so beyond that rounding only fp32 reduction error (atol) remains.
// The double reference is used because a sequential fp32 sum over a long row
// is itself less accurate than the kernel's tree.

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "core/device.h"
#include "kernels/gpu_testutil.h"
#include "kernels/layernorm.h"
#include "kernels/layernorm_ref.h"
#include "kernels/testutil.h"

namespace zt::kernels {
namespace {

using testing::ExpectAllClose;
using testing::FromBytes;
using ::testing::HasSubstr;
using testing::RandomFloats;
using testing::ToBytes;

class LayerNormGpuTest : public ::testing::Test, public testing::GpuBuffers {
 protected:
  std::vector<float> DownloadFloats(const Buffer& b, size_t n, DType dt, size_t offset = 0) {
    const auto bytes = Download(b, n * DTypeSize(dt), offset);
    return FromBytes(bytes.data(), n, dt);
  }
};

struct Shape {
  int64_t rows, C;
  size_t misalign;  // elements by which every T buffer is offset
};

std::vector<double> ToDouble(const std::vector<float>& v) { return {v.begin(), v.end()}; }

// Values as stored in `dt` (with `misalign` leading pad elements).
std::vector<uint8_t> HostData(size_t n, const Shape& s, DType dt, uint64_t seed, float lo = -1,
                              float hi = 1) {
  return ToBytes(RandomFloats(n + s.misalign, seed, lo, hi), dt);
}

std::vector<float> Values(const std::vector<uint8_t>& bytes, size_t n, const Shape& s, DType dt) {
  return FromBytes(bytes.data() + s.misalign * DTypeSize(dt), n, dt);
}

// Aligned rows of up to 256 16-byte vectors take the register kernels, one
// instantiation per vectors-per-lane count NP (16-bit / fp32): C = 32 has
// NP 1 / 1, 512 has 2 / 4, 768 has 3 / 6, 1024 has 4 / 8, 1536 has 6 / -,
// 2048 has 8 / - ("-": too wide, the generic kernels).
const Shape kShapes[] = {
    {1, 1, 0},     {5, 7, 0},    {37, 769, 0},
    {1, 768, 0},   {64, 768, 0}, {37, 768, 1},  // misaligned: scalar path at a vectorizable width
    {33, 512, 0},  {17, 1024, 0}, {9, 1536, 0}, {5, 2048, 0},
    {3, 7000, 0},   // one warp per block, more than 48 KiB of shared memory
    {4099, 32, 0},  // more rows than the backward's block cap covers at once
};

TEST_F(LayerNormGpuTest, ForwardAndResidualForwardMatchReference) {
  for (const Shape& s : kShapes) {
    for (DType dt : {DType::kFloat32, DType::kFloat16, DType::kBFloat16}) {
      SCOPED_TRACE(
          absl::StrCat(DTypeName(dt), " rows=", s.rows, " C=", s.C, " misalign=", s.misalign));
      const int64_t n = s.rows * s.C;
      const size_t off = s.misalign * DTypeSize(dt);
      const auto a = HostData(n, s, dt, 1, -0.5f, 1.5f), b = HostData(n, s, dt, 2);
      const auto w = HostData(s.C, s, dt, 3), bias = HostData(s.C, s, dt, 4);

      // Residual on the CPU in `dt`: the fp32 add rounded once, as on the GPU.
      std::vector<uint8_t> res_ref(a.size()), out_ref(a.size());
      std::vector<float> mean_ref(s.rows), rstd_ref(s.rows);
      ASSERT_TRUE(ResidualLayerNormForward(OpContext::Cpu(), dt, s.rows, s.C, a.data() + off,
                                           b.data() + off, w.data() + off, bias.data() + off,
                                           res_ref.data() + off, out_ref.data() + off,
                                           mean_ref.data(), rstd_ref.data())
                      .ok());
      // The double reference, for the plain LayerNorm of `a` and of the
      // residual.
      auto reference = [&](const std::vector<float>& x, std::vector<double>* out,
                           std::vector<double>* mean, std::vector<double>* rstd) {
        const auto xd = ToDouble(x), wd = ToDouble(Values(w, s.C, s, dt)),
                   bd = ToDouble(Values(bias, s.C, s, dt));
        out->resize(n);
        mean->resize(s.rows);
        rstd->resize(s.rows);
        LayerNormForwardRef<double>(s.rows, s.C, xd.data(), wd.data(), bd.data(), out->data(),
                                    mean->data(), rstd->data());
      };
      std::vector<double> ln_out, ln_mean, ln_rstd, rln_out, rln_mean, rln_rstd;
      reference(Values(a, n, s, dt), &ln_out, &ln_mean, &ln_rstd);
      reference(Values(res_ref, n, s, dt), &rln_out, &rln_mean, &rln_rstd);

      Buffer da = Upload(a), db = Upload(b), dw = Upload(w), dbias = Upload(bias);
      Buffer dout = Alloc(a.size()), dres = Alloc(a.size());
      Buffer dmean = Alloc(s.rows * 4), drstd = Alloc(s.rows * 4);
      const double eps = DTypeEpsilon(dt), eps32 = DTypeEpsilon(DType::kFloat32);

      ASSERT_TRUE(LayerNormForward(ctx_, dt, s.rows, s.C, da.as<uint8_t>() + off,
                                   dw.as<uint8_t>() + off, dbias.as<uint8_t>() + off,
                                   dout.as<uint8_t>() + off, dmean.as<float>(), drstd.as<float>())
                      .ok());
      ExpectAllClose(DownloadFloats(dout, n, dt, off), ln_out, 1e-5, 2 * eps, "out");
      ExpectAllClose(DownloadFloats(dmean, s.rows, DType::kFloat32), ln_mean, 1e-6, 64 * eps32,
                     "mean");
      ExpectAllClose(DownloadFloats(drstd, s.rows, DType::kFloat32), ln_rstd, 0, 64 * eps32,
                     "rstd");

      ASSERT_TRUE(ResidualLayerNormForward(
                      ctx_, dt, s.rows, s.C, da.as<uint8_t>() + off, db.as<uint8_t>() + off,
                      dw.as<uint8_t>() + off, dbias.as<uint8_t>() + off, dres.as<uint8_t>() + off,
                      dout.as<uint8_t>() + off, dmean.as<float>(), drstd.as<float>())
                      .ok());
      const auto res = Download(dres, n * DTypeSize(dt), off);
      EXPECT_TRUE(std::equal(res.begin(), res.end(), res_ref.begin() + off)) << "residual";
      ExpectAllClose(DownloadFloats(dout, n, dt, off), rln_out, 1e-5, 2 * eps, "residual out");
      ExpectAllClose(DownloadFloats(drstd, s.rows, DType::kFloat32), rln_rstd, 0, 64 * eps32,
                     "residual rstd");
    }
  }
}

TEST_F(LayerNormGpuTest, BackwardMatchesReferenceAndRepeatsBitForBit) {
  for (const Shape& s : kShapes) {
    for (DType dt : {DType::kFloat32, DType::kFloat16, DType::kBFloat16}) {
      SCOPED_TRACE(
          absl::StrCat(DTypeName(dt), " rows=", s.rows, " C=", s.C, " misalign=", s.misalign));
      const int64_t n = s.rows * s.C;
      const size_t off = s.misalign * DTypeSize(dt);
      const auto x = HostData(n, s, dt, 11, -0.5f, 1.5f), w = HostData(s.C, s, dt, 12);
      const auto dy = HostData(n, s, dt, 13), dinp0 = HostData(n, s, dt, 14);
      const auto dw0 = HostData(s.C, s, dt, 15), db0 = HostData(s.C, s, dt, 16);

      // Statistics from the double forward feed both sides (the GPU gets
      // them rounded to fp32, as its forward would store them).
      const auto xd = ToDouble(Values(x, n, s, dt)), wd = ToDouble(Values(w, s.C, s, dt));
      const std::vector<double> zeros_c(s.C, 0.0);
      std::vector<double> out(n), mean(s.rows), rstd(s.rows);
      LayerNormForwardRef<double>(s.rows, s.C, xd.data(), wd.data(), zeros_c.data(), out.data(),
                                  mean.data(), rstd.data());
      const std::vector<float> mean32(mean.begin(), mean.end()), rstd32(rstd.begin(), rstd.end());
      const std::vector<double> mean_r(mean32.begin(), mean32.end()),
          rstd_r(rstd32.begin(), rstd32.end());
      auto dinp_ref = ToDouble(Values(dinp0, n, s, dt));
      auto dw_ref = ToDouble(Values(dw0, s.C, s, dt)), db_ref = ToDouble(Values(db0, s.C, s, dt));
      const auto dyd = ToDouble(Values(dy, n, s, dt));
      LayerNormBackwardRef<double>(s.rows, s.C, dyd.data(), xd.data(), wd.data(), mean_r.data(),
                                   rstd_r.data(), dinp_ref.data(), dw_ref.data(), db_ref.data());

      Buffer d_x = Upload(x), d_w = Upload(w), d_dy = Upload(dy);
      Buffer d_mean = Upload(mean32), d_rstd = Upload(rstd32);
      const size_t ws_bytes = LayerNormBackwardWorkspaceBytes(s.rows, s.C);
      Buffer ws = Alloc(ws_bytes);
      ctx_.workspace = ws.data();
      ctx_.workspace_bytes = ws_bytes;
      std::vector<uint8_t> runs[2][3];
      for (int run = 0; run < 2; ++run) {
        Buffer d_dinp = Upload(dinp0), d_dw = Upload(dw0), d_db = Upload(db0);
        ASSERT_TRUE(LayerNormBackward(ctx_, dt, s.rows, s.C, d_dy.as<uint8_t>() + off,
                                      d_x.as<uint8_t>() + off, d_w.as<uint8_t>() + off,
                                      d_mean.as<float>(), d_rstd.as<float>(),
                                      d_dinp.as<uint8_t>() + off, d_dw.as<uint8_t>() + off,
                                      d_db.as<uint8_t>() + off)
                        .ok());
        runs[run][0] = Download(d_dinp, dinp0.size());
        runs[run][1] = Download(d_dw, dw0.size());
        runs[run][2] = Download(d_db, db0.size());
      }
      const double eps = DTypeEpsilon(dt);
      // Column sums over `rows` carry fp32 error growing with the row count.
      const double col_atol = 1e-5 * (1 + std::sqrt(static_cast<double>(s.rows)));
      ExpectAllClose(Values(runs[0][0], n, s, dt), dinp_ref, 1e-5, 2 * eps, "dinp");
      ExpectAllClose(Values(runs[0][1], s.C, s, dt), dw_ref, col_atol, 2 * eps, "dweight");
      ExpectAllClose(Values(runs[0][2], s.C, s, dt), db_ref, col_atol, 2 * eps, "dbias");
      for (int k = 0; k < 3; ++k)
        EXPECT_TRUE(runs[0][k] == runs[1][k]) << "output " << k << " differs between runs";
    }
  }
}

TEST_F(LayerNormGpuTest, TooSmallWorkspaceIsResourceExhausted) {
  const int64_t rows = 9, C = 16;
  const size_t ws_bytes = LayerNormBackwardWorkspaceBytes(rows, C);
  Buffer ws = Alloc(ws_bytes), buf = Alloc(rows * C * 4), stats = Alloc(rows * 4);
  ctx_.workspace = ws.data();
  ctx_.workspace_bytes = ws_bytes - 4;
  const absl::Status s =
      LayerNormBackward(ctx_, DType::kFloat32, rows, C, buf.data(), buf.data(), buf.data(),
                        stats.as<float>(), stats.as<float>(), buf.data(), buf.data(), buf.data());
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(s.message(), HasSubstr(absl::StrCat("needs ", ws_bytes, " workspace bytes")));
}

}  // namespace
}  // namespace zt::kernels
