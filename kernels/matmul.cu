// CUDA linear layer: cuBLASLt matmuls with fused bias / GELU / DGELU
// epilogues, a deterministic bias-gradient reduction, and an unfused path
// (plain matmul + separate kernels) for shapes the epilogues reject.
//
// Rounding: every 16-bit result is rounded once, from fp32. cuBLASLt does
// not promise that. Measured on H100 (CUDA 13): D = A B + C with 16-bit C
// and D gives round(round(A B) + C) for about 30% of the outputs, whatever
// the workspace or split-K setting; under cancellation (|A B| ~ |C| >>
// |D|, as in dweight += or a bias add) that costs up to half an ulp of |A B|
// rather than of D, tens of ulps of the result. So nothing here adds onto a
// 16-bit result through beta: the unfused epilogues and dweight's
// accumulation compute A B into an fp32 staging buffer in ctx.workspace
// (chunk by chunk) and a small kernel adds, applies GELU / GELU' and rounds.
// The fused epilogues are used only where they were measured to round once
// (see AlignedForEpilogue and the reduction schemes in RunGemm).
//
// Layout: cuBLASLt is column-major, our tensors row-major. A row-major [r, c]
// matrix is a column-major [c, r] one, so every product is computed
// transposed: out^T = weight * inp^T and so on (see each call).

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <initializer_list>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "core/library_errors.h"
#include "core/status_macros.h"
#include "kernels/gelu_device.cuh"
#include "kernels/matmul_cuda.h"

namespace zt::kernels {
namespace {

using cuda::FromF;
using cuda::GeluF32;
using cuda::GeluGradF32;
using cuda::ToF;

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 1 << 16;

// Bias-gradient tiles: 32 columns (one warp reads 32 consecutive elements of
// a row) by 8 row lanes.
constexpr int kBiasCols = 32;
constexpr int kBiasRowLanes = 8;

// ---------------------------------------------------------------- kernels --

// The epilogues of the staged (unfused) path. `acc` is an fp32 chunk of the
// product laid out like the destination chunk; for fp32 storage it may be
// the destination itself (each element is read before it is written).

// z = acc + bias; out = z, or pre_gelu = z and out = gelu(z), GELU taken of
// the unrounded z as the fused GELU_AUX_BIAS epilogue does.
template <typename T>
__global__ void BiasGeluEpilogueKernel(const float* acc, const T* bias,
                                       T* pre_gelu, T* out, int64_t total,
                                       int64_t N) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < total;
       i += int64_t{gridDim.x} * blockDim.x) {
    const float z = acc[i] + (bias != nullptr ? ToF(bias[i % N]) : 0.0f);
    if (pre_gelu != nullptr) {
      pre_gelu[i] = FromF<T>(z);
      out[i] = FromF<T>(GeluF32(z));
    } else {
      out[i] = FromF<T>(z);
    }
  }
}

// dinp = acc * gelu'(pre), the DGELU epilogue.
template <typename T>
__global__ void DgeluEpilogueKernel(const float* acc, const T* pre, T* dinp,
                                    int64_t total) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < total;
       i += int64_t{gridDim.x} * blockDim.x) {
    dinp[i] = FromF<T>(acc[i] * GeluGradF32(ToF(pre[i])));
  }
}

// d += acc with one rounding (parameter-gradient accumulation).
template <typename T>
__global__ void AccumulateEpilogueKernel(const float* acc, T* d,
                                         int64_t total) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < total;
       i += int64_t{gridDim.x} * blockDim.x) {
    d[i] = FromF<T>(ToF(d[i]) + acc[i]);
  }
}

// partials[chunk, n] = sum of dout[m, n] over the chunk's rows, in fp32. The
// summation order depends only on M and N, so results are reproducible.
template <typename T>
__global__ void BiasGradPartialsKernel(const T* dout, float* partials,
                                       int64_t M, int64_t N) {
  __shared__ float lane_sums[kBiasRowLanes][kBiasCols + 1];
  const int64_t chunk = blockIdx.x;
  const int64_t col = blockIdx.y * int64_t{kBiasCols} + threadIdx.x;
  const int64_t row_end =
      std::min(M, (chunk + 1) * kMatmulBiasGradRowsPerChunk);
  float sum = 0.0f;
  if (col < N) {
    for (int64_t r = chunk * kMatmulBiasGradRowsPerChunk + threadIdx.y;
         r < row_end; r += kBiasRowLanes) {
      sum += ToF(dout[r * N + col]);
    }
  }
  lane_sums[threadIdx.y][threadIdx.x] = sum;
  __syncthreads();
  if (threadIdx.y == 0 && col < N) {
    float total = 0.0f;
#pragma unroll
    for (int j = 0; j < kBiasRowLanes; ++j) total += lane_sums[j][threadIdx.x];
    partials[chunk * N + col] = total;
  }
}

