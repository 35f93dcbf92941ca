#ifndef ZEROTRAIN_KERNELS_EMBEDDING_REF_H_
#define ZEROTRAIN_KERNELS_EMBEDDING_REF_H_

// CPU reference for kernels/embedding.h, a template over the storage type
// (float, Half, BFloat16, double) so tests can run it in double. Callers
// validate shapes and tokens first (CheckEmbeddingTokens).
//
// The backward adds each dwte row's contributions in increasing position
// order, starting from zero, and adds the total to the stored gradient once;
// the CUDA kernel sums in the same order, so fp32 results agree bit for bit.

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "kernels/embedding.h"
#include "kernels/ref_util.h"

namespace zt::kernels {

// InvalidArgument naming the first token outside [0, V) by (b, t) and value.
inline absl::Status CheckEmbeddingTokens(const EmbeddingParams& p, const int32_t* tokens) {
  for (int64_t i = 0; i < p.B * p.T; ++i) {
    if (tokens[i] < 0 || tokens[i] >= p.V) {
      return absl::InvalidArgumentError(
          absl::StrFormat("embedding: token at (b=%d, t=%d) is %d, outside [0, V=%d)", i / p.T,
                          i % p.T, tokens[i], p.V));
    }
  }
  return absl::OkStatus();
}

template <typename T>
void EmbeddingForwardRef(const EmbeddingParams& p, const int32_t* tokens, const T* wte,
                         const T* wpe, T* out) {
  const int64_t C = p.C;
  for (int64_t b = 0; b < p.B; ++b) {
    for (int64_t t = 0; t < p.T; ++t) {
      const int64_t pos = b * p.T + t;
      const T* w = wte + tokens[pos] * C;
      const T* q = wpe + t * C;
      T* o = out + pos * C;
      for (int64_t c = 0; c < C; ++c) o[c] = Store<T>(Load(w[c]) + Load(q[c]));
    }
  }
}

template <typename T>
void EmbeddingBackwardRef(const EmbeddingParams& p, const int32_t* tokens, const T* dout, T* dwte,
                          T* dwpe) {
  const int64_t N = p.B * p.T, C = p.C;
  // Positions grouped by token, in increasing position order within a token.
  std::vector<int64_t> order(N);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return tokens[a] < tokens[b]; });
  std::vector<Acc<T>> sum(C);
  for (int64_t i = 0; i < N;) {
    const int32_t token = tokens[order[i]];
    std::fill(sum.begin(), sum.end(), Acc<T>(0));
    for (; i < N && tokens[order[i]] == token; ++i) {
      const T* d = dout + order[i] * C;
      for (int64_t c = 0; c < C; ++c) sum[c] += Load(d[c]);
    }
    T* g = dwte + token * C;
    for (int64_t c = 0; c < C; ++c) g[c] = Store<T>(Load(g[c]) + sum[c]);
  }
  for (int64_t t = 0; t < p.T; ++t) {
    for (int64_t c = 0; c < C; ++c) {
      Acc<T> s = 0;
      for (int64_t b = 0; b < p.B; ++b) s += Load(dout[(b * p.T + t) * C + c]);
      dwpe[t * C + c] = Store<T>(Load(dwpe[t * C + c]) + s);
    }
  }
}

}  // namespace zt::kernels

#endif  // ZEROTRAIN_KERNELS_EMBEDDING_REF_H_
