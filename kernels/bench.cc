// Kernel benchmark at GPT-2 124M shapes: every op's forward and backward,
// timed on the GPU, against the device's peaks measured in the same run.
//
//   bazel run --config=cuda //kernels:bench -- --batch=8 --dtype=both
//
// Memory-bound ops report GB/s over the bytes the op must move (stated per
// op below: each input read once, each output written once, accumulated
// outputs read and written) and compare with a device-to-device
// cudaMemcpyAsync of 1 GiB (2 GiB moved). Matmuls report TFLOP/s and compare
// with a bare cuBLASLt GEMM of the same shapes, transposes and workspace, no
// epilogue (ratio = bare time / our time). Attention reports TFLOP/s against
// the fastest bare GEMM of the run (no target: the issue sets none).
//
// Timing: each iteration gets its own cudaEvent pair; the median is reported.
// The stream is held closed while a batch of iterations is enqueued (see
// StreamGate), so the events time GPU execution, not the host-side cost of
// enqueuing. Before every timed iteration a read-only pass over a buffer
// twice the size of L2 evicts the previous iteration's data (cold cache).
//
// Exit status: 0 when every op ran (whether or not it met its target), 1 on
// an error, including no visible GPU.

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/types/span.h"
#include "kernels/accumulate.h"
#include "kernels/adamw.h"
#include "kernels/attention.h"
#include "core/dtype.h"
#include "core/library_errors.h"
#include "core/status_macros.h"
#include "kernels/cross_entropy.h"
#include "kernels/embedding.h"
#include "kernels/gelu.h"
#include "kernels/grad_utils.h"
#include "kernels/layernorm.h"
#include "kernels/matmul.h"
#include "kernels/op_context.h"

ABSL_FLAG(int, iters, 50, "Timed iterations per op (the median is reported).");
ABSL_FLAG(int, warmup, 5, "Untimed iterations per op before timing (at least 1 runs).");
ABSL_FLAG(int, batch, 8, "Batch size B (1..16); sequence length is 1024.");
ABSL_FLAG(std::string, dtype, "both", "Storage dtype: bf16, fp16 or both.");

namespace zt::kernels {
namespace {

// GPT-2 124M.
constexpr int64_t kT = 1024;
constexpr int64_t kC = 768;
constexpr int64_t kNH = 12;
constexpr int64_t kLayers = 12;
constexpr int64_t kVocab = 50257;
constexpr int64_t kPaddedVocab = 50304;

// Room for cuBLASLt's heuristics; the ops' own scratch may raise it.
constexpr size_t kMinWorkspaceBytes = size_t{32} << 20;
constexpr size_t kCopyBytes = size_t{1} << 30;

// Targets from the issue (on an H100).
constexpr double kBandwidthTarget = 0.80;  // of the measured copy bandwidth
constexpr double kGemmTarget = 0.90;       // bare GEMM time / our time

// ------------------------------------------------------------ CUDA helpers --

class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  static absl::StatusOr<DeviceBuffer> Allocate(size_t bytes) {
    DeviceBuffer b;
    ZT_CUDA_RETURN_IF_ERROR(cudaMalloc(&b.ptr_, std::max<size_t>(bytes, 1)));
    b.bytes_ = bytes;
    return b;
  }
  ~DeviceBuffer() {
    if (ptr_ != nullptr) cudaFree(ptr_);
  }
  DeviceBuffer(DeviceBuffer&& o) noexcept
      : ptr_(std::exchange(o.ptr_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    std::swap(ptr_, o.ptr_);
    std::swap(bytes_, o.bytes_);
    return *this;
  }
  void* get() const { return ptr_; }
  template <typename U>
  U* as() const {
    return static_cast<U*>(ptr_);
  }
  size_t bytes() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

// Deterministic and fast enough to fill a few GB of inputs (xorshift64*).
class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed | 1) {}
  uint64_t Next() {
    s_ ^= s_ >> 12;
    s_ ^= s_ << 25;
    s_ ^= s_ >> 27;
    return s_ * 0x2545F4914F6CDD1Dull;
  }
  float Uniform(float lo, float hi) {
    return lo + (hi - lo) * static_cast<float>(Next() >> 40) * (1.0f / 16777216.0f);
  }

 private:
  uint64_t s_;
};

// Host chunks above this size are generated once and tiled over the buffer:
// the values stay realistic without spending seconds on the host per GB.
constexpr int64_t kFillChunk = int64_t{1} << 24;

absl::Status FillUniform(Rng& rng, void* dst, DType dtype, int64_t n, float lo, float hi) {
  const int64_t chunk = std::min(n, kFillChunk);
  const size_t elem = DTypeSize(dtype);
  std::vector<uint8_t> host(static_cast<size_t>(chunk) * elem);
  for (int64_t i = 0; i < chunk; ++i) {
    const float f = rng.Uniform(lo, hi);
    switch (dtype) {
      case DType::kFloat16:
        reinterpret_cast<uint16_t*>(host.data())[i] = Half::FromFloat(f).bits;
        break;
      case DType::kBFloat16:
        reinterpret_cast<uint16_t*>(host.data())[i] = BFloat16::FromFloat(f).bits;
        break;
      default:
        reinterpret_cast<float*>(host.data())[i] = f;
    }
  }
  for (int64_t off = 0; off < n; off += chunk) {
    const int64_t len = std::min(chunk, n - off);
    ZT_CUDA_RETURN_IF_ERROR(cudaMemcpy(static_cast<uint8_t*>(dst) + off * elem, host.data(),
                                       len * elem, cudaMemcpyHostToDevice));
  }
  return absl::OkStatus();
}

cudaDataType_t CudaType(DType dtype) {
  return dtype == DType::kFloat16 ? CUDA_R_16F
                                  : dtype == DType::kBFloat16 ? CUDA_R_16BF : CUDA_R_32F;
}

// One column-major cublasLtMatmul, D[m, n] = op(A) op(B) + beta D, with the
// same compute type (fp32), workspace and default alignment as the op's
// own calls but no epilogue; the algorithm is chosen once.
class BareGemm {
 public:
  struct Shape {
    bool trans_a = false, trans_b = false;
    int64_t m = 0, n = 0, k = 0;
    const void* a = nullptr;
    int64_t lda = 0;
    const void* b = nullptr;
    int64_t ldb = 0;
    void* d = nullptr;
    int64_t ldd = 0;
    float beta = 0.0f;
  };