// dbias[n] (+)= sum over chunks of partials[chunk, n], chunks in order.
template <typename T>
__global__ void BiasGradFinishKernel(const float* partials, T* dbias,
                                     int64_t chunks, int64_t N,
                                     bool accumulate) {
  for (int64_t n = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; n < N;
       n += int64_t{gridDim.x} * blockDim.x) {
    float sum = 0.0f;
    for (int64_t c = 0; c < chunks; ++c) sum += partials[c * N + n];
    dbias[n] = FromF<T>((accumulate ? ToF(dbias[n]) : 0.0f) + sum);
  }
}

// ---------------------------------------------------------------- cuBLASLt --

cudaDataType_t CudaDataType(DType dtype) {
  switch (dtype) {
    case DType::kFloat16:
      return CUDA_R_16F;
    case DType::kBFloat16:
      return CUDA_R_16BF;
    case DType::kFloat32:
    default:
      return CUDA_R_32F;
  }
}

// The alignment cuBLASLt may assume for a matrix: the largest power of two
// (at most 256, its default) dividing both the address and the leading
// dimension in bytes. Telling the heuristic keeps it from picking a kernel
// with wider vector loads than the data allows.
uint32_t MatrixAlignment(const void* ptr, int64_t ld, size_t elem_bytes) {
  const uintptr_t bits = reinterpret_cast<uintptr_t>(ptr) |
                         static_cast<uintptr_t>(ld) * elem_bytes |
                         uintptr_t{256};
  return static_cast<uint32_t>(bits & (~bits + 1));
}

// Whether cuBLASLt's fused epilogues may be used: every operand (pointer
// and leading dimension) 16-byte aligned. On H100 only those shapes get the
// Hopper kernels, whose epilogues add the bias to the fp32 accumulator;
// with any operand misaligned the heuristic picks older kernels that round
// the product to 16 bits first and add the bias after (measured: fp16
// GELU_AUX_BIAS at K = 17, bf16 BIAS at N = 129 and K = 17), so those take
// the staged path.
bool AlignedForEpilogue(std::initializer_list<uint32_t> alignments) {
  for (const uint32_t a : alignments) {
    if (a < 16) return false;
  }
  return true;
}

// One column-major product D[m, n] = op(A)[m, k] op(B)[k, n] + beta * D.
struct Gemm {
  bool trans_a = false;
  bool trans_b = false;
  int64_t m = 0, n = 0, k = 0;
  const void* a = nullptr;
  int64_t lda = 0;
  const void* b = nullptr;
  int64_t ldb = 0;
  void* d = nullptr;
  int64_t ldd = 0;
  // D (and C) hold fp32 whatever the dtype of A and B (the staging buffer).
  bool d_f32 = false;
  float beta = 0.0f;
  cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_DEFAULT;
  const void* bias = nullptr;  // BIAS epilogues.
  const void* aux = nullptr;   // GELU_AUX (output) / DGELU (input) epilogues.
  int64_t aux_ld = 0;
};

// cuBLASLt's own scratch for one call.
struct LtScratch {
  void* ptr = nullptr;
  size_t bytes = 0;
};

LtScratch WholeWorkspace(const OpContext& ctx) {
  if (ctx.workspace == nullptr) return {};
  return {ctx.workspace, ctx.workspace_bytes};
}

// Owns the descriptors of one cublasLtMatmul call.
struct LtDescriptors {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  cublasLtMatmulPreference_t pref = nullptr;
  ~LtDescriptors() {
    if (pref != nullptr) cublasLtMatmulPreferenceDestroy(pref);
    if (d != nullptr) cublasLtMatrixLayoutDestroy(d);
    if (b != nullptr) cublasLtMatrixLayoutDestroy(b);
    if (a != nullptr) cublasLtMatrixLayoutDestroy(a);
    if (op != nullptr) cublasLtMatmulDescDestroy(op);
  }
};

