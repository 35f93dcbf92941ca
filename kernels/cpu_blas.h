#ifndef ZEROTRAIN_KERNELS_CPU_BLAS_H_
#define ZEROTRAIN_KERNELS_CPU_BLAS_H_

// The CPU ops' GEMM: OpenBLAS, always single-threaded on the calling thread;
// the ops spread their calls with ParallelFor (cpu_parallel.h).

#include <cblas.h>

#include <cstdint>

#include "kernels/cpu_parallel.h"

namespace zt::kernels {

// Row-major single-precision GEMM on the calling thread:
// C = alpha op(A) op(B) + beta C.
inline void Sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                  const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
                  int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (k == 0) {
    // An empty product; reference BLAS would also reject lda = 0 here.
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t j = 0; j < n; ++j) c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
    }
    return;
  }
  UseSingleThreadedBlas();
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
              trans_b ? CblasTrans : CblasNoTrans, static_cast<int>(m), static_cast<int>(n),
              static_cast<int>(k), alpha, a, static_cast<int>(lda), b, static_cast<int>(ldb), beta,
              c, static_cast<int>(ldc));
}

}  // namespace zt::kernels

#endif  // ZEROTRAIN_KERNELS_CPU_BLAS_H_