  BareGemm() = default;
  BareGemm(const BareGemm&) = delete;
  BareGemm& operator=(const BareGemm&) = delete;
  ~BareGemm() {
    if (pref_ != nullptr) cublasLtMatmulPreferenceDestroy(pref_);
    if (d_ != nullptr) cublasLtMatrixLayoutDestroy(d_);
    if (b_ != nullptr) cublasLtMatrixLayoutDestroy(b_);
    if (a_ != nullptr) cublasLtMatrixLayoutDestroy(a_);
    if (op_ != nullptr) cublasLtMatmulDescDestroy(op_);
  }

  absl::Status Init(const OpContext& ctx, DType dtype, const Shape& s) {
    ctx_ = ctx;
    s_ = s;
    const auto handle = static_cast<cublasLtHandle_t>(ctx.cublaslt_handle);
    const cudaDataType_t type = CudaType(dtype);
    ZT_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulDescCreate(&op_, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    const cublasOperation_t ta = s.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    const cublasOperation_t tb = s.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    ZT_CUBLAS_RETURN_IF_ERROR(
        cublasLtMatmulDescSetAttribute(op_, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
    ZT_CUBLAS_RETURN_IF_ERROR(
        cublasLtMatmulDescSetAttribute(op_, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
    ZT_CUBLAS_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(&a_, type, s.trans_a ? s.k : s.m,
                                                         s.trans_a ? s.m : s.k, s.lda));
    ZT_CUBLAS_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(&b_, type, s.trans_b ? s.n : s.k,
                                                         s.trans_b ? s.k : s.n, s.ldb));
    ZT_CUBLAS_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(&d_, type, s.m, s.n, s.ldd));
    ZT_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulPreferenceCreate(&pref_));
    const uint64_t ws = ctx.workspace_bytes;
    ZT_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulPreferenceSetAttribute(
        pref_, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)));
    int found = 0;
    ZT_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulAlgoGetHeuristic(handle, op_, a_, b_, d_, d_, pref_, 1,
                                                             &heuristic_, &found));
    if (found == 0) {
      return absl::InternalError(absl::StrCat("bare GEMM: cuBLASLt has no algorithm for m=", s.m,
                                              " n=", s.n, " k=", s.k));
    }
    return absl::OkStatus();
  }

  absl::Status Run() const {
    const float alpha = 1.0f;
    ZT_CUBLAS_RETURN_IF_ERROR(cublasLtMatmul(
        static_cast<cublasLtHandle_t>(ctx_.cublaslt_handle), op_, &alpha, s_.a, a_, s_.b, b_,
        &s_.beta, s_.d, d_, s_.d, d_, &heuristic_.algo, ctx_.workspace, ctx_.workspace_bytes,
        ctx_.stream));
    return absl::OkStatus();
  }

 private:
  OpContext ctx_;
  Shape s_;
  cublasLtMatmulDesc_t op_ = nullptr;
  cublasLtMatrixLayout_t a_ = nullptr, b_ = nullptr, d_ = nullptr;
  cublasLtMatmulPreference_t pref_ = nullptr;
  cublasLtMatmulHeuristicResult_t heuristic_ = {};
};

// ------------------------------------------------------------------ timing --

// A host function enqueued ahead of a batch of timed iterations blocks the
// stream until the whole batch is enqueued. Without it, each start event
// could fire while the host is still enqueuing that iteration's work (our
// matmuls query cuBLASLt's heuristic on every call), timing host gaps
// instead of the kernels. It never waits longer than kGateTimeout, so an op
// that synchronized the host would show up as an error, not a hang.
struct StreamGate {
  std::atomic<bool> open{false};
  std::atomic<bool> timed_out{false};
};
constexpr auto kGateTimeout = std::chrono::seconds(20);
// Iterations enqueued behind one gate: a few hundred queued launches, well
// within what the driver accepts without blocking the host.
constexpr int kItersPerGate = 32;

void CUDART_CB HoldStream(void* arg) {
  auto* gate = static_cast<StreamGate*>(arg);
  const auto deadline = std::chrono::steady_clock::now() + kGateTimeout;
  while (!gate->open.load(std::memory_order_acquire)) {
    if (std::chrono::steady_clock::now() > deadline) {
      gate->timed_out.store(true);
      return;
    }
    std::this_thread::yield();
  }
}

class Timer {
 public:
  // `flush` is an fp32 buffer of `flush_n` elements, larger than L2.
  static absl::StatusOr<std::unique_ptr<Timer>> Create(const OpContext& ctx, const float* flush,
                                                       int64_t flush_n, int warmup, int iters) {
    auto t = std::unique_ptr<Timer>(new Timer(ctx, flush, flush_n, warmup, iters));
    t->events_.resize(2 * kItersPerGate);
    for (cudaEvent_t& e : t->events_) ZT_CUDA_RETURN_IF_ERROR(cudaEventCreate(&e));
    ZT_CUDA_RETURN_IF_ERROR(cudaMalloc(&t->flush_out_, sizeof(float)));
    return t;
  }
  ~Timer() {
    for (cudaEvent_t e : events_) {
      if (e != nullptr) cudaEventDestroy(e);
    }
    if (flush_out_ != nullptr) cudaFree(flush_out_);
  }