template <typename V>
cublasStatus_t SetOpAttr(cublasLtMatmulDesc_t op,
                         cublasLtMatmulDescAttributes_t attr, const V& value) {
  return cublasLtMatmulDescSetAttribute(op, attr, &value, sizeof(value));
}

template <typename V>
cublasStatus_t SetPrefAttr(cublasLtMatmulPreference_t pref,
                           cublasLtMatmulPreferenceAttributes_t attr,
                           const V& value) {
  return cublasLtMatmulPreferenceSetAttribute(pref, attr, &value,
                                              sizeof(value));
}

// Enqueues the product on ctx.stream. Returns false, having enqueued
// nothing, when cuBLASLt has no algorithm for it (typically an epilogue it
// rejects for this shape or alignment), so the caller can take another path.
absl::StatusOr<bool> RunGemm(const OpContext& ctx, DType dtype, const Gemm& g,
                             LtScratch scratch) {
  const auto handle = static_cast<cublasLtHandle_t>(ctx.cublaslt_handle);
  const cudaDataType_t type = CudaDataType(dtype);
  const cudaDataType_t d_type = g.d_f32 ? CUDA_R_32F : type;
  const size_t elem = DTypeSize(dtype);
  const size_t d_elem = g.d_f32 ? sizeof(float) : elem;
  const bool has_epilogue = g.epilogue != CUBLASLT_EPILOGUE_DEFAULT;
  LtDescriptors desc;
  // fp32 accumulation and scaling for every storage type; no TF32.
  ZT_CUBLAS_RETURN_IF_ERROR(
      cublasLtMatmulDescCreate(&desc.op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t trans_a = g.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t trans_b = g.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  ZT_CUBLAS_RETURN_IF_ERROR(
      SetOpAttr(desc.op, CUBLASLT_MATMUL_DESC_TRANSA, trans_a));
  ZT_CUBLAS_RETURN_IF_ERROR(
      SetOpAttr(desc.op, CUBLASLT_MATMUL_DESC_TRANSB, trans_b));
  ZT_CUBLAS_RETURN_IF_ERROR(
      SetOpAttr(desc.op, CUBLASLT_MATMUL_DESC_EPILOGUE, g.epilogue));
  if (g.bias != nullptr) {
    ZT_CUBLAS_RETURN_IF_ERROR(
        SetOpAttr(desc.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, g.bias));
  }
  if (g.aux != nullptr) {
    ZT_CUBLAS_RETURN_IF_ERROR(
        SetOpAttr(desc.op, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, g.aux));
    ZT_CUBLAS_RETURN_IF_ERROR(
        SetOpAttr(desc.op, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, g.aux_ld));
  }
  // Stored shapes: op(A) = A^T means A is stored [k, m].
  ZT_CUBLAS_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(
      &desc.a, type, g.trans_a ? g.k : g.m, g.trans_a ? g.m : g.k, g.lda));
  ZT_CUBLAS_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(
      &desc.b, type, g.trans_b ? g.n : g.k, g.trans_b ? g.k : g.n, g.ldb));
  ZT_CUBLAS_RETURN_IF_ERROR(
      cublasLtMatrixLayoutCreate(&desc.d, d_type, g.m, g.n, g.ldd));

  void* workspace = scratch.bytes > 0 ? scratch.ptr : nullptr;
  const uint64_t workspace_bytes = workspace != nullptr ? scratch.bytes : 0;
  ZT_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulPreferenceCreate(&desc.pref));
  ZT_CUBLAS_RETURN_IF_ERROR(SetPrefAttr(
      desc.pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, workspace_bytes));
  // Split-K partial sums may only meet in fp32: the INPLACE and OUTPUT_TYPE
  // schemes add them up in the (16-bit) output type, one more rounding per
  // split (measured: fp16 GELU_AUX at K = 17 picked OUTPUT_TYPE with 33
  // splits, errors of 46 ulps). With an epilogue, no split-K at all: the
  // separate reduction pass rounds the sum before adding the bias (bf16
  // BIAS with COMPUTE_TYPE, measured).
  const uint32_t reduction_schemes =
      has_epilogue ? CUBLASLT_REDUCTION_SCHEME_NONE
                   : CUBLASLT_REDUCTION_SCHEME_NONE |
                         CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE;
  ZT_CUBLAS_RETURN_IF_ERROR(
      SetPrefAttr(desc.pref, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK,
                  reduction_schemes));
  const uint32_t align_a = MatrixAlignment(g.a, g.lda, elem);
  const uint32_t align_b = MatrixAlignment(g.b, g.ldb, elem);
  const uint32_t align_d = MatrixAlignment(g.d, g.ldd, d_elem);
  ZT_CUBLAS_RETURN_IF_ERROR(SetPrefAttr(
      desc.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, align_a));
  ZT_CUBLAS_RETURN_IF_ERROR(SetPrefAttr(
      desc.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, align_b));
  ZT_CUBLAS_RETURN_IF_ERROR(SetPrefAttr(
      desc.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, align_d));
  ZT_CUBLAS_RETURN_IF_ERROR(SetPrefAttr(
      desc.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, align_d));

  cublasLtMatmulHeuristicResult_t heuristic = {};
  int found = 0;
  // C is D (accumulation with beta = 1 reads and writes the same buffer).
  const cublasStatus_t query =
      cublasLtMatmulAlgoGetHeuristic(handle, desc.op, desc.a, desc.b, desc.d,
                                     desc.d, desc.pref, 1, &heuristic, &found);
  // Epilogue constraints surface as NOT_SUPPORTED or, for some attribute
  // combinations, INVALID_VALUE; either way the unfused path can do it.
  if (query == CUBLAS_STATUS_NOT_SUPPORTED ||
      (has_epilogue && query == CUBLAS_STATUS_INVALID_VALUE) ||
      (query == CUBLAS_STATUS_SUCCESS && found == 0)) {
    return false;
  }
  ZT_CUBLAS_RETURN_IF_ERROR(query);

  const float alpha = 1.0f;
  const cublasStatus_t run = cublasLtMatmul(
      handle, desc.op, &alpha, g.a, desc.a, g.b, desc.b, &g.beta, g.d, desc.d,
      g.d, desc.d, &heuristic.algo, workspace, workspace_bytes, ctx.stream);
  if (run == CUBLAS_STATUS_NOT_SUPPORTED) return false;
  ZT_CUBLAS_RETURN_IF_ERROR(run);
  return true;
}

