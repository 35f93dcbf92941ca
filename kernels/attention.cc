#include "kernels/attention.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/attention_ref.h"
#include "kernels/cpu_blas.h"
#include "kernels/cpu_parallel.h"
#include "kernels/ref_util.h"

#if ZT_WITH_CUDA
#include "kernels/attention_cuda.h"
#endif

namespace zt::kernels {
namespace {

absl::Status ValidateParams(const AttentionParams& p, const char* op) {
  const auto positive = [op](const char* name, int64_t v) -> absl::Status {
    if (v > 0) return absl::OkStatus();
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": AttentionParams.", name, " must be positive, got ", v));
  };
  for (const auto& [name, value] :
       {std::pair<const char*, int64_t>{"B", p.B}, {"T", p.T}, {"C", p.C}, {"NH", p.NH}}) {
    if (absl::Status s = positive(name, value); !s.ok()) return s;
  }
  if (p.C % p.NH != 0) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": AttentionParams.C (", p.C,
                                                   ") must be a multiple of AttentionParams.NH (",
                                                   p.NH, ")"));
  }
  if (p.dtype != DType::kFloat32 && p.dtype != DType::kFloat16 && p.dtype != DType::kBFloat16) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": AttentionParams.dtype has unknown value ", static_cast<int>(p.dtype)));
  }
  return absl::OkStatus();
}

absl::Status RequireNonNull(const void* ptr, const char* op, const char* name) {
  if (ptr != nullptr) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(op, ": ", name, " is null"));
}

// Runs fn(b, h) for every (batch, head) pair. Each pair reads and writes only
// its own channels and lse rows, so spreading pairs over threads changes no
// bits.
template <typename Fn>
void ForEachHead(const AttentionParams& p, const Fn& fn) {
  ParallelFor(p.B * p.NH, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) fn(i / p.NH, i % p.NH);
  });
}

// Query rows per block of the fp32 path: bounds its scratch to
// kQueryBlock x T scores per thread at any sequence length.
constexpr int64_t kQueryBlock = 64;

// One head's q, k, v as fp32 [T, hs] matrices with row stride ld: views into
// qkv when T is float, widened copies otherwise.
template <typename T>
struct HeadQkv {
  const float* q;
  const float* k;
  const float* v;
  int64_t ld;
  std::vector<float> wide;

  HeadQkv(const AttentionParams& p, const T* qkv, int64_t b, int64_t h) {
    const int64_t seq = p.T, C = p.C, hs = p.C / p.NH;
    const T* base = qkv + b * seq * 3 * C + h * hs;
    if constexpr (std::is_same_v<T, float>) {
      q = base;
      k = base + C;
      v = base + 2 * C;
      ld = 3 * C;
    } else {
      wide.resize(3 * seq * hs);
      for (int64_t part = 0; part < 3; ++part) {
        for (int64_t t = 0; t < seq; ++t) {
          for (int64_t d = 0; d < hs; ++d) {
            wide[(part * seq + t) * hs + d] = Load(base[t * 3 * C + part * C + d]);
          }
        }
      }
      q = wide.data();
      k = q + seq * hs;
      v = k + seq * hs;
      ld = hs;
    }
  }
};

// The fp32 path for float and 16-bit storage: per head and block of query
// rows, S = scale Q K^T and the products with V, dO, K and Q are single-
// threaded sgemm calls (OpenBLAS), the softmax a loop over the block. The
// double instantiation keeps the plain loops below for finite differences.
// Masked scores are zeros in P, so a NaN or Inf in a later token's v (or in
// dout) reaches the earlier rows of its 64-row block as 0 * NaN; finite
// inputs are masked exactly.
template <typename T>
void AttentionForwardBlas(const AttentionParams& p, const T* qkv, T* out, float* lse) {
  const int64_t seq = p.T, C = p.C, hs = p.C / p.NH;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hs));
  ForEachHead(p, [&](int64_t b, int64_t h) {
    const HeadQkv<T> head(p, qkv, b, h);
    std::vector<float> probs(kQueryBlock * seq), staged;
    if constexpr (!std::is_same_v<T, float>) staged.resize(kQueryBlock * hs);
    for (int64_t i0 = 0; i0 < seq; i0 += kQueryBlock) {
      const int64_t rows = std::min(kQueryBlock, seq - i0), keys = i0 + rows;
      // Causal: query i0 + r sees keys 0..i0 + r, so the block needs keys
      // [0, keys) and row r masks the keys after i0 + r.
      Sgemm(false, true, rows, keys, hs, scale, head.q + i0 * head.ld, head.ld, head.k, head.ld,
            0.0f, probs.data(), keys);
      for (int64_t r = 0; r < rows; ++r) {
        float* row = probs.data() + r * keys;
        const int64_t valid = i0 + r + 1;
        float max_score = row[0];
        for (int64_t j = 1; j < valid; ++j) max_score = std::max(max_score, row[j]);
        float sum = 0;
        for (int64_t j = 0; j < valid; ++j) {
          row[j] = std::exp(row[j] - max_score);
          sum += row[j];
        }
        const float inv = 1.0f / sum;
        for (int64_t j = 0; j < valid; ++j) row[j] *= inv;
        std::fill(row + valid, row + keys, 0.0f);
        lse[(b * p.NH + h) * seq + i0 + r] = max_score + std::log(sum);
      }
      T* o = out + (b * seq + i0) * C + h * hs;
      if constexpr (std::is_same_v<T, float>) {
        Sgemm(false, false, rows, hs, keys, 1.0f, probs.data(), keys, head.v, head.ld, 0.0f, o, C);
      } else {
        Sgemm(false, false, rows, hs, keys, 1.0f, probs.data(), keys, head.v, head.ld, 0.0f,
              staged.data(), hs);
        for (int64_t r = 0; r < rows; ++r) {
          for (int64_t d = 0; d < hs; ++d) o[r * C + d] = Store<T>(staged[r * hs + d]);
        }
      }
    }
  });
}