  // Median GPU time of `op` in microseconds.
  absl::StatusOr<double> MedianUs(const std::function<absl::Status()>& op) {
    // At least one untimed round, flush included: a kernel's first launch
    // may load its module (CUDA's lazy loading), which waits for the device
    // and so must not happen while the gate holds the stream.
    for (int i = 0; i < std::max(warmup_, 1); ++i) {
      ZT_RETURN_IF_ERROR(Flush());
      ZT_RETURN_IF_ERROR(op());
    }
    ZT_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(ctx_.stream));
    std::vector<double> us;
    for (int done = 0; done < iters_;) {
      const int n = std::min(kItersPerGate, iters_ - done);
      StreamGate gate;
      ZT_CUDA_RETURN_IF_ERROR(cudaLaunchHostFunc(ctx_.stream, HoldStream, &gate));
      const absl::Status enqueued = EnqueueTimed(op, n);
      gate.open.store(true, std::memory_order_release);
      // The gate lives on this frame: wait for the host function before
      // anything can return.
      const cudaError_t synced = cudaStreamSynchronize(ctx_.stream);
      ZT_RETURN_IF_ERROR(enqueued);
      ZT_CUDA_RETURN_IF_ERROR(synced);
      if (gate.timed_out.load()) {
        return absl::InternalError(
            "the op blocked the host while its stream was held (does it synchronize?)");
      }
      for (int i = 0; i < n; ++i) {
        float ms = 0;
        ZT_CUDA_RETURN_IF_ERROR(cudaEventElapsedTime(&ms, events_[2 * i], events_[2 * i + 1]));
        us.push_back(1e3 * ms);
      }
      done += n;
    }
    std::sort(us.begin(), us.end());
    const size_t mid = us.size() / 2;
    return us.size() % 2 == 1 ? us[mid] : 0.5 * (us[mid - 1] + us[mid]);
  }

 private:
  Timer(const OpContext& ctx, const float* flush, int64_t flush_n, int warmup, int iters)
      : ctx_(ctx), flush_(flush), flush_n_(flush_n), warmup_(warmup), iters_(iters) {}

  // Reading (not writing, as a memset would) leaves L2 full of clean lines,
  // so evicting them costs the timed op no write-back.
  absl::Status Flush() {
    const ConstTensorRef flush{flush_, flush_n_};
    return SquaredNorm(ctx_, DType::kFloat32, absl::MakeConstSpan(&flush, 1),
                       static_cast<float*>(flush_out_));
  }

  absl::Status EnqueueTimed(const std::function<absl::Status()>& op, int n) {
    for (int i = 0; i < n; ++i) {
      ZT_RETURN_IF_ERROR(Flush());
      ZT_CUDA_RETURN_IF_ERROR(cudaEventRecord(events_[2 * i], ctx_.stream));
      ZT_RETURN_IF_ERROR(op());
      ZT_CUDA_RETURN_IF_ERROR(cudaEventRecord(events_[2 * i + 1], ctx_.stream));
    }
    return absl::OkStatus();
  }

  OpContext ctx_;
  const float* flush_;
  int64_t flush_n_;
  int warmup_, iters_;
  std::vector<cudaEvent_t> events_;
  void* flush_out_ = nullptr;
};

// ----------------------------------------------------------------- results --

enum class Reference {
  kCopy,      // bytes / time against the copy bandwidth
  kBareGemm,  // bare GEMM time / our time
  kGemmPeak,  // FLOP/s against the fastest bare GEMM of the run
};

struct Row {
  std::string dtype;
  std::string op;
  Reference ref = Reference::kCopy;
  double bytes = 0;  // kCopy
  double flops = 0;  // kBareGemm, kGemmPeak
  double us = 0;
  double bare_us = 0;  // kBareGemm
  double ratio = 0;
  bool has_target = false;
  bool met = false;
  std::string error;
};

struct Peaks {
  double copy_gbps = 0;
  double gemm_tflops = 0;  // per dtype, set before the attention rows
};

// ------------------------------------------------------------------- bench --

struct Gpt2Param {
  int64_t n;
  bool decay;
};

// GPT-2 124M's tensors in llm.c's order; weight decay on the matrices only.
std::vector<Gpt2Param> Gpt2Params() {
  std::vector<Gpt2Param> p = {{kPaddedVocab * kC, true}, {kT * kC, true}};
  for (int l = 0; l < kLayers; ++l) {
    const std::vector<Gpt2Param> layer = {
        {kC, false},          {kC, false},          // ln1
        {3 * kC * kC, true},  {3 * kC, false},      // qkv
        {kC * kC, true},      {kC, false},          // attention projection
        {kC, false},          {kC, false},          // ln2
        {4 * kC * kC, true},  {4 * kC, false},      // fc
        {kC * 4 * kC, true},  {kC, false},          // fc projection
    };
    p.insert(p.end(), layer.begin(), layer.end());
  }
  p.push_back({kC, false});  // ln_f
  p.push_back({kC, false});
  return p;
}

class DTypeBench {
 public:
  DTypeBench(DType dtype, int64_t B, const OpContext& ctx, Timer& timer, Peaks& peaks,
             std::vector<Row>& rows)
      : dtype_(dtype),
        s_(DTypeSize(dtype)),
        B_(B),
        M_(B * kT),
        ctx_(ctx),
        timer_(timer),
        peaks_(peaks),
        rows_(rows),
        rng_(0x5EED0000u + static_cast<uint64_t>(dtype)) {}

  absl::Status Run() {
    ZT_RETURN_IF_ERROR(Setup());
    MatmulRows();
    peaks_.gemm_tflops = best_gemm_tflops_;
    OtherRows();
    return absl::OkStatus();
  }

 private:
  // Allocates a T (or given-dtype) buffer filled uniformly in [lo, hi).
  absl::StatusOr<void*> Tensor(int64_t n, float lo, float hi, DType dtype) {
    ZT_ASSIGN_OR_RETURN(DeviceBuffer b, DeviceBuffer::Allocate(n * DTypeSize(dtype)));
    ZT_RETURN_IF_ERROR(FillUniform(rng_, b.get(), dtype, n, lo, hi));
    buffers_.push_back(std::move(b));
    return buffers_.back().get();
  }
  absl::StatusOr<void*> Tensor(int64_t n, float lo, float hi) { return Tensor(n, lo, hi, dtype_); }
  absl::StatusOr<float*> F32(int64_t n, float lo, float hi) {
    ZT_ASSIGN_OR_RETURN(void* p, Tensor(n, lo, hi, DType::kFloat32));
    return static_cast<float*>(p);
  }
  absl::StatusOr<int32_t*> Ids(int64_t n, int64_t bound, std::vector<int32_t>* host) {
    host->resize(n);
    for (auto& id : *host) id = static_cast<int32_t>(rng_.Next() % bound);
    ZT_ASSIGN_OR_RETURN(DeviceBuffer b, DeviceBuffer::Allocate(n * sizeof(int32_t)));
    ZT_CUDA_RETURN_IF_ERROR(
        cudaMemcpy(b.get(), host->data(), n * sizeof(int32_t), cudaMemcpyHostToDevice));
    buffers_.push_back(std::move(b));
    return buffers_.back().as<int32_t>();
  }

