#ifndef ZEROTRAIN_KERNELS_MATMUL_REF_H_
#define ZEROTRAIN_KERNELS_MATMUL_REF_H_

// CPU reference of the linear layer in matmul.h, templated on the storage
// type T. fp32 and 16-bit storage multiply with single-threaded OpenBLAS
// sgemm calls on row chunks spread by ParallelFor (16-bit inputs are widened
// to fp32 copies first), so the CPU trainer runs at a usable speed; the
// epilogues (bias, GELU, accumulation) happen in fp32 and each result is
// rounded to T once. The double instantiation, used by the finite-difference
// tests, is plain loops.

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "kernels/cpu_blas.h"
#include "kernels/cpu_parallel.h"
#include "kernels/gelu_ref.h"
#include "kernels/ref_util.h"

namespace zt::kernels {

// Row-major C[m, n] = op(A) op(B) in double, where op(A) is [m, k] and
// op(B) is [k, n]; with trans_a A is stored as [k, m], with trans_b B is
// stored as [n, k]. Plain loops: the reference the BLAS path is checked with.
template <typename T>
std::vector<double> GemmRef(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const T* a,
                            const T* b) {
  static_assert(std::is_same_v<T, double>, "the fp32 and 16-bit paths use Sgemm");
  std::vector<double> c(m * n, 0.0);
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double sum = 0;
      for (int64_t p = 0; p < k; ++p) {
        sum += (trans_a ? a[p * m + i] : a[i * k + p]) * (trans_b ? b[j * k + p] : b[p * n + j]);
      }
      c[i * n + j] = sum;
    }
  }
  return c;
}

// Rows per ParallelFor chunk of a GEMM: a function of the row count alone
// (see cpu_parallel.h), at most 16 chunks, and never so few rows that
// OpenBLAS's packing of the shared operand dominates.
inline int64_t GemmRowGrain(int64_t rows) { return std::max<int64_t>(64, (rows + 15) / 16); }

// fp32 views of a 16-bit operand (widened once, shared by every chunk); a
// float operand is used in place.
template <typename T>
class FloatView {
 public:
  FloatView(const T* x, int64_t n) {
    if constexpr (std::is_same_v<T, float>) {
      ptr_ = x;
    } else if (x != nullptr) {
      wide_.resize(n);
      ParallelFor(n, 1 << 16, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) wide_[i] = Load(x[i]);
      });
      ptr_ = wide_.data();
    }
  }
  const float* get() const { return ptr_; }

 private:
  std::vector<float> wide_;
  const float* ptr_ = nullptr;
};

// fp32 rows of a result: the destination itself when T is float, else a
// staging buffer the caller rounds to T from.
template <typename T>
class Fp32Rows {
 public:
  Fp32Rows(T* dst, int64_t n) {
    if constexpr (std::is_same_v<T, float>) {
      ptr_ = dst;
    } else {
      staged_.resize(n);
      ptr_ = staged_.data();
    }
  }
  float* get() { return ptr_; }

 private:
  std::vector<float> staged_;
  float* ptr_ = nullptr;
};

// out = inp @ weight^T + bias; with pre_gelu, pre_gelu = that and
// out = gelu(it), GELU taken of the unrounded fp32 value (as the fused
// cuBLASLt epilogue does). Each result is rounded to T once.
template <typename T>
void MatmulForwardRef(const T* inp, const T* weight, const T* bias, T* out, T* pre_gelu, int64_t M,
                      int64_t N, int64_t K) {
  if constexpr (std::is_same_v<T, double>) {
    const std::vector<double> acc = GemmRef(false, /*trans_b=*/true, M, N, K, inp, weight);
    for (int64_t m = 0; m < M; ++m) {
      for (int64_t n = 0; n < N; ++n) {
        const int64_t i = m * N + n;
        const double z = acc[i] + (bias != nullptr ? bias[n] : 0.0);
        if (pre_gelu != nullptr) pre_gelu[i] = z;
        out[i] = pre_gelu != nullptr ? GeluValue(z) : z;
      }
    }
  } else {
    if (M == 0 || N == 0) return;
    const FloatView<T> inp32(inp, M * K), weight32(weight, N * K);
    ParallelFor(M, GemmRowGrain(M), [&](int64_t m0, int64_t m1) {
      const int64_t rows = m1 - m0;
      Fp32Rows<T> z_rows((pre_gelu != nullptr ? pre_gelu : out) + m0 * N, rows * N);
      float* z = z_rows.get();
      // The bias goes in as C with beta = 1: OpenBLAS adds the products to
      // it in fp32, and a 16-bit result is rounded to T once at the end.
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t n = 0; n < N; ++n) z[r * N + n] = bias != nullptr ? Load(bias[n]) : 0.0f;
      }
      Sgemm(false, true, rows, N, K, 1.0f, inp32.get() + m0 * K, K, weight32.get(), K, 1.0f, z, N);
      for (int64_t i = 0; i < rows * N; ++i) {
        const int64_t o = m0 * N + i;
        if (pre_gelu != nullptr) {
          if constexpr (!std::is_same_v<T, float>) pre_gelu[o] = Store<T>(z[i]);
          out[o] = Store<T>(GeluValue(z[i]));
        } else if constexpr (!std::is_same_v<T, float>) {
          out[o] = Store<T>(z[i]);
        }
      }
    });
  }
}