absl::Status NoAlgorithm(const char* op, const MatmulForwardParams* f,
                         const MatmulBackwardParams* b) {
  const int64_t M = f ? f->M : b->M, N = f ? f->N : b->N, K = f ? f->K : b->K;
  const DType dtype = f ? f->dtype : b->dtype;
  return absl::InternalError(
      absl::StrCat(op, ": cuBLASLt has no algorithm for M=", M, " N=", N,
                   " K=", K, " dtype=", DTypeName(dtype)));
}

absl::Status CheckHandle(const char* op, const OpContext& ctx) {
  if (ctx.cublaslt_handle == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": ctx.cublaslt_handle is null on a CUDA context"));
  }
  return absl::OkStatus();
}

int GridFor(int64_t work) {
  return static_cast<int>(std::max<int64_t>(
      1, std::min(kMaxBlocks, (work + kThreads - 1) / kThreads)));
}

template <typename T>
absl::Status LaunchBiasGrad(cudaStream_t stream, const void* dout,
                            float* partials, void* dbias, int64_t M,
                            int64_t N, bool accumulate) {
  const int64_t chunks =
      (M + kMatmulBiasGradRowsPerChunk - 1) / kMatmulBiasGradRowsPerChunk;
  const dim3 grid(static_cast<unsigned>(chunks),
                  static_cast<unsigned>((N + kBiasCols - 1) / kBiasCols));
  BiasGradPartialsKernel<T>
      <<<grid, dim3(kBiasCols, kBiasRowLanes), 0, stream>>>(
          static_cast<const T*>(dout), partials, M, N);
  ZT_CUDA_RETURN_IF_LAUNCH_ERROR("BiasGradPartialsKernel");
  BiasGradFinishKernel<T><<<GridFor(N), kThreads, 0, stream>>>(
      partials, static_cast<T*>(dbias), chunks, N, accumulate);
  ZT_CUDA_RETURN_IF_LAUNCH_ERROR("BiasGradFinishKernel");
  return absl::OkStatus();
}