  absl::Status Setup() {
    const int64_t M = M_;
    // GPT-2 initialises weights with std 0.02: uniform of the same spread.
    constexpr float kW = 0.035f;
    constexpr float kGrad = 0.01f;
    ZT_ASSIGN_OR_RETURN(tokens_, Ids(M, kVocab, &host_tokens_));
    std::vector<int32_t> host_targets;
    ZT_ASSIGN_OR_RETURN(targets_, Ids(M, kVocab, &host_targets));
    ZT_ASSIGN_OR_RETURN(wte_, Tensor(kPaddedVocab * kC, -kW, kW));
    ZT_ASSIGN_OR_RETURN(wpe_, Tensor(kT * kC, -kW, kW));
    ZT_ASSIGN_OR_RETURN(dwte_, Tensor(kPaddedVocab * kC, -1e-3f, 1e-3f));
    ZT_ASSIGN_OR_RETURN(dwpe_, Tensor(kT * kC, -1e-3f, 1e-3f));
    ZT_ASSIGN_OR_RETURN(x_, Tensor(M * kC, -1, 1));
    ZT_ASSIGN_OR_RETURN(x2_, Tensor(M * kC, -1, 1));
    ZT_ASSIGN_OR_RETURN(residual_, Tensor(M * kC, -1, 1));
    ZT_ASSIGN_OR_RETURN(ln_out_, Tensor(M * kC, -1, 1));
    ZT_ASSIGN_OR_RETURN(ln_w_, Tensor(kC, 0.9f, 1.1f));
    ZT_ASSIGN_OR_RETURN(ln_b_, Tensor(kC, -0.01f, 0.01f));
    ZT_ASSIGN_OR_RETURN(dln_w_, Tensor(kC, -kGrad, kGrad));
    ZT_ASSIGN_OR_RETURN(dln_b_, Tensor(kC, -kGrad, kGrad));
    ZT_ASSIGN_OR_RETURN(mean_, F32(M, -0.1f, 0.1f));
    ZT_ASSIGN_OR_RETURN(rstd_, F32(M, 0.9f, 1.1f));
    ZT_ASSIGN_OR_RETURN(dx_, Tensor(M * kC, -kGrad, kGrad));
    ZT_ASSIGN_OR_RETURN(dout_c_, Tensor(M * kC, -kGrad, kGrad));
    ZT_ASSIGN_OR_RETURN(qkv_, Tensor(M * 3 * kC, -1, 1));
    ZT_ASSIGN_OR_RETURN(dqkv_, Tensor(M * 3 * kC, -kGrad, kGrad));
    ZT_ASSIGN_OR_RETURN(atty_, Tensor(M * kC, -1, 1));
    ZT_ASSIGN_OR_RETURN(lse_, F32(B_ * kNH * kT, 0, 1));
    ZT_ASSIGN_OR_RETURN(fc_pre_, Tensor(M * 4 * kC, -2, 2));
    ZT_ASSIGN_OR_RETURN(fc_out_, Tensor(M * 4 * kC, -1, 1));
    ZT_ASSIGN_OR_RETURN(dfc_, Tensor(M * 4 * kC, -kGrad, kGrad));
    ZT_ASSIGN_OR_RETURN(logits_, Tensor(M * kPaddedVocab, -2, 2));
    ZT_ASSIGN_OR_RETURN(losses_, F32(M, 0, 1));
    // Matmul weights, their gradients and biases, per layer shape [N, K].
    for (Linear* l : {&qkv_l_, &proj_l_, &fc_l_, &fcproj_l_}) {
      ZT_ASSIGN_OR_RETURN(l->w, Tensor(l->N * l->K, -kW, kW));
      ZT_ASSIGN_OR_RETURN(l->dw, Tensor(l->N * l->K, -1e-3f, 1e-3f));
      ZT_ASSIGN_OR_RETURN(l->b, Tensor(l->N, -0.01f, 0.01f));
      ZT_ASSIGN_OR_RETURN(l->db, Tensor(l->N, -1e-3f, 1e-3f));
    }

    // Optimizer state over all of GPT-2's parameters, as flat buffers.
    params_ = Gpt2Params();
    for (const Gpt2Param& p : params_) num_params_ += p.n;
    ZT_ASSIGN_OR_RETURN(master_, F32(num_params_, -kW, kW));
    ZT_ASSIGN_OR_RETURN(adam_m_, F32(num_params_, -1e-4f, 1e-4f));
    ZT_ASSIGN_OR_RETURN(adam_v_, F32(num_params_, 0, 1e-7f));
    ZT_ASSIGN_OR_RETURN(grads_, Tensor(num_params_, -1e-3f, 1e-3f));
    ZT_ASSIGN_OR_RETURN(grads2_, Tensor(num_params_, -1e-3f, 1e-3f));
    ZT_ASSIGN_OR_RETURN(param16_, Tensor(num_params_, -kW, kW));
    ZT_ASSIGN_OR_RETURN(DeviceBuffer flag, DeviceBuffer::Allocate(sizeof(int32_t)));
    ZT_CUDA_RETURN_IF_ERROR(cudaMemset(flag.get(), 0, sizeof(int32_t)));
    found_nonfinite_ = flag.as<int32_t>();
    buffers_.push_back(std::move(flag));
    ZT_ASSIGN_OR_RETURN(DeviceBuffer scalar, DeviceBuffer::Allocate(sizeof(float)));
    norm_out_ = scalar.as<float>();
    buffers_.push_back(std::move(scalar));
    return absl::OkStatus();
  }

  // --- matmuls ---

  struct Linear {
    const char* name;
    int64_t N, K;
    bool bias;
    void *w = nullptr, *dw = nullptr, *b = nullptr, *db = nullptr;
  };