// dinp = dout @ weight (times gelu'(inp_pre_gelu) when given), overwritten;
// dweight += dout^T @ inp; dbias += column sums of dout (rows in order);
// with accumulate = false, dweight and dbias are overwritten instead (their
// old contents are not read). Null outputs are skipped.
template <typename T>
void MatmulBackwardRef(const T* dout, const T* inp, const T* weight, T* dinp, const T* inp_pre_gelu,
                       T* dweight, T* dbias, int64_t M, int64_t N, int64_t K,
                       bool accumulate = true) {
  if constexpr (std::is_same_v<T, double>) {
    if (dinp != nullptr) {
      const std::vector<double> g = GemmRef(false, false, M, K, N, dout, weight);
      for (int64_t i = 0; i < M * K; ++i) {
        dinp[i] = g[i] * (inp_pre_gelu != nullptr ? GeluGrad(inp_pre_gelu[i]) : 1.0);
      }
    }
    if (dweight != nullptr) {
      const std::vector<double> g = GemmRef(/*trans_a=*/true, false, N, K, M, dout, inp);
      for (int64_t i = 0; i < N * K; ++i) dweight[i] = (accumulate ? dweight[i] : 0.0) + g[i];
    }
    if (dbias != nullptr) {
      std::vector<double> sum(N, 0.0);
      for (int64_t m = 0; m < M; ++m) {
        for (int64_t n = 0; n < N; ++n) sum[n] += dout[m * N + n];
      }
      for (int64_t n = 0; n < N; ++n) dbias[n] = (accumulate ? dbias[n] : 0.0) + sum[n];
    }
  } else {
    if (dinp == nullptr && dweight == nullptr && dbias == nullptr) return;
    const FloatView<T> dout32(dout, M * N);
    if (dinp != nullptr && M > 0 && K > 0) {
      const FloatView<T> weight32(weight, N * K);
      ParallelFor(M, GemmRowGrain(M), [&](int64_t m0, int64_t m1) {
        const int64_t rows = m1 - m0;
        Fp32Rows<T> g_rows(dinp + m0 * K, rows * K);
        float* g = g_rows.get();
        Sgemm(false, false, rows, K, N, 1.0f, dout32.get() + m0 * N, N, weight32.get(), K, 0.0f, g,
              K);
        if (inp_pre_gelu != nullptr) {
          for (int64_t i = 0; i < rows * K; ++i) {
            dinp[m0 * K + i] = Store<T>(g[i] * GeluGrad(Load(inp_pre_gelu[m0 * K + i])));
          }
        } else if constexpr (!std::is_same_v<T, float>) {
          for (int64_t i = 0; i < rows * K; ++i) dinp[m0 * K + i] = Store<T>(g[i]);
        }
      });
    }
    // With M == 0 there is nothing to add (and dout may be null); an
    // overwrite still has to leave zeros.
    if (!accumulate && M == 0) {
      if (dweight != nullptr) std::fill(dweight, dweight + N * K, Store<T>(0.0f));
      if (dbias != nullptr) std::fill(dbias, dbias + N, Store<T>(0.0f));
    }
    if ((dweight != nullptr || dbias != nullptr) && N > 0 && M > 0) {
      const FloatView<T> inp32(dweight != nullptr ? inp : nullptr, M * K);
      // Chunks of output features: each dweight row and dbias entry sums
      // over all M rows inside one chunk, in row order.
      ParallelFor(N, GemmRowGrain(N), [&](int64_t n0, int64_t n1) {
        const int64_t cols = n1 - n0;
        if (dweight != nullptr && K > 0) {
          Fp32Rows<T> g_rows(dweight + n0 * K, cols * K);
          float* g = g_rows.get();
          if constexpr (!std::is_same_v<T, float>) {
            if (accumulate) {
              for (int64_t i = 0; i < cols * K; ++i) g[i] = Load(dweight[n0 * K + i]);
            }
          }
          // beta = 1 accumulates in fp32; a 16-bit dweight is widened first
          // and rounded to T once.
          Sgemm(true, false, cols, K, M, 1.0f, dout32.get() + n0, N, inp32.get(), K,
                accumulate ? 1.0f : 0.0f, g, K);
          if constexpr (!std::is_same_v<T, float>) {
            for (int64_t i = 0; i < cols * K; ++i) dweight[n0 * K + i] = Store<T>(g[i]);
          }
        }
        if (dbias != nullptr) {
          std::vector<float> sum(cols, 0.0f);
          for (int64_t m = 0; m < M; ++m) {
            const float* row = dout32.get() + m * N + n0;
            for (int64_t c = 0; c < cols; ++c) sum[c] += row[c];
          }
          for (int64_t c = 0; c < cols; ++c) {
            dbias[n0 + c] = Store<T>((accumulate ? Load(dbias[n0 + c]) : 0.0f) + sum[c]);
          }
        }
      });
    }
  }
}

}  // namespace zt::kernels

#endif  // ZEROTRAIN_KERNELS_MATMUL_REF_H_