// With P = softmax(S) row-wise and out = P V:
//   dV = P^T dout,  dP = dout V^T,  dS_ij = P_ij (dP_ij - D_i),
//   D_i = sum_j P_ij dP_ij = dout_i . out_i,  dQ = scale dS K,  dK = scale dS^T
//   Q.
// P is recomputed from the saved lse, never stored.
template <typename T>
void AttentionBackwardBlas(const AttentionParams& p, const T* dout, const T* qkv, const T* out,
                           const float* lse, T* dqkv) {
  const int64_t seq = p.T, C = p.C, hs = p.C / p.NH;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hs));
  ForEachHead(p, [&](int64_t b, int64_t h) {
    const HeadQkv<T> head(p, qkv, b, h);
    std::vector<float> probs(kQueryBlock * seq), dprobs(kQueryBlock * seq);
    std::vector<float> dout_blk(kQueryBlock * hs), dq(kQueryBlock * hs);
    std::vector<float> dk(seq * hs, 0.0f), dv(seq * hs, 0.0f), row_dot(kQueryBlock);
    for (int64_t i0 = 0; i0 < seq; i0 += kQueryBlock) {
      const int64_t rows = std::min(kQueryBlock, seq - i0), keys = i0 + rows;
      for (int64_t r = 0; r < rows; ++r) {
        const T* dout_r = dout + (b * seq + i0 + r) * C + h * hs;
        const T* out_r = out + (b * seq + i0 + r) * C + h * hs;
        float dot = 0;
        for (int64_t d = 0; d < hs; ++d) {
          dout_blk[r * hs + d] = Load(dout_r[d]);
          dot += dout_blk[r * hs + d] * Load(out_r[d]);
        }
        row_dot[r] = dot;
      }
      Sgemm(false, true, rows, keys, hs, scale, head.q + i0 * head.ld, head.ld, head.k, head.ld,
            0.0f, probs.data(), keys);
      Sgemm(false, true, rows, keys, hs, 1.0f, dout_blk.data(), hs, head.v, head.ld, 0.0f,
            dprobs.data(), keys);
      for (int64_t r = 0; r < rows; ++r) {
        float* prow = probs.data() + r * keys;
        float* dsrow = dprobs.data() + r * keys;
        const float row_lse = lse[(b * p.NH + h) * seq + i0 + r];
        const int64_t valid = i0 + r + 1;
        for (int64_t j = 0; j < valid; ++j) {
          prow[j] = std::exp(prow[j] - row_lse);
          // dS, pre-multiplied by scale for dQ and dK.
          dsrow[j] = scale * prow[j] * (dsrow[j] - row_dot[r]);
        }
        std::fill(prow + valid, prow + keys, 0.0f);
        std::fill(dsrow + valid, dsrow + keys, 0.0f);
      }
      Sgemm(true, false, keys, hs, rows, 1.0f, probs.data(), keys, dout_blk.data(), hs, 1.0f,
            dv.data(), hs);
      Sgemm(true, false, keys, hs, rows, 1.0f, dprobs.data(), keys, head.q + i0 * head.ld, head.ld,
            1.0f, dk.data(), hs);
      Sgemm(false, false, rows, hs, keys, 1.0f, dprobs.data(), keys, head.k, head.ld, 0.0f,
            dq.data(), hs);
      for (int64_t r = 0; r < rows; ++r) {
        T* dq_out = dqkv + (b * seq + i0 + r) * 3 * C + h * hs;
        for (int64_t d = 0; d < hs; ++d) dq_out[d] = Store<T>(dq[r * hs + d]);
      }
    }
    for (int64_t j = 0; j < seq; ++j) {
      T* dk_out = dqkv + (b * seq + j) * 3 * C + C + h * hs;
      T* dv_out = dk_out + C;
      for (int64_t d = 0; d < hs; ++d) {
        dk_out[d] = Store<T>(dk[j * hs + d]);
        dv_out[d] = Store<T>(dv[j * hs + d]);
      }
    }
  });
}

