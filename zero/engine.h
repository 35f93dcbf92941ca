#ifndef ZEROTRAIN_ZERO_ENGINE_H_
#define ZEROTRAIN_ZERO_ENGINE_H_

// The data-parallel engine: owns parameters, gradients, fp32 master weights
// and Adam moments, sharded by ZeRO stage over a Partition of the flat
// parameter space, and hands them to the model unit by unit (ParamProvider).
//
//   stage 0: everything replicated; gradients all-reduced.
//   stage 1: master + moments sharded; full gradients reduce-scattered after
//            the last micro-batch; each rank updates its shard; parameters
//            all-gathered.
//   stage 2: also gradients sharded: each unit's gradient is reduce-scattered
//            as soon as backward has produced it, only the shard is kept.
//   stage 3: also parameters sharded: each unit is all-gathered right before
//            use (the next one prefetched) and released after.
//
// Contract: every rank calls the same methods in the same order.

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "kernels/adamw.h"
#include "core/device.h"
#include "kernels/grad_utils.h"
#include "kernels/op_context.h"
#include "model/param_provider.h"
#include "trainer/param_layout.h"
#include "zero/communicator.h"
#include "zero/partition.h"

namespace zt {

struct EngineOptions {
  int stage = 0;
  DType dtype = DType::kFloat32;
  int64_t reduce_bucket_elements = 0;     // 0: one bucket per unit
  int64_t allgather_bucket_elements = 0;  // 0: one collective per unit
  absl::Duration timeout = absl::Minutes(5);
  // The Stream whose cuda_stream() is ctx.stream; collectives are ordered
  // after its work (host-staged MPI requires it on a GPU). May be nullptr on
  // the CPU.
  Stream* stream = nullptr;
};

// Sums `n` host floats over all ranks in place (staged through device memory
// on `stream` when the communicator needs it; the collective is given
// `stream` too).
absl::Status AllReduceHostFloats(Communicator* comm, Allocator* allocator,
                                 Stream* stream, float* values, int n,
                                 absl::Duration timeout);

struct StepOutcome {
  bool skipped = false;  // non-finite gradients somewhere
  double grad_norm = 0;  // global, unscaled, before clipping
};

class ZeroEngine final : public ParamProvider {
 public:
  static absl::StatusOr<std::unique_ptr<ZeroEngine>> Create(
      const ParamLayout& layout, const EngineOptions& options,
      Communicator* comm, Allocator* allocator, const kernels::OpContext& ctx);
  ~ZeroEngine() override;

  // GPT-2 initialisation from `seed`, identical for every world size and
  // stage (each parameter draws from its own stream).
  absl::Status InitParameters(uint64_t seed);

  absl::Status BeginStep();
  absl::Status BeginMicroBatch(int index);

  absl::StatusOr<UnitBuffers> Acquire(int unit, Pass pass) override;
  absl::Status GradientsReady(int unit) override;
  absl::Status Release(int unit, Pass pass) override;

  // After the last micro-batch's backward: completes the gradient reduction.
  absl::Status FinishGradients();
  // Checks for overflow (agreed across ranks), clips to `clip` (<= 0: off)
  // and applies AdamW unless skipped. hyper.grad_scale is set here.
  absl::StatusOr<StepOutcome> Step(kernels::AdamWHyper hyper, double loss_scale,
                                   double clip);

  // Optimizer state this rank owns: the range in flat space and fp32
  // buffers on the engine's device (master, m, v), opt_range().size() long.
  Range opt_range() const { return opt_range_; }
  float* master() const { return master_.as<float>(); }
  float* moment1() const { return m_.as<float>(); }
  float* moment2() const { return v_.as<float>(); }
  // The gradient buffer: stage 0/1 the full flat gradient (stage 0: reduced
  // after FinishGradients), stage 2/3 this rank's reduced shard.
  const void* gradients() const { return grads_.data(); }
  // Working parameters: stage 0-2 all of them, stage 3 this rank's shard.
  const void* parameters() const { return params_.data(); }

  // Recomputes the working parameters from master (after loading state).
  absl::Status RefreshParamsFromMaster();

  const Partition& partition() const { return part_; }
  const EngineOptions& options() const { return opt_; }
  Communicator* comm() const { return comm_; }
  Allocator* allocator() const { return alloc_; }
  // Model-state bytes (parameters, gradients, master, moments) held now.
  int64_t ModelStateBytes() const;

  // Test hook: makes one element of this rank's reduced gradient infinite,
  // as an fp16 overflow would (call between FinishGradients and Step).
  absl::Status InjectNonFiniteGradient();

 private:
  ZeroEngine(const ParamLayout& layout, const EngineOptions& options,
             Communicator* comm, Allocator* allocator,
             const kernels::OpContext& ctx);
  absl::Status Setup();
  size_t es() const { return DTypeSize(opt_.dtype); }
  char* At(const Buffer& b, int64_t elements) const {
    return b.as<char>() + elements * es();
  }
  absl::Status WaitAll(std::vector<std::unique_ptr<WorkHandle>>& handles);
  absl::Status StartGather(int unit, int slot);
  int SlotFor(int unit) const;
  absl::Status DrainReduce(int slot);
  absl::Status Progress();

  ParamLayout layout_;
  EngineOptions opt_;
  Communicator* comm_;
  Allocator* alloc_;
  kernels::OpContext ctx_;
  Partition part_;
  Range opt_range_;  // stage 0: everything; else this rank's shard, clipped to
                     // numel
  Range shard_;      // this rank's shard in padded space
  std::vector<kernels::AdamWTensor> adam_tensors_;

  Buffer params_;  // stage < 3: all numel; stage 3: shard
  Buffer grads_;   // stage < 2: all numel; else shard
  Buffer master_, m_, v_;
  Buffer reduced_;     // stage 1: the reduced gradient shard
  Buffer param_send_;  // stage 1/2: the updated parameter shard to all-gather
  Buffer reduce_tmp_;  // stage 2/3: reduced pieces before accumulation
  Buffer flags_;       // device scratch: found_nonfinite (int32), sqnorm (fp32)
  Buffer norm_ws_;

  // Stage 2/3 unit gradient scratch and stage 3 gathered parameters: slot 0
  // belongs to the embedding unit (held for the whole pass: the tied head
  // uses it), slots 1 and 2 alternate over the other units.
  Buffer grad_slots_[3];
  Buffer gather_slots_[3];
  int grad_slot_unit_[3] = {-1, -1, -1};
  int gather_slot_unit_[3] = {-1, -1, -1};
  std::vector<std::unique_ptr<WorkHandle>> gather_pending_[3];
  std::vector<std::unique_ptr<WorkHandle>> reduce_pending_[3];
  int next_block_slot_ = 1;
  int micro_batch_ = 0;
  Pass pass_ = Pass::kForward;
  std::vector<int> pass_order_;
  std::vector<kernels::ConstTensorRef> norm_refs_;
  // Failure-test hook (ZEROTRAIN_TEST_KILL_RANK / ZEROTRAIN_TEST_KILL_AT_STEP):
  // that rank SIGKILLs itself in the middle of that step's backward.
  int kill_rank_ = -1;
  int64_t kill_at_step_ = -1;
  int64_t steps_begun_ = 0;
};

}  // namespace zt

#endif  // ZEROTRAIN_ZERO_ENGINE_H_