// ------------------------------------------------------------ staged path --

// Where a staged product's fp32 chunks go: `f32` holds `cols_per_chunk`
// columns of D (m floats each, contiguous); cuBLASLt gets `lt`.
struct Staging {
  float* f32 = nullptr;
  int64_t cols_per_chunk = 0;
  LtScratch lt;
};

// fp32 storage needs no staging: the product goes straight into
// `f32_destination` in one piece and the epilogue runs in place. 16-bit
// storage stages chunks of D's columns in ctx.workspace: at most half of it
// (cuBLASLt keeps the rest), at least one column.
absl::StatusOr<Staging> PlanStaging(const char* op, const OpContext& ctx,
                                    DType dtype, int64_t m, int64_t n,
                                    void* f32_destination) {
  if (dtype == DType::kFloat32) {
    return Staging{static_cast<float*>(f32_destination), n,
                   WholeWorkspace(ctx)};
  }
  const size_t column_bytes = static_cast<size_t>(m) * sizeof(float);
  const size_t have = ctx.workspace != nullptr ? ctx.workspace_bytes : 0;
  if (have < column_bytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat(op, ": a ", DTypeName(dtype),
                     " result needs ctx.workspace of at least ", column_bytes,
                     " bytes for fp32 staging (", kMatmulWorkspaceBytes,
                     " recommended), got ", have));
  }
  int64_t cols = std::min<int64_t>(
      n, static_cast<int64_t>(std::max(column_bytes, have / 2) / column_bytes));
  // Chunks of a multiple of 64 columns keep every chunk's operands as
  // aligned as the whole (cuBLASLt's fast kernels want 16 bytes).
  if (cols < n && cols >= 64) cols -= cols % 64;
  // cuBLASLt's part starts on a 256-byte boundary.
  const size_t staged =
      (static_cast<size_t>(cols) * column_bytes + 255) / 256 * 256;
  Staging s{static_cast<float*>(ctx.workspace), cols, {}};
  if (staged < have)
    s.lt = {static_cast<char*>(ctx.workspace) + staged, have - staged};
  return s;
}

// Runs g (beta = 0, no cuBLASLt epilogue) column chunk by column chunk into
// the staging buffer, calling epilogue(acc, first_column, columns) after
// each chunk. K = 0 stages zeros. False: cuBLASLt has no algorithm.
template <typename Epilogue>
absl::StatusOr<bool> RunStaged(const OpContext& ctx, DType dtype, const Gemm& g,
                               const Staging& s, Epilogue&& epilogue) {
  const size_t elem = DTypeSize(dtype);
  for (int64_t col = 0; col < g.n; col += s.cols_per_chunk) {
    const int64_t cols = std::min(s.cols_per_chunk, g.n - col);
    if (g.k == 0) {
      ZT_CUDA_RETURN_IF_ERROR(
          cudaMemsetAsync(s.f32, 0, cols * g.m * sizeof(float), ctx.stream));
    } else {
      Gemm c = g;
      c.n = cols;
      // Column j of op(B) is row j of B^T's storage or column j of B's.
      c.b = static_cast<const char*>(g.b) +
            (g.trans_b ? col : col * g.ldb) * elem;
      c.d = s.f32;
      c.ldd = g.m;
      c.d_f32 = true;
      c.beta = 0.0f;
      ZT_ASSIGN_OR_RETURN(const bool ran, RunGemm(ctx, dtype, c, s.lt));
      if (!ran) return false;
    }
    ZT_RETURN_IF_ERROR(epilogue(static_cast<const float*>(s.f32), col, cols));
  }
  return true;
}

template <typename T>
absl::Status LaunchBiasGeluEpilogue(cudaStream_t stream, const float* acc,
                                    const void* bias, void* pre_gelu, void* out,
                                    int64_t first_row, int64_t rows,
                                    int64_t N) {
  const int64_t offset = first_row * N;
  BiasGeluEpilogueKernel<T><<<GridFor(rows * N), kThreads, 0, stream>>>(
      acc, static_cast<const T*>(bias),
      pre_gelu != nullptr ? static_cast<T*>(pre_gelu) + offset : nullptr,
      static_cast<T*>(out) + offset, rows * N, N);
  ZT_CUDA_RETURN_IF_LAUNCH_ERROR("BiasGeluEpilogueKernel");
  return absl::OkStatus();
}