template <typename T>
Acc<T> Dot(const T* a, const T* b, int64_t n) {
  Acc<T> sum = 0;
  for (int64_t d = 0; d < n; ++d) sum += Load(a[d]) * Load(b[d]);
  return sum;
}

}  // namespace

template <typename T>
void AttentionForwardCpu(const AttentionParams& p, const T* qkv, T* out, Acc<T>* lse) {
  if constexpr (!std::is_same_v<T, double>) {
    AttentionForwardBlas(p, qkv, out, lse);
  } else {
    using A = Acc<T>;
    const int64_t seq = p.T, C = p.C, hs = p.C / p.NH;
    const A scale = A(1) / std::sqrt(static_cast<A>(hs));
    ForEachHead(p, [&](int64_t b, int64_t h) {
      std::vector<A> scores(seq), acc(hs);
      for (int64_t i = 0; i < seq; ++i) {
        const T* q = qkv + (b * seq + i) * 3 * C + h * hs;
        // Causal: query i sees keys 0..i.
        A max_score = -std::numeric_limits<A>::infinity();
        for (int64_t j = 0; j <= i; ++j) {
          const T* k = qkv + (b * seq + j) * 3 * C + C + h * hs;
          scores[j] = scale * Dot(q, k, hs);
          max_score = std::max(max_score, scores[j]);
        }
        A sum = 0;
        for (int64_t j = 0; j <= i; ++j) sum += std::exp(scores[j] - max_score);
        const A row_lse = max_score + std::log(sum);

        std::fill(acc.begin(), acc.end(), A(0));
        for (int64_t j = 0; j <= i; ++j) {
          const T* v = qkv + (b * seq + j) * 3 * C + 2 * C + h * hs;
          const A prob = std::exp(scores[j] - row_lse);
          for (int64_t d = 0; d < hs; ++d) acc[d] += prob * Load(v[d]);
        }
        T* o = out + (b * seq + i) * C + h * hs;
        for (int64_t d = 0; d < hs; ++d) o[d] = Store<T>(acc[d]);
        lse[(b * p.NH + h) * seq + i] = row_lse;
      }
    });
  }
}

template <typename T>
void AttentionBackwardCpu(const AttentionParams& p, const T* dout, const T* qkv, const T* out,
                          const Acc<T>* lse, T* dqkv) {
  if constexpr (!std::is_same_v<T, double>) {
    AttentionBackwardBlas(p, dout, qkv, out, lse, dqkv);
  } else {
    using A = Acc<T>;
    const int64_t seq = p.T, C = p.C, hs = p.C / p.NH;
    const A scale = A(1) / std::sqrt(static_cast<A>(hs));
    ForEachHead(p, [&](int64_t b, int64_t h) {
      std::vector<A> dq(hs), dk(seq * hs, A(0)), dv(seq * hs, A(0));
      for (int64_t i = 0; i < seq; ++i) {
        const T* q = qkv + (b * seq + i) * 3 * C + h * hs;
        const T* dout_i = dout + (b * seq + i) * C + h * hs;
        const A row_dot = Dot(dout_i, out + (b * seq + i) * C + h * hs, hs);
        const A row_lse = lse[(b * p.NH + h) * seq + i];
        std::fill(dq.begin(), dq.end(), A(0));
        for (int64_t j = 0; j <= i; ++j) {
          const T* k = qkv + (b * seq + j) * 3 * C + C + h * hs;
          const T* v = k + C;
          const A prob = std::exp(scale * Dot(q, k, hs) - row_lse);
          const A dscore = prob * (Dot(dout_i, v, hs) - row_dot);
          for (int64_t d = 0; d < hs; ++d) {
            dv[j * hs + d] += prob * Load(dout_i[d]);
            dq[d] += dscore * scale * Load(k[d]);
            dk[j * hs + d] += dscore * scale * Load(q[d]);
          }
        }
        T* dq_out = dqkv + (b * seq + i) * 3 * C + h * hs;
        for (int64_t d = 0; d < hs; ++d) dq_out[d] = Store<T>(dq[d]);
      }
      for (int64_t j = 0; j < seq; ++j) {
        T* dk_out = dqkv + (b * seq + j) * 3 * C + C + h * hs;
        T* dv_out = dk_out + C;
        for (int64_t d = 0; d < hs; ++d) {
          dk_out[d] = Store<T>(dk[j * hs + d]);
          dv_out[d] = Store<T>(dv[j * hs + d]);
        }
      }
    });
  }
}

