#ifndef ZEROTRAIN_KERNELS_LAYERNORM_REF_H_
#define ZEROTRAIN_KERNELS_LAYERNORM_REF_H_

// CPU reference for kernels/layernorm.h, a template over the storage type
// (float, Half, BFloat16, double). Statistics have type Acc<T>: float for
// the public API, double when tests take finite differences.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/cpu_parallel.h"
#include "kernels/layernorm.h"
#include "kernels/ref_util.h"

namespace zt::kernels {

// Rows per ParallelFor chunk: a function of the row count alone (see
// cpu_parallel.h), at most 16 chunks.
inline int64_t LayerNormRowGrain(int64_t rows) { return std::max<int64_t>(32, (rows + 15) / 16); }

template <typename T>
void LayerNormForwardRef(int64_t rows, int64_t C, const T* inp, const T* weight, const T* bias,
                         T* out, Acc<T>* mean, Acc<T>* rstd) {
  using A = Acc<T>;
  // Rows are independent, so any split gives the same bits.
  ParallelFor(rows, LayerNormRowGrain(rows), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const T* x = inp + r * C;
      A sum = 0;
      for (int64_t c = 0; c < C; ++c) sum += Load(x[c]);
      const A m = sum / C;
      // Two passes: the variance of centred values, not E[x^2] - m^2, which
      // cancels badly when |mean| >> std.
      A sq = 0;
      for (int64_t c = 0; c < C; ++c) {
        const A d = Load(x[c]) - m;
        sq += d * d;
      }
      const A s = A(1) / std::sqrt(sq / C + A(kLayerNormEps));
      T* y = out + r * C;
      for (int64_t c = 0; c < C; ++c) {
        y[c] = Store<T>((Load(x[c]) - m) * s * Load(weight[c]) + Load(bias[c]));
      }
      mean[r] = m;
      rstd[r] = s;
    }
  });
}

template <typename T>
void ResidualLayerNormForwardRef(int64_t rows, int64_t C, const T* inp1, const T* inp2,
                                 const T* weight, const T* bias, T* residual, T* out, Acc<T>* mean,
                                 Acc<T>* rstd) {
  ParallelFor(rows, LayerNormRowGrain(rows), [&](int64_t r0, int64_t r1) {
    for (int64_t i = r0 * C; i < r1 * C; ++i) residual[i] = Store<T>(Load(inp1[i]) + Load(inp2[i]));
  });
  LayerNormForwardRef<T>(rows, C, residual, weight, bias, out, mean, rstd);
}

// With xhat = (x - mean) * rstd and g = dout * weight:
//   dx = rstd * (g - mean(g) - xhat * mean(g * xhat)),
//   dweight = sum_rows dout * xhat, dbias = sum_rows dout.
// Parameter gradients are summed over all rows in Acc<T> and added to the
// stored values once, as the CUDA kernel does.
template <typename T>
void LayerNormBackwardRef(int64_t rows, int64_t C, const T* dout, const T* inp, const T* weight,
                          const Acc<T>* mean, const Acc<T>* rstd, T* dinp, T* dweight, T* dbias) {
  using A = Acc<T>;
  if (rows <= 0) return;
  // Each chunk of rows sums its own partial dweight/dbias; the partials are
  // then added in chunk order, so the result does not depend on threads.
  const int64_t grain = LayerNormRowGrain(rows);
  const int64_t chunks = (rows + grain - 1) / grain;
  std::vector<A> dw(chunks * C, A(0)), db(chunks * C, A(0));
  ParallelFor(rows, grain, [&](int64_t r0, int64_t r1) {
    A* dw_part = dw.data() + (r0 / grain) * C;
    A* db_part = db.data() + (r0 / grain) * C;
    for (int64_t r = r0; r < r1; ++r) {
      const T* dy = dout + r * C;
      const T* x = inp + r * C;
      const A m = mean[r], s = rstd[r];
      A g_mean = 0, g_xhat_mean = 0;
      for (int64_t c = 0; c < C; ++c) {
        const A xhat = (Load(x[c]) - m) * s;
        const A g = Load(dy[c]) * Load(weight[c]);
        g_mean += g;
        g_xhat_mean += g * xhat;
      }
      g_mean /= C;
      g_xhat_mean /= C;
      T* dx = dinp + r * C;
      for (int64_t c = 0; c < C; ++c) {
        const A xhat = (Load(x[c]) - m) * s;
        const A g = Load(dy[c]) * Load(weight[c]);
        dw_part[c] += Load(dy[c]) * xhat;
        db_part[c] += Load(dy[c]);
        dx[c] = Store<T>(Load(dx[c]) + (g - g_mean - xhat * g_xhat_mean) * s);
      }
    }
  });
  for (int64_t k = 1; k < chunks; ++k) {
    for (int64_t c = 0; c < C; ++c) {
      dw[c] += dw[k * C + c];
      db[c] += db[k * C + c];
    }
  }
  for (int64_t c = 0; c < C; ++c) {
    dweight[c] = Store<T>(Load(dweight[c]) + dw[c]);
    dbias[c] = Store<T>(Load(dbias[c]) + db[c]);
  }
}

}  // namespace zt::kernels

#endif  // ZEROTRAIN_KERNELS_LAYERNORM_REF_H_
