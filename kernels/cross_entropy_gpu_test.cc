// Needs a GPU. The CUDA softmax + cross-entropy against the CPU reference run
// in double on the very same (dtype-rounded) logits, with |got - ref| <=
// atol + |ref| * rtol, rtol = 2 eps(dtype) for the final rounding plus
// 64 eps(fp32) for the kernel's fp32 exp and row sum. The double reference
// is used because a sequential fp32 sum over 50257 terms is itself less
// accurate than the kernel's tree.

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "core/device.h"
#include "kernels/cross_entropy.h"
#include "kernels/cross_entropy_ref.h"
#include "kernels/gpu_testutil.h"
#include "kernels/testutil.h"

namespace zt::kernels {
namespace {

using testing::ExpectAllClose;
using testing::FromBytes;
using testing::RandomFloats;
using testing::ToBytes;

class CrossEntropyGpuTest : public ::testing::Test, public testing::GpuBuffers {};

struct Shape {
  int64_t rows, V, Vp;
};

TEST_F(CrossEntropyGpuTest, LossAndGradientMatchReferenceAndRepeatBitForBit) {
  const Shape shapes[] = {
      {1, 1, 1},         {5, 11, 16}, {3, 7, 7}, {37, 50257, 50304},  // GPT-2: vectorized, padded
      {4, 50257, 50257},  // unpadded odd stride: scalar path
      {64, 1000, 1024},
  };
  for (const Shape& s : shapes) {
    for (DType dt : {DType::kFloat32, DType::kFloat16, DType::kBFloat16}) {
      SCOPED_TRACE(absl::StrCat(DTypeName(dt), " rows=", s.rows, " V=", s.V, " Vp=", s.Vp));
      const int64_t n = s.rows * s.Vp;
      auto values = RandomFloats(n, 1, -4, 4);
      for (int64_t r = 0; r < s.rows; ++r) {
        for (int64_t c = s.V; c < s.Vp; ++c) values[r * s.Vp + c] = 7.0f;  // padding garbage
      }
      const auto logits = ToBytes(values, dt);
      // Targets: random, with an ignored row and (on the GPU) two invalid
      // ones, which act as ignored; the CPU reference gets -1 for those.
      std::mt19937_64 rng(2);
      std::uniform_int_distribution<int32_t> dist(0, static_cast<int32_t>(s.V - 1));
      std::vector<int32_t> targets(s.rows), ref_targets(s.rows);
      for (int64_t r = 0; r < s.rows; ++r) {
        targets[r] = dist(rng);
        if (s.rows > 3 && r == 1) targets[r] = -1;
        if (s.rows > 3 && r == 2) targets[r] = static_cast<int32_t>(s.V);
        if (s.rows > 3 && r == 3) targets[r] = -7;
        ref_targets[r] = targets[r] >= 0 && targets[r] < s.V ? targets[r] : -1;
      }

      CrossEntropyParams p;
      p.rows = s.rows;
      p.V = s.V;
      p.Vp = s.Vp;
      p.dtype = dt;
      p.dloss = 0.5f;
      const auto as_float = FromBytes(logits.data(), n, dt);
      std::vector<double> ref_grad(as_float.begin(), as_float.end()), ref_loss(s.rows);
      SoftmaxCrossEntropyRef<double>(p, ref_grad.data(), ref_targets.data(), ref_loss.data());

      Buffer d_targets = Upload(targets), d_losses = Alloc(s.rows * 4);
      std::vector<uint8_t> grads[2], losses[2];
      for (int run = 0; run < 2; ++run) {
        Buffer d_logits = Upload(logits);
        ASSERT_TRUE(SoftmaxCrossEntropy(ctx_, p, d_logits.data(), d_targets.as<int32_t>(),
                                        d_losses.as<float>())
                        .ok());
        grads[run] = Download(d_logits, logits.size());
        losses[run] = Download(d_losses, s.rows * 4);
      }
      const double rtol = 2 * DTypeEpsilon(dt) + 64 * DTypeEpsilon(DType::kFloat32);
      ExpectAllClose(FromBytes(losses[0].data(), s.rows, DType::kFloat32), ref_loss, 1e-5, rtol,
                     "losses");
      // atol covers fp16's subnormal spacing (6e-8) for the tiny gradients.
      ExpectAllClose(FromBytes(grads[0].data(), n, dt), ref_grad, 1e-7, rtol, "dlogits");
      EXPECT_TRUE(grads[0] == grads[1]) << "dlogits differ between runs";
      EXPECT_TRUE(losses[0] == losses[1]) << "losses differ between runs";

      // Without the gradient: same losses, logits untouched.
      p.compute_grad = false;
      p.dloss = 0.0f;
      Buffer d_logits = Upload(logits);
      ASSERT_TRUE(SoftmaxCrossEntropy(ctx_, p, d_logits.data(), d_targets.as<int32_t>(),
                                      d_losses.as<float>())
                      .ok());
      EXPECT_TRUE(Download(d_logits, logits.size()) == logits) << "logits changed";
      EXPECT_TRUE(Download(d_losses, s.rows * 4) == losses[0]) << "losses without gradient";
    }
  }
}

}  // namespace
}  // namespace zt::kernels
