#ifndef ZEROTRAIN_KERNELS_OP_CONTEXT_H_
#define ZEROTRAIN_KERNELS_OP_CONTEXT_H_

// Every op has one entry point taking an OpContext: on a CPU context it runs
// the plain reference (fp32 math over any storage dtype); on a CUDA context it
// launches the fused kernel on `stream` and never synchronizes. Pointers live
// on the context's device. A CUDA context in a build without --config=cuda is
// a FailedPrecondition error.
//
// Storage dtype conventions: "T" buffers (activations, parameters,
// gradients) are in the op's `dtype`; buffers named *_f32 or documented as
// fp32 are float regardless of dtype; token ids and targets are int32.
//
// Gradient conventions (as llm.c): parameter gradients accumulate (+=) so
// micro-batches add up; input gradients are overwritten unless the op says
// it accumulates (LayerNorm's dinp does, since it feeds the residual stream).

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "core/cuda_stream_fwd.h"
#include "core/device.h"
#include "core/dtype.h"

namespace zt::kernels {

struct OpContext {
  Device device = Device::Cpu();
  // CUDA only: the stream all launches go to.
  cudaStream_t stream = nullptr;
  // CUDA only: a cublasLtHandle_t (as void*) owned by the caller.
  void* cublaslt_handle = nullptr;
  // Device scratch owned by the caller, reused by every op (never live across
  // ops). Ops that need scratch say how much through a *WorkspaceBytes()
  // function and return ResourceExhausted when given too little.
  void* workspace = nullptr;
  size_t workspace_bytes = 0;

  static OpContext Cpu() { return OpContext{}; }
  bool is_cpu() const { return device.is_cpu(); }
};

// The error a CUDA context gets in a CPU-only build.
absl::Status CudaNotBuilt(const char* op);

}  // namespace zt::kernels

#endif  // ZEROTRAIN_KERNELS_OP_CONTEXT_H_