template <typename T>
absl::Status LaunchDgeluEpilogue(cudaStream_t stream, const float* acc,
                                 const void* pre, void* dinp, int64_t first_row,
                                 int64_t rows, int64_t K) {
  const int64_t offset = first_row * K;
  DgeluEpilogueKernel<T><<<GridFor(rows * K), kThreads, 0, stream>>>(
      acc, static_cast<const T*>(pre) + offset, static_cast<T*>(dinp) + offset,
      rows * K);
  ZT_CUDA_RETURN_IF_LAUNCH_ERROR("DgeluEpilogueKernel");
  return absl::OkStatus();
}

template <typename T>
absl::Status LaunchAccumulateEpilogue(cudaStream_t stream, const float* acc,
                                      void* d, int64_t first_row, int64_t rows,
                                      int64_t K) {
  AccumulateEpilogueKernel<T><<<GridFor(rows * K), kThreads, 0, stream>>>(
      acc, static_cast<T*>(d) + first_row * K, rows * K);
  ZT_CUDA_RETURN_IF_LAUNCH_ERROR("AccumulateEpilogueKernel");
  return absl::OkStatus();
}

}  // namespace

// -------------------------------------------------------------- launchers --

absl::Status MatmulForwardCuda(const OpContext& ctx,
                               const MatmulForwardParams& p,
                               const MatmulCudaOptions& options) {
  constexpr const char* kOp = "MatmulForward";
  ZT_RETURN_IF_ERROR(CheckHandle(kOp, ctx));
  const bool wants_epilogue = p.bias != nullptr || p.pre_gelu != nullptr;
  if (options.used_fused_epilogue != nullptr)
    *options.used_fused_epilogue = !wants_epilogue;
  if (p.M == 0 || p.N == 0) return absl::OkStatus();

  // out^T [N, M] = weight [N, K] (stored as column-major [K, N], so op = T)
  //              * inp^T [K, M] (stored as column-major [K, M]).
  Gemm g;
  g.trans_a = true;
  g.m = p.N;
  g.n = p.M;
  g.k = p.K;
  g.a = p.weight;
  g.lda = p.K;
  g.b = p.inp;
  g.ldb = p.K;
  g.d = p.out;
  g.ldd = p.N;

  if (!wants_epilogue) {
    if (p.K == 0) {
      ZT_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(
          p.out, 0, p.M * p.N * DTypeSize(p.dtype), ctx.stream));
      return absl::OkStatus();
    }
    ZT_ASSIGN_OR_RETURN(const bool ran,
                        RunGemm(ctx, p.dtype, g, WholeWorkspace(ctx)));
    if (!ran) return NoAlgorithm(kOp, &p, nullptr);
    return absl::OkStatus();
  }

  // cuBLASLt requires the GELU aux leading dimension to be a multiple of 8;
  // K = 0 is no product at all.
  const size_t elem = DTypeSize(p.dtype);
  const bool can_fuse =
      options.allow_fused_epilogue && p.K > 0 &&
      (p.pre_gelu == nullptr || p.N % 8 == 0) &&
      AlignedForEpilogue(
          {MatrixAlignment(p.weight, p.K, elem),
           MatrixAlignment(p.inp, p.K, elem), MatrixAlignment(p.out, p.N, elem),
           p.pre_gelu != nullptr ? MatrixAlignment(p.pre_gelu, p.N, elem)
                                 : 256u,
           p.bias != nullptr ? MatrixAlignment(p.bias, 0, elem) : 256u});
  if (can_fuse) {
    Gemm f = g;
    f.bias = p.bias;
    if (p.pre_gelu != nullptr) {
      f.epilogue = p.bias != nullptr ? CUBLASLT_EPILOGUE_GELU_AUX_BIAS
                                     : CUBLASLT_EPILOGUE_GELU_AUX;
      f.aux = p.pre_gelu;
      f.aux_ld = p.N;
    } else {
      f.epilogue = CUBLASLT_EPILOGUE_BIAS;
    }
    ZT_ASSIGN_OR_RETURN(const bool ran,
                        RunGemm(ctx, p.dtype, f, WholeWorkspace(ctx)));
    if (ran) {
      if (options.used_fused_epilogue != nullptr)
        *options.used_fused_epilogue = true;
      return absl::OkStatus();
    }
  }

  // Unfused: the product in fp32 (staged for 16-bit storage, in pre_gelu or
  // out for fp32), then bias and GELU and one rounding per output.
  ZT_ASSIGN_OR_RETURN(const Staging s,
                      PlanStaging(kOp, ctx, p.dtype, g.m, g.n,
                                  p.pre_gelu != nullptr ? p.pre_gelu : p.out));
  ZT_ASSIGN_OR_RETURN(
      const bool ran,
      RunStaged(ctx, p.dtype, g, s,
                [&](const float* acc, int64_t first_row, int64_t rows) {
                  return cuda::DispatchCudaType(p.dtype, [&](auto tag) {
                    return LaunchBiasGeluEpilogue<decltype(tag)>(
                        ctx.stream, acc, p.bias, p.pre_gelu, p.out, first_row,
                        rows, p.N);
                  });
                }));
  if (!ran) return NoAlgorithm(kOp, &p, nullptr);
  return absl::OkStatus();
}