  void AddRow(Row row) {
    row.dtype = std::string(DTypeName(dtype_));
    rows_.push_back(std::move(row));
  }

  void AddError(std::string op, const absl::Status& s) {
    Row row;
    row.op = std::move(op);
    row.error = s.ToString();
    AddRow(std::move(row));
  }

  // Times `ours` against the bare GEMMs (run back to back in one interval).
  void GemmRow(std::string op, double flops, const std::function<absl::Status()>& ours,
               const std::vector<BareGemm::Shape>& bare_shapes) {
    std::vector<std::unique_ptr<BareGemm>> bare;
    for (const BareGemm::Shape& s : bare_shapes) {
      bare.push_back(std::make_unique<BareGemm>());
      if (absl::Status st = bare.back()->Init(ctx_, dtype_, s); !st.ok()) {
        return AddError(std::move(op), st);
      }
    }
    absl::StatusOr<double> ours_us = timer_.MedianUs(ours);
    if (!ours_us.ok()) return AddError(std::move(op), ours_us.status());
    absl::StatusOr<double> bare_us = timer_.MedianUs([&]() -> absl::Status {
      for (const auto& g : bare) ZT_RETURN_IF_ERROR(g->Run());
      return absl::OkStatus();
    });
    if (!bare_us.ok()) return AddError(std::move(op), bare_us.status());
    Row row;
    row.op = std::move(op);
    row.ref = Reference::kBareGemm;
    row.flops = flops;
    row.us = *ours_us;
    row.bare_us = *bare_us;
    row.ratio = *bare_us / *ours_us;
    row.has_target = true;
    row.met = row.ratio >= kGemmTarget;
    best_gemm_tflops_ = std::max(best_gemm_tflops_, flops / *bare_us * 1e-6);
    AddRow(std::move(row));
  }

  // Forward: out [M, N] = inp [M, K] @ w^T + b (+ GELU); backward: dinp,
  // dweight (+=) and dbias (+=). FLOPs: 2MNK forward, 4MNK backward.
  void LinearRows(const Linear& l, const void* inp, void* out, void* pre_gelu, const void* dout,
                  void* dinp, const void* inp_pre_gelu) {
    const int64_t M = M_, N = l.N, K = l.K;
    MatmulForwardParams f;
    f.inp = inp;
    f.weight = l.w;
    f.bias = l.bias ? l.b : nullptr;
    f.out = out;
    f.pre_gelu = pre_gelu;
    f.M = M;
    f.N = N;
    f.K = K;
    f.dtype = dtype_;
    // out^T [N, M] = W [N, K] (column-major [K, N], op T) * inp^T [K, M].
    BareGemm::Shape fwd{true, false, N, M, K, l.w, K, inp, K, out, N, 0.0f};
    GemmRow(absl::StrCat("matmul ", l.name, " fwd"), 2.0 * M * N * K,
            [&] { return MatmulForward(ctx_, f); }, {fwd});

    MatmulBackwardParams b;
    b.dout = dout;
    b.inp = inp;
    b.weight = l.w;
    b.dinp = dinp;
    b.inp_pre_gelu = inp_pre_gelu;
    b.dweight = l.dw;
    b.dbias = l.bias ? l.db : nullptr;
    b.M = M;
    b.N = N;
    b.K = K;
    b.dtype = dtype_;
    // dinp^T [K, M] = W^T * dout^T; dweight^T [K, N] += inp^T * dout.
    BareGemm::Shape dgrad{false, false, K, M, N, l.w, K, dout, N, dinp, K, 0.0f};
    BareGemm::Shape wgrad{false, true, K, N, M, inp, K, dout, N, l.dw, K, 1.0f};
    GemmRow(absl::StrCat("matmul ", l.name, " bwd"), 4.0 * M * N * K,
            [&] { return MatmulBackward(ctx_, b); }, {dgrad, wgrad});
  }

  void MatmulRows() {
    // Each layer's input and output as in GPT-2's block.
    LinearRows(qkv_l_, ln_out_, qkv_, nullptr, dqkv_, dx_, nullptr);
    LinearRows(proj_l_, atty_, x2_, nullptr, dout_c_, dx_, nullptr);
    LinearRows(fc_l_, ln_out_, fc_out_, fc_pre_, dfc_, dx_, nullptr);
    LinearRows(fcproj_l_, fc_out_, x2_, nullptr, dout_c_, dfc_, fc_pre_);
    // Tied lm-head: logits = ln_f(x) @ wte^T, no bias; dwte accumulates.
    Linear head{"lm-head", kPaddedVocab, kC, false, wte_, dwte_, nullptr, nullptr};
    LinearRows(head, ln_out_, logits_, nullptr, logits_, dx_, nullptr);
  }

  // --- memory-bound ops and attention ---

  void BandwidthRow(std::string op, double bytes, const std::function<absl::Status()>& fn) {
    absl::StatusOr<double> us = timer_.MedianUs(fn);
    if (!us.ok()) return AddError(std::move(op), us.status());
    Row row;
    row.op = std::move(op);
    row.ref = Reference::kCopy;
    row.bytes = bytes;
    row.us = *us;
    row.ratio = bytes / *us * 1e-3 / peaks_.copy_gbps;
    row.has_target = true;
    row.met = row.ratio >= kBandwidthTarget;
    AddRow(std::move(row));
  }

  void FlopRow(std::string op, double flops, const std::function<absl::Status()>& fn) {
    absl::StatusOr<double> us = timer_.MedianUs(fn);
    if (!us.ok()) return AddError(std::move(op), us.status());
    Row row;
    row.op = std::move(op);
    row.ref = Reference::kGemmPeak;
    row.flops = flops;
    row.us = *us;
    row.ratio = peaks_.gemm_tflops > 0 ? flops / *us * 1e-6 / peaks_.gemm_tflops : 0;
    AddRow(std::move(row));
  }

