#ifndef ZEROTRAIN_KERNELS_GRAD_UTILS_INTERNAL_H_
#define ZEROTRAIN_KERNELS_GRAD_UTILS_INTERNAL_H_

// Shared by grad_utils.cc and grad_utils.cu: the launch plan of the
// squared-norm reduction (so SquaredNormWorkspaceBytes and the launcher agree)
// and the CUDA launchers.

#include <algorithm>
#include <cstdint>
#include <vector>

#include "kernels/grad_utils.h"

namespace zt::kernels::grad_utils_internal {

// Pass 1 of SquaredNorm runs one launch per group of up to kNormMaxTensors
// non-empty tensors (their pointers ride in the kernel's parameter block);
// each block writes one fp32 partial sum to the workspace. Pass 2 is one
// block summing all partials in a fixed order. The plan depends only on the
// tensor sizes, never on the GPU model, so the result is the same bits on
// every device.
inline constexpr int kNormMaxTensors = 512;
inline constexpr int64_t kNormChunk = 8192;     // elements per block per step
inline constexpr int64_t kNormMaxBlocks = 1024;  // partials per launch, at most

struct NormLaunch {
  size_t first = 0;        // index into the tensors span
  size_t end = 0;          // one past the last tensor of this launch
  int64_t blocks = 0;      // grid size = partials written
  int64_t partial_offset = 0;
};

inline std::vector<NormLaunch> PlanSquaredNorm(absl::Span<const ConstTensorRef> tensors) {
  std::vector<NormLaunch> plan;
  int64_t offset = 0;
  size_t next = 0;
  while (next < tensors.size()) {
    NormLaunch launch;
    launch.first = next;
    int count = 0;
    int64_t chunks = 0;
    for (; next < tensors.size() && count < kNormMaxTensors; ++next) {
      if (tensors[next].n <= 0) continue;
      ++count;
      chunks += (tensors[next].n + kNormChunk - 1) / kNormChunk;
    }
    launch.end = next;
    if (count == 0) break;
    launch.blocks = std::min(chunks, kNormMaxBlocks);
    launch.partial_offset = offset;
    offset += launch.blocks;
    plan.push_back(launch);
  }
  return plan;
}

inline int64_t NumPartials(const std::vector<NormLaunch>& plan) {
  return plan.empty() ? 0 : plan.back().partial_offset + plan.back().blocks;
}

#if ZT_WITH_CUDA
// Launchers: arguments validated by the caller, n > 0, never synchronize.
absl::Status LaunchScaleAndCheckFinite(cudaStream_t stream, DType dtype, void* x, int64_t n,
                                       float scale, int32_t* found_nonfinite);
absl::Status LaunchSquaredNorm(cudaStream_t stream, DType dtype,
                               absl::Span<const ConstTensorRef> tensors, float* partials,
                               float* out);
// Different dtypes only (equal dtypes are a plain copy).
absl::Status LaunchCast(cudaStream_t stream, const void* src, DType src_dtype, void* dst,
                        DType dst_dtype, int64_t n);
absl::Status LaunchCopy(cudaStream_t stream, void* dst, const void* src, size_t bytes);
#endif

}  // namespace zt::kernels::grad_utils_internal

#endif  // ZEROTRAIN_KERNELS_GRAD_UTILS_INTERNAL_H_
