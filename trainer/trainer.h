#ifndef ZEROTRAIN_TRAINER_TRAINER_H_
#define ZEROTRAIN_TRAINER_TRAINER_H_

// The training loop: micro-batches with gradient accumulation, the ZeRO
// engine's reduction and AdamW step, warmup + cosine LR, global-norm
// clipping, the fp16 loss scaler, periodic eval and metrics. The same loop
// runs on one rank or many, on the CPU or a GPU.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "checkpoint/checkpointer.h"
#include "core/device.h"
#include "kernels/op_context.h"
#include "trainer/config.pb.h"
#include "trainer/data.h"
#include "trainer/gpt_model.h"
#include "optim/loss_scaler.h"
#include "optim/lr_schedule.h"
#include "trainer/metrics.h"
#include "trainer/synthetic_corpus.h"
#include "zero/communicator.h"
#include "zero/engine.h"

namespace zt {

struct StepReport {
  int64_t step = 0;      // optimizer steps done after this one
  double loss = 0;       // mean over the global batch
  double lr = 0;
  double grad_norm = 0;  // before clipping
  double loss_scale = 1;
  bool skipped = false;
  double seconds = 0;
  int64_t tokens = 0;    // global tokens in the step
};

// How a run starts and saves, beyond its config.
struct TrainerOptions {
  // Continue from checkpoint.dir's `latest` (from step 0 when nothing has
  // been committed there yet).
  bool resume = false;
  // Continue from this checkpoint: a step directory or a checkpoint root.
  // Must exist. Implies resume.
  std::string resume_from;
  // Write checkpoints on the training thread instead of in the background.
  bool sync_checkpoints = false;
};

class Trainer {
 public:
  // `config` must be resolved and validated (ResolveConfig). `comm` outlives
  // the trainer. Collective when resuming.
  static absl::StatusOr<std::unique_ptr<Trainer>> Create(
      const TrainConfig& config, Communicator* comm,
      const TrainerOptions& options = {});
  ~Trainer();

  absl::StatusOr<StepReport> TrainStep();
  // Mean loss over the configured eval batches (from the start of the eval
  // data each time), averaged over ranks.
  absl::StatusOr<double> Evaluate();
  // The whole run: steps until max_steps with logging, eval, and
  // checkpoints every checkpoint.interval steps and after the last step.
  absl::Status Run();

  // Collective: starts saving a checkpoint of the current step into
  // checkpoint.dir (FailedPrecondition when it is empty). In the background
  // unless sync_checkpoints; an earlier save's failure is returned here.
  absl::Status SaveCheckpoint();
  // Collective: completes the save in flight; returns any save's failure.
  absl::Status FinishCheckpoints();
  // Collective: loads a checkpoint (a step directory or a root's latest)
  // into this trainer: weights, moments, step counts, loss scaler, data
  // position.
  absl::Status LoadCheckpoint(const std::string& path);
  ckpt::CheckpointWriter* checkpoint_writer() { return checkpointer_.get(); }

  // Test hook: the next TrainStep sees a non-finite gradient.
  void InjectNonFiniteGradientOnce() { inject_nonfinite_ = true; }

  int64_t step() const { return step_; }
  const TrainConfig& config() const { return config_; }
  ZeroEngine& engine() { return *engine_; }
  GptModel& model() { return *model_; }
  DataLoader& train_data() { return *train_data_; }
  LossScaler& loss_scaler() { return scaler_; }
  Allocator& allocator() { return *allocator_; }
  Device device() const { return device_; }
  // Entropy rate of the synthetic corpus in nats, if training on it.
  std::optional<double> entropy_floor() const;
  int64_t adam_steps() const { return adam_steps_; }
  void set_step(int64_t step) { step_ = step; }
  void set_adam_steps(int64_t steps) { adam_steps_ = steps; }

 private:
  Trainer(const TrainConfig& config, Communicator* comm,
          const TrainerOptions& options);
  absl::Status Setup();

  TrainConfig config_;
  TrainerOptions options_;
  Communicator* comm_;
  Device device_;
  std::unique_ptr<Allocator> allocator_;
  std::unique_ptr<Stream> stream_;
  kernels::OpContext ctx_;
  void* cublaslt_ = nullptr;
  std::optional<ParamLayout> layout_;
  DType dtype_ = DType::kFloat32;
  std::unique_ptr<ZeroEngine> engine_;
  std::unique_ptr<GptModel> model_;
  std::unique_ptr<DataLoader> train_data_;
  std::unique_ptr<DataLoader> eval_data_;
  LossScaler scaler_;
  LrSchedule schedule_;
  int64_t step_ = 0;
  int64_t adam_steps_ = 0;
  bool inject_nonfinite_ = false;
  std::unique_ptr<ckpt::CheckpointWriter> checkpointer_;
};

// Picks the device for this rank: CUDA (GPU local_rank % count) when the
// config allows it and the build and machine have one, else the CPU.
absl::StatusOr<Device> ChooseDevice(const TrainConfig& config, int local_rank);

}  // namespace zt

#endif  // ZEROTRAIN_TRAINER_TRAINER_H_
