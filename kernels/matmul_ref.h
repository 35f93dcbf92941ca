#ifndef ZEROTRAIN_KERNELS_MATMUL_REF_H_
#define ZEROTRAIN_KERNELS_MATMUL_REF_H_

// CPU reference of the linear layer in matmul.h, templated on the storage
// type T. fp32 and 16-bit storage multiply with OpenBLAS sgemm (16-bit inputs
// are widened to fp32 copies first) so the CPU trainer runs at a usable
// speed; the epilogues (bias, GELU, accumulation) happen in fp32 and each
// result is rounded to T once. The double instantiation, used by the
// finite-difference tests, is plain loops.

#include <cblas.h>

#include <cstdint>
#include <type_traits>
#include <vector>

#include "kernels/gelu_ref.h"
#include "kernels/ref_util.h"

namespace zt::kernels {

template <typename T>
std::vector<float> WidenToFloat(const T* x, int64_t n) {
  std::vector<float> out(n);
  for (int64_t i = 0; i < n; ++i) out[i] = Load(x[i]);
  return out;
}

// Row-major C[m, n] = op(A) op(B), where op(A) is [m, k] and op(B) is [k, n];
// with trans_a A is stored as [k, m], with trans_b B is stored as [n, k].
template <typename T>
std::vector<Acc<T>> GemmRef(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const T* a,
                            const T* b) {
  std::vector<Acc<T>> c(m * n, Acc<T>(0));
  if (m == 0 || n == 0 || k == 0) return c;
  if constexpr (std::is_same_v<T, double>) {
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t j = 0; j < n; ++j) {
        double sum = 0;
        for (int64_t p = 0; p < k; ++p) {
          sum += (trans_a ? a[p * m + i] : a[i * k + p]) * (trans_b ? b[j * k + p] : b[p * n + j]);
        }
        c[i * n + j] = sum;
      }
    }
  } else {
    std::vector<float> a_wide, b_wide;
    const float* a32;
    const float* b32;
    if constexpr (std::is_same_v<T, float>) {
      a32 = a;
      b32 = b;
    } else {
      a_wide = WidenToFloat(a, m * k);
      b_wide = WidenToFloat(b, k * n);
      a32 = a_wide.data();
      b32 = b_wide.data();
    }
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, static_cast<int>(m), static_cast<int>(n),
                static_cast<int>(k), 1.0f, a32, static_cast<int>(trans_a ? m : k), b32,
                static_cast<int>(trans_b ? k : n), 0.0f, c.data(), static_cast<int>(n));
  }
  return c;
}

// out = inp @ weight^T + bias; with pre_gelu, pre_gelu = that and
// out = gelu(it), GELU taken of the unrounded fp32 value (as the fused
// cuBLASLt epilogue does).
template <typename T>
void MatmulForwardRef(const T* inp, const T* weight, const T* bias, T* out, T* pre_gelu, int64_t M,
                      int64_t N, int64_t K) {
  const std::vector<Acc<T>> acc =
      GemmRef(/*trans_a=*/false, /*trans_b=*/true, M, N, K, inp, weight);
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t n = 0; n < N; ++n) {
      const int64_t i = m * N + n;
      const Acc<T> z = acc[i] + (bias != nullptr ? Load(bias[n]) : Acc<T>(0));
      if (pre_gelu != nullptr) {
        pre_gelu[i] = Store<T>(z);
        out[i] = Store<T>(GeluValue(z));
      } else {
        out[i] = Store<T>(z);
      }
    }
  }
}

// dinp = dout @ weight (times gelu'(inp_pre_gelu) when given), overwritten;
// dweight += dout^T @ inp; dbias += column sums of dout (rows in order).
// Null outputs are skipped.
template <typename T>
void MatmulBackwardRef(const T* dout, const T* inp, const T* weight, T* dinp, const T* inp_pre_gelu,
                       T* dweight, T* dbias, int64_t M, int64_t N, int64_t K) {
  if (dinp != nullptr) {
    const std::vector<Acc<T>> g = GemmRef(false, false, M, K, N, dout, weight);
    for (int64_t i = 0; i < M * K; ++i) {
      const Acc<T> scale = inp_pre_gelu != nullptr ? GeluGrad(Load(inp_pre_gelu[i])) : Acc<T>(1);
      dinp[i] = Store<T>(g[i] * scale);
    }
  }
  if (dweight != nullptr) {
    const std::vector<Acc<T>> g = GemmRef(/*trans_a=*/true, false, N, K, M, dout, inp);
    for (int64_t i = 0; i < N * K; ++i) dweight[i] = Store<T>(Load(dweight[i]) + g[i]);
  }
  if (dbias != nullptr) {
    std::vector<Acc<T>> sum(N, Acc<T>(0));
    for (int64_t m = 0; m < M; ++m) {
      for (int64_t n = 0; n < N; ++n) sum[n] += Load(dout[m * N + n]);
    }
    for (int64_t n = 0; n < N; ++n) dbias[n] = Store<T>(Load(dbias[n]) + sum[n]);
  }
}

}  // namespace zt::kernels

#endif  // ZEROTRAIN_KERNELS_MATMUL_REF_H_