#define ZT_INSTANTIATE_ATTENTION_CPU(T)                                                       \
  template void AttentionForwardCpu<T>(const AttentionParams&, const T*, T*, Acc<T>*);        \
  template void AttentionBackwardCpu<T>(const AttentionParams&, const T*, const T*, const T*, \
                                        const Acc<T>*, T*);
ZT_INSTANTIATE_ATTENTION_CPU(float)
ZT_INSTANTIATE_ATTENTION_CPU(Half)
ZT_INSTANTIATE_ATTENTION_CPU(BFloat16)
ZT_INSTANTIATE_ATTENTION_CPU(double)
#undef ZT_INSTANTIATE_ATTENTION_CPU

absl::Status AttentionForward(const OpContext& ctx, const AttentionParams& p, const void* qkv,
                              void* out, float* lse) {
  constexpr char kOp[] = "AttentionForward";
  if (absl::Status s = ValidateParams(p, kOp); !s.ok()) return s;
  for (const auto& [ptr, name] :
       {std::pair<const void*, const char*>{qkv, "qkv"}, {out, "out"}, {lse, "lse"}}) {
    if (absl::Status s = RequireNonNull(ptr, kOp, name); !s.ok()) return s;
  }
  if (ctx.is_cpu()) {
    DispatchDType(p.dtype, [&](auto tag) {
      using T = typename decltype(tag)::type;
      AttentionForwardCpu<T>(p, static_cast<const T*>(qkv), static_cast<T*>(out), lse);
    });
    return absl::OkStatus();
  }
#if ZT_WITH_CUDA
  return attention_internal::LaunchAttentionForward(ctx.stream, p.B, p.T, p.C, p.NH, p.dtype, qkv,
                                                    out, lse);
#else
  return CudaNotBuilt(kOp);
#endif
}

// The CUDA backward keeps D = rowsum(dout * out) in fp32 between its passes;
// the CPU reference needs no workspace.
size_t AttentionBackwardWorkspaceBytes(const AttentionParams& p) {
  if (p.B <= 0 || p.NH <= 0 || p.T <= 0) return 0;
  return static_cast<size_t>(p.B * p.NH * p.T) * sizeof(float);
}

absl::Status AttentionBackward(const OpContext& ctx, const AttentionParams& p, const void* dout,
                               const void* qkv, const void* out, const float* lse, void* dqkv) {
  constexpr char kOp[] = "AttentionBackward";
  if (absl::Status s = ValidateParams(p, kOp); !s.ok()) return s;
  for (const auto& [ptr, name] : {std::pair<const void*, const char*>{dout, "dout"},
                                  {qkv, "qkv"},
                                  {out, "out"},
                                  {lse, "lse"},
                                  {dqkv, "dqkv"}}) {
    if (absl::Status s = RequireNonNull(ptr, kOp, name); !s.ok()) return s;
  }
  if (ctx.is_cpu()) {
    DispatchDType(p.dtype, [&](auto tag) {
      using T = typename decltype(tag)::type;
      AttentionBackwardCpu<T>(p, static_cast<const T*>(dout), static_cast<const T*>(qkv),
                              static_cast<const T*>(out), lse, static_cast<T*>(dqkv));
    });
    return absl::OkStatus();
  }
#if ZT_WITH_CUDA
  const size_t need = AttentionBackwardWorkspaceBytes(p);
  if (ctx.workspace == nullptr || ctx.workspace_bytes < need) {
    return absl::ResourceExhaustedError(
        absl::StrCat(kOp, ": workspace has ", ctx.workspace_bytes, " bytes",
                     ctx.workspace == nullptr ? " (null)" : "", ", needs ", need,
                     " (AttentionBackwardWorkspaceBytes)"));
  }
  return attention_internal::LaunchAttentionBackward(ctx.stream, p.B, p.T, p.C, p.NH, p.dtype, dout,
                                                     qkv, out, lse,
                                                     static_cast<float*>(ctx.workspace), dqkv);
#else
  return CudaNotBuilt(kOp);
#endif
}

}  // namespace zt::kernels