absl::Status MatmulBackwardCuda(const OpContext& ctx,
                                const MatmulBackwardParams& p,
                                const MatmulCudaOptions& options) {
  constexpr const char* kOp = "MatmulBackward";
  ZT_RETURN_IF_ERROR(CheckHandle(kOp, ctx));
  const bool wants_epilogue = p.dinp != nullptr && p.inp_pre_gelu != nullptr;
  if (options.used_fused_epilogue != nullptr)
    *options.used_fused_epilogue = !wants_epilogue;
  const size_t elem = DTypeSize(p.dtype);

  // Bias gradient first: it borrows ctx.workspace, which the matmuls below
  // may then reuse (same stream, so in order).
  if (p.dbias != nullptr && p.M > 0 && p.N > 0) {
    const size_t need = MatmulBiasGradWorkspaceBytes(p.M, p.N);
    if (ctx.workspace == nullptr || ctx.workspace_bytes < need) {
      return absl::ResourceExhaustedError(
          absl::StrCat(kOp, ": dbias needs ctx.workspace of ", need,
                       " bytes (MatmulBackwardWorkspaceBytes(", p.M, ", ", p.N,
                       ")), got ", ctx.workspace_bytes));
    }
    if ((p.N + kBiasCols - 1) / kBiasCols > 65535) {
      return absl::InvalidArgumentError(absl::StrCat(
          kOp, ": N=", p.N, " exceeds the bias-gradient grid limit ",
          int64_t{65535} * kBiasCols));
    }
    ZT_RETURN_IF_ERROR(cuda::DispatchCudaType(p.dtype, [&](auto tag) {
      return LaunchBiasGrad<decltype(tag)>(ctx.stream, p.dout,
                                           static_cast<float*>(ctx.workspace),
                                           p.dbias, p.M, p.N, p.accumulate);
    }));
  } else if (p.dbias != nullptr && !p.accumulate && p.N > 0) {
    // No rows: the overwritten bias gradient is zero.
    ZT_CUDA_RETURN_IF_ERROR(
        cudaMemsetAsync(p.dbias, 0, p.N * elem, ctx.stream));
  }

  if (p.dinp != nullptr && p.M > 0 && p.K > 0) {
    if (p.N == 0) {
      ZT_CUDA_RETURN_IF_ERROR(
          cudaMemsetAsync(p.dinp, 0, p.M * p.K * elem, ctx.stream));
    } else {
      // dinp^T [K, M] = weight^T [K, N] (weight stored column-major [K, N])
      //               * dout^T [N, M] (dout stored column-major [N, M]).
      Gemm g;
      g.m = p.K;
      g.n = p.M;
      g.k = p.N;
      g.a = p.weight;
      g.lda = p.K;
      g.b = p.dout;
      g.ldb = p.N;
      g.d = p.dinp;
      g.ldd = p.K;
      bool ran = false;
      // DGELU reads inp_pre_gelu as its aux matrix: leading dimension K,
      // which cuBLASLt wants divisible by 8.
      if (wants_epilogue && options.allow_fused_epilogue && p.K % 8 == 0 &&
          AlignedForEpilogue({MatrixAlignment(p.weight, p.K, elem),
                              MatrixAlignment(p.dout, p.N, elem),
                              MatrixAlignment(p.dinp, p.K, elem),
                              MatrixAlignment(p.inp_pre_gelu, p.K, elem)})) {
        Gemm f = g;
        f.epilogue = CUBLASLT_EPILOGUE_DGELU;
        f.aux = p.inp_pre_gelu;
        f.aux_ld = p.K;
        ZT_ASSIGN_OR_RETURN(ran, RunGemm(ctx, p.dtype, f, WholeWorkspace(ctx)));
        if (ran && options.used_fused_epilogue != nullptr)
          *options.used_fused_epilogue = true;
      }
      if (!ran && p.inp_pre_gelu == nullptr) {
        ZT_ASSIGN_OR_RETURN(ran, RunGemm(ctx, p.dtype, g, WholeWorkspace(ctx)));
        if (!ran) return NoAlgorithm(kOp, nullptr, &p);
      } else if (!ran) {
        // The product in fp32, scaled by gelu' before its one rounding.
        ZT_ASSIGN_OR_RETURN(const Staging s,
                            PlanStaging(kOp, ctx, p.dtype, g.m, g.n, p.dinp));
        ZT_ASSIGN_OR_RETURN(
            ran,
            RunStaged(ctx, p.dtype, g, s,
                      [&](const float* acc, int64_t first_row, int64_t rows) {
                        return cuda::DispatchCudaType(p.dtype, [&](auto tag) {
                          return LaunchDgeluEpilogue<decltype(tag)>(
                              ctx.stream, acc, p.inp_pre_gelu, p.dinp,
                              first_row, rows, p.K);
                        });
                      }));
        if (!ran) return NoAlgorithm(kOp, nullptr, &p);
      }
    }
  }

  if (p.dweight != nullptr && !p.accumulate && p.M == 0 && p.N > 0 &&
      p.K > 0) {
    ZT_CUDA_RETURN_IF_ERROR(
        cudaMemsetAsync(p.dweight, 0, p.N * p.K * elem, ctx.stream));
  }
  if (p.dweight != nullptr && p.M > 0 && p.N > 0 && p.K > 0) {
    // dweight^T [K, N] += inp^T [K, M] (inp stored column-major [K, M])
    //                   * dout [M, N] (dout stored column-major [N, M], op =
    //                   T).
    Gemm g;
    g.trans_b = true;
    g.m = p.K;
    g.n = p.N;
    g.k = p.M;
    g.a = p.inp;
    g.lda = p.K;
    g.b = p.dout;
    g.ldb = p.N;
    g.d = p.dweight;
    g.ldd = p.K;
    if (p.dtype == DType::kFloat32 || !p.accumulate) {
      // fp32 storage: adding through beta rounds A B to fp32 first, an
      // error of eps32 |A B|, far below what fp32 accumulation already has.
      // An overwrite (beta = 0) rounds the fp32 accumulator once into any
      // storage type (split-K partials meet in fp32: see RunGemm).
      g.beta = p.accumulate ? 1.0f : 0.0f;
      ZT_ASSIGN_OR_RETURN(const bool ran,
                          RunGemm(ctx, p.dtype, g, WholeWorkspace(ctx)));
      if (!ran) return NoAlgorithm(kOp, nullptr, &p);
    } else {
      ZT_ASSIGN_OR_RETURN(const Staging s,
                          PlanStaging(kOp, ctx, p.dtype, g.m, g.n, nullptr));
      ZT_ASSIGN_OR_RETURN(
          const bool ran,
          RunStaged(ctx, p.dtype, g, s,
                    [&](const float* acc, int64_t first_row, int64_t rows) {
                      return cuda::DispatchCudaType(p.dtype, [&](auto tag) {
                        return LaunchAccumulateEpilogue<decltype(tag)>(
                            ctx.stream, acc, p.dweight, first_row, rows, p.K);
                      });
                    }));
      if (!ran) return NoAlgorithm(kOp, nullptr, &p);
    }
  }
  return absl::OkStatus();
}

}  // namespace zt::kernels