  void OtherRows() {
    const double s = static_cast<double>(s_);
    const double M = static_cast<double>(M_), C = kC, T = kT, f32 = 4, i32 = 4;

    // GELU on the MLP's [M, 4C]: read inp, write out; backward reads dout
    // and inp, writes dinp.
    const int64_t n_fc = M_ * 4 * kC;
    BandwidthRow("gelu fwd", 2 * n_fc * s,
                 [&] { return GeluForward(ctx_, dtype_, fc_pre_, fc_out_, n_fc); });
    BandwidthRow("gelu bwd", 3 * n_fc * s,
                 [&] { return GeluBackward(ctx_, dtype_, dfc_, fc_pre_, dfc_, n_fc); });

    // Embedding forward: tokens, the gathered wte rows, wpe once, out.
    // Backward: tokens, dout, and read+write of the dwte rows that occur
    // (unique tokens) and of dwpe.
    EmbeddingParams ep;
    ep.B = B_;
    ep.T = kT;
    ep.C = kC;
    ep.V = kPaddedVocab;
    ep.dtype = dtype_;
    const double unique =
        absl::flat_hash_set<int32_t>(host_tokens_.begin(), host_tokens_.end()).size();
    BandwidthRow("embedding fwd", M * i32 + M * C * s + T * C * s + M * C * s,
                 [&] { return EmbeddingForward(ctx_, ep, tokens_, wte_, wpe_, x_); });
    BandwidthRow("embedding bwd", M * i32 + M * C * s + 2 * unique * C * s + 2 * T * C * s,
                 [&] { return EmbeddingBackward(ctx_, ep, tokens_, dout_c_, dwte_, dwpe_); });

    // LayerNorm forward: inp, weight, bias, out, mean and rstd. Backward:
    // dout, inp, weight, mean, rstd, and read+write of dinp, dweight, dbias
    // (all accumulate).
    BandwidthRow("layernorm fwd", 2 * M * C * s + 2 * C * s + 2 * M * f32, [&] {
      return LayerNormForward(ctx_, dtype_, M_, kC, x_, ln_w_, ln_b_, ln_out_, mean_, rstd_);
    });
    BandwidthRow("layernorm bwd", 4 * M * C * s + 5 * C * s + 2 * M * f32, [&] {
      return LayerNormBackward(ctx_, dtype_, M_, kC, dout_c_, x_, ln_w_, mean_, rstd_, dx_, dln_w_,
                               dln_b_);
    });
    // Residual + LayerNorm: inp1, inp2, weight, bias, residual, out, stats.
    BandwidthRow("residual+layernorm fwd", 4 * M * C * s + 2 * C * s + 2 * M * f32, [&] {
      return ResidualLayerNormForward(ctx_, dtype_, M_, kC, x_, x2_, ln_w_, ln_b_, residual_,
                                      ln_out_, mean_, rstd_);
    });

    // Causal attention FLOPs (flash-attention's convention): QK^T and PV
    // are 2 * 2 B NH T^2 hs, halved by the causal mask; backward does 5
    // such products instead of 2.
    AttentionParams ap;
    ap.B = B_;
    ap.T = kT;
    ap.C = kC;
    ap.NH = kNH;
    ap.dtype = dtype_;
    const double attn_fwd = 4.0 * B_ * kNH * T * T * (kC / kNH) / 2;
    FlopRow("attention fwd", attn_fwd,
            [&] { return AttentionForward(ctx_, ap, qkv_, atty_, lse_); });
    FlopRow("attention bwd", 2.5 * attn_fwd,
            [&] { return AttentionBackward(ctx_, ap, dout_c_, qkv_, atty_, lse_, dqkv_); });

    // Fused softmax cross-entropy: read the logits, write their gradient in
    // place, targets and losses. (Iterations after the first see gradient
    // values as logits; the work per element is the same.)
    CrossEntropyParams cp;
    cp.rows = M_;
    cp.V = kVocab;
    cp.Vp = kPaddedVocab;
    cp.dtype = dtype_;
    cp.dloss = 1.0f / static_cast<float>(M_);
    BandwidthRow("softmax+xent fwd+bwd", 2 * M * kPaddedVocab * s + M * (i32 + f32),
                 [&] { return SoftmaxCrossEntropy(ctx_, cp, logits_, targets_, losses_); });

    // Optimizer and gradient utilities over all 124M parameters, one
    // multi-tensor launch each.
    std::vector<AdamWTensor> adam;
    std::vector<ConstTensorRef> grad_refs;
    int64_t off = 0;
    for (const Gpt2Param& p : params_) {
      AdamWTensor t;
      t.master = master_ + off;
      t.m = adam_m_ + off;
      t.v = adam_v_ + off;
      t.grad = static_cast<const uint8_t*>(grads_) + off * s_;
      t.param = static_cast<uint8_t*>(param16_) + off * s_;
      t.n = p.n;
      t.decay = p.decay;
      adam.push_back(t);
      grad_refs.push_back({t.grad, p.n});
      off += p.n;
    }
    const double P = static_cast<double>(num_params_);
    AdamWHyper hyper;
    hyper.lr = 6e-4f;
    hyper.weight_decay = 0.1f;
    hyper.step = 10;
    // master, m, v read and written (fp32), grad read, param written.
    BandwidthRow(absl::StrFormat("adamw (%.1fM params)", P * 1e-6), P * (6 * f32 + 2 * s),
                 [&] { return AdamWUpdate(ctx_, dtype_, dtype_, hyper, adam); });
    // Reads every gradient once.
    BandwidthRow("squared norm (all grads)", P * s,
                 [&] { return SquaredNorm(ctx_, dtype_, grad_refs, norm_out_); });
    // Reads and writes every gradient; scale 1 keeps values stable over
    // iterations without changing the work.
    BandwidthRow("scale+check finite", 2 * P * s, [&] {
      return ScaleAndCheckFinite(ctx_, dtype_, grads_, num_params_, 1.0f, found_nonfinite_);
    });
    // fp32 master weights to the 16-bit parameters.
    BandwidthRow(absl::StrCat("cast fp32->", DTypeName(dtype_)), P * (f32 + s), [&] {
      return Cast(ctx_, master_, DType::kFloat32, param16_, dtype_, num_params_);
    });
    // Gradient-shard accumulation (ZeRO): read dst and src, write dst.
    BandwidthRow("accumulate grads", 3 * P * s,
                 [&] { return Accumulate(ctx_, dtype_, grads_, grads2_, num_params_); });
  }

