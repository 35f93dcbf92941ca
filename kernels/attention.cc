#include "kernels/attention.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/attention_ref.h"
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
// bits; small problems stay on the calling thread, where starting threads
// would cost more than the work.
template <typename Fn>
void ForEachHead(const AttentionParams& p, const Fn& fn) {
  const int64_t pairs = p.B * p.NH;
  const double flops = static_cast<double>(pairs) * p.T * p.T * (p.C / p.NH);
  const int64_t threads =
      std::min<int64_t>(pairs, std::max(1u, std::thread::hardware_concurrency()));
  if (threads <= 1 || flops < 4e6) {
    for (int64_t i = 0; i < pairs; ++i) fn(i / p.NH, i % p.NH);
    return;
  }
  std::vector<std::thread> workers;
  workers.reserve(threads);
  for (int64_t w = 0; w < threads; ++w) {
    workers.emplace_back([&, w] {
      for (int64_t i = w; i < pairs; i += threads) fn(i / p.NH, i % p.NH);
    });
  }
  for (auto& t : workers) t.join();
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

// With P = softmax(S) row-wise and out = P V:
//   dV = P^T dout,  dP = dout V^T,  dS_ij = P_ij (dP_ij - D_i),
//   D_i = sum_j P_ij dP_ij = dout_i . out_i,  dQ = scale dS K,  dK = scale dS^T Q.
// P is recomputed from the saved lse, never stored.
template <typename T>
void AttentionBackwardCpu(const AttentionParams& p, const T* dout, const T* qkv, const T* out,
                          const Acc<T>* lse, T* dqkv) {
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