  const DType dtype_;
  const size_t s_;
  const int64_t B_, M_;
  const OpContext ctx_;
  Timer& timer_;
  Peaks& peaks_;
  std::vector<Row>& rows_;
  Rng rng_;
  std::vector<DeviceBuffer> buffers_;
  double best_gemm_tflops_ = 0;

  std::vector<int32_t> host_tokens_;
  int32_t *tokens_ = nullptr, *targets_ = nullptr;
  void *wte_ = nullptr, *wpe_ = nullptr, *dwte_ = nullptr, *dwpe_ = nullptr;
  void *x_ = nullptr, *x2_ = nullptr, *residual_ = nullptr, *ln_out_ = nullptr;
  void *ln_w_ = nullptr, *ln_b_ = nullptr, *dln_w_ = nullptr, *dln_b_ = nullptr;
  float *mean_ = nullptr, *rstd_ = nullptr;
  void *dx_ = nullptr, *dout_c_ = nullptr;
  void *qkv_ = nullptr, *dqkv_ = nullptr, *atty_ = nullptr;
  float* lse_ = nullptr;
  void *fc_pre_ = nullptr, *fc_out_ = nullptr, *dfc_ = nullptr;
  void* logits_ = nullptr;
  float* losses_ = nullptr;
  Linear qkv_l_{"qkv", 3 * kC, kC, true};
  Linear proj_l_{"attn-proj", kC, kC, true};
  Linear fc_l_{"fc (+gelu)", 4 * kC, kC, true};
  Linear fcproj_l_{"fc-proj", kC, 4 * kC, true};

  std::vector<Gpt2Param> params_;
  int64_t num_params_ = 0;
  float *master_ = nullptr, *adam_m_ = nullptr, *adam_v_ = nullptr;
  void *grads_ = nullptr, *grads2_ = nullptr, *param16_ = nullptr;
  int32_t* found_nonfinite_ = nullptr;
  float* norm_out_ = nullptr;
};

// Scratch every op needs at these shapes (the largest wins).
size_t WorkspaceBytes(int64_t B, size_t flush_bytes) {
  const int64_t M = B * kT;
  size_t need = std::max(kMinWorkspaceBytes, flush_bytes);
  for (int64_t N : {3 * kC, kC, 4 * kC, kPaddedVocab}) {
    need = std::max(need, MatmulBackwardWorkspaceBytes(M, N));
  }
  need = std::max(need, LayerNormBackwardWorkspaceBytes(M, kC));
  AttentionParams ap{B, kT, kC, kNH, DType::kBFloat16};
  need = std::max(need, AttentionBackwardWorkspaceBytes(ap));
  EmbeddingParams ep{B, kT, kC, kPaddedVocab, DType::kBFloat16};
  need = std::max(need, EmbeddingBackwardWorkspaceBytes(ep));
  std::vector<ConstTensorRef> refs;
  const void* fake = reinterpret_cast<const void*>(uintptr_t{256});
  for (const Gpt2Param& p : Gpt2Params()) refs.push_back({fake, p.n});
  need = std::max(need, SquaredNormWorkspaceBytes(refs));
  return need;
}

std::string Fixed(double v, int prec) { return absl::StrFormat("%.*f", prec, v); }

void PrintTable(const std::vector<Row>& rows, const Peaks& peaks) {
  const std::string header =
      absl::StrFormat("%-5s %-26s %10s %9s %8s %-22s %6s %7s %s", "dtype", "op", "time_us",
                      "GB/s", "TFLOP/s", "reference", "ratio", "target", "met");
  std::printf("%s\n%s\n", header.c_str(), std::string(header.size(), '-').c_str());
  for (const Row& r : rows) {
    if (!r.error.empty()) {
      std::printf("%-5s %-26s ERROR %s\n", r.dtype.c_str(), r.op.c_str(), r.error.c_str());
      continue;
    }
    std::string gbps = "-", tflops = "-", ref;
    switch (r.ref) {
      case Reference::kCopy:
        gbps = Fixed(r.bytes / r.us * 1e-3, 0);
        ref = absl::StrFormat("copy %.0f GB/s", peaks.copy_gbps);
        break;
      case Reference::kBareGemm:
        tflops = Fixed(r.flops / r.us * 1e-6, 1);
        ref = absl::StrFormat("bare GEMM %.1f us", r.bare_us);
        break;
      case Reference::kGemmPeak:
        tflops = Fixed(r.flops / r.us * 1e-6, 1);
        ref = "best bare GEMM TFLOP/s";
        break;
    }
    const std::string target =
        !r.has_target ? "-"
                      : absl::StrFormat(">=%.2f", r.ref == Reference::kBareGemm ? kGemmTarget
                                                                                : kBandwidthTarget);
    std::printf("%-5s %-26s %10.1f %9s %8s %-22s %6.2f %7s %s\n", r.dtype.c_str(), r.op.c_str(),
                r.us, gbps.c_str(), tflops.c_str(), ref.c_str(), r.ratio, target.c_str(),
                !r.has_target ? "-" : r.met ? "yes" : "NO");
  }
}

absl::Status Run(int64_t B, const std::vector<DType>& dtypes, int warmup, int iters,
                 int* exit_code) {
  cudaDeviceProp prop;
  ZT_CUDA_RETURN_IF_ERROR(cudaSetDevice(0));
  ZT_CUDA_RETURN_IF_ERROR(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s, %d SMs, L2 %d MiB, %.1f GiB; B=%lld T=%lld C=%lld NH=%lld vocab=%lld "
              "(padded %lld); median of %d iterations after %d warmup, cold L2\n",
              prop.name, prop.multiProcessorCount, prop.l2CacheSize >> 20,
              prop.totalGlobalMem / double(1 << 30), static_cast<long long>(B),
              static_cast<long long>(kT), static_cast<long long>(kC), static_cast<long long>(kNH),
              static_cast<long long>(kVocab), static_cast<long long>(kPaddedVocab), iters, warmup);

  cudaStream_t stream = nullptr;
  ZT_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  std::unique_ptr<CUstream_st, void (*)(cudaStream_t)> stream_owner(
      stream, [](cudaStream_t s) { cudaStreamDestroy(s); });
  cublasLtHandle_t handle = nullptr;
  ZT_CUBLAS_RETURN_IF_ERROR(cublasLtCreate(&handle));
  std::unique_ptr<cublasLtContext, void (*)(cublasLtHandle_t)> handle_owner(
      handle, [](cublasLtHandle_t h) { cublasLtDestroy(h); });

  // Twice L2 (at least 64 MiB) evicts everything the previous iteration left.
  const int64_t flush_n =
      std::max<int64_t>(2 * static_cast<int64_t>(prop.l2CacheSize), int64_t{64} << 20) / 4;
  ZT_ASSIGN_OR_RETURN(DeviceBuffer flush, DeviceBuffer::Allocate(flush_n * sizeof(float)));
  ZT_CUDA_RETURN_IF_ERROR(cudaMemset(flush.get(), 0, flush.bytes()));

  const ConstTensorRef flush_ref{flush.get(), flush_n};
  ZT_ASSIGN_OR_RETURN(
      DeviceBuffer workspace,
      DeviceBuffer::Allocate(
          WorkspaceBytes(B, SquaredNormWorkspaceBytes(absl::MakeConstSpan(&flush_ref, 1)))));
  OpContext ctx;
  ctx.device = Device::Cuda(0);
  ctx.stream = stream;
  ctx.cublaslt_handle = handle;
  ctx.workspace = workspace.get();
  ctx.workspace_bytes = workspace.bytes();
  ZT_ASSIGN_OR_RETURN(std::unique_ptr<Timer> timer,
                      Timer::Create(ctx, flush.as<float>(), flush_n, warmup, iters));

  // Peak bandwidth: a device-to-device copy reads and writes every byte.
  Peaks peaks;
  {
    ZT_ASSIGN_OR_RETURN(DeviceBuffer src, DeviceBuffer::Allocate(kCopyBytes));
    ZT_ASSIGN_OR_RETURN(DeviceBuffer dst, DeviceBuffer::Allocate(kCopyBytes));
    ZT_CUDA_RETURN_IF_ERROR(cudaMemset(src.get(), 1, kCopyBytes));
    ZT_ASSIGN_OR_RETURN(const double us, timer->MedianUs([&]() -> absl::Status {
      ZT_CUDA_RETURN_IF_ERROR(
          cudaMemcpyAsync(dst.get(), src.get(), kCopyBytes, cudaMemcpyDeviceToDevice, stream));
      return absl::OkStatus();
    }));
    peaks.copy_gbps = 2.0 * kCopyBytes / us * 1e-3;
    std::printf("peak: device-to-device copy of 1 GiB: %.1f us, %.0f GB/s (read + write)\n\n", us,
                peaks.copy_gbps);
  }

  std::vector<Row> rows;
  std::vector<std::string> best_gemm;
  for (DType dtype : dtypes) {
    DTypeBench bench(dtype, B, ctx, *timer, peaks, rows);
    if (absl::Status s = bench.Run(); !s.ok()) {
      return zt::Annotate(s, absl::StrCat(DTypeName(dtype), " setup"));
    }
    best_gemm.push_back(
        absl::StrFormat("%s %.0f TFLOP/s", DTypeName(dtype), peaks.gemm_tflops));
  }
  PrintTable(rows, peaks);

  int with_target = 0, met = 0, errors = 0;
  std::vector<std::string> missed;
  for (const Row& r : rows) {
    if (!r.error.empty()) {
      ++errors;
      continue;
    }
    if (!r.has_target) continue;
    ++with_target;
    if (r.met) {
      ++met;
    } else {
      missed.push_back(absl::StrFormat("%s %s (%.2f)", r.dtype, r.op, r.ratio));
    }
  }
  std::printf(
      "\nsummary: %s B=%lld: copy %.0f GB/s, best bare GEMM %s; targets met %d/%d%s%s; "
      "errors %d\n",
      prop.name, static_cast<long long>(B), peaks.copy_gbps, absl::StrJoin(best_gemm, ", ").c_str(),
      met, with_target, missed.empty() ? "" : "; below target: ",
      absl::StrJoin(missed, ", ").c_str(), errors);
  *exit_code = errors > 0 ? 1 : 0;
  return absl::OkStatus();
}

}  // namespace
}  // namespace zt::kernels

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Times every zerotrain kernel at GPT-2 124M shapes against the device's measured peaks.");
  absl::ParseCommandLine(argc, argv);

  const int batch = absl::GetFlag(FLAGS_batch);
  const int iters = absl::GetFlag(FLAGS_iters);
  const int warmup = absl::GetFlag(FLAGS_warmup);
  const std::string dtype = absl::GetFlag(FLAGS_dtype);
  std::vector<zt::DType> dtypes;
  if (dtype == "bf16" || dtype == "both") dtypes.push_back(zt::DType::kBFloat16);
  if (dtype == "fp16" || dtype == "both") dtypes.push_back(zt::DType::kFloat16);
  if (dtypes.empty()) {
    std::fprintf(stderr, "bench: error: --dtype must be bf16, fp16 or both, got \"%s\"\n",
                 dtype.c_str());
    return 1;
  }
  if (batch < 1 || batch > 16) {
    std::fprintf(stderr, "bench: error: --batch must be in [1, 16], got %d\n", batch);
    return 1;
  }
  if (iters < 1 || warmup < 0) {
    std::fprintf(stderr, "bench: error: --iters must be >= 1 and --warmup >= 0, got %d and %d\n",
                 iters, warmup);
    return 1;
  }

  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess || count == 0) {
    std::fprintf(stderr, "bench: error: no CUDA device visible (cudaGetDeviceCount: %s)\n",
                 err != cudaSuccess ? cudaGetErrorString(err) : "0 devices");
    return 1;
  }

  int exit_code = 0;
  const absl::Status s = zt::kernels::Run(batch, dtypes, warmup, iters, &exit_code);
  if (!s.ok()) {
    std::fprintf(stderr, "bench: error: %s\n", s.ToString().c_str());
    return 1;
  }
  return exit_code;
}
