#include "trainer/trainer.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/status_macros.h"
#include "kernels/cpu_parallel.h"
#include "trainer/config.h"
#include "zero/launch_env.h"

#if ZT_WITH_CUDA
#include <cublasLt.h>

#include "core/library_errors.h"
#endif

namespace zt {
namespace {

LossScalerOptions ScalerOptions(const TrainConfig& c) {
  LossScalerOptions o;
  const auto& ls = c.precision().loss_scaler();
  if (c.precision().dtype() != PrecisionConfig::FP16) {
    // fp32 and bf16 have fp32's exponent range: no scaling.
    o.dynamic = false;
    o.static_scale = 1.0;
    return o;
  }
  o.dynamic = ls.static_scale() == 0;
  o.static_scale = ls.static_scale();
  o.initial_scale_power = ls.initial_scale_power();
  o.window = ls.loss_scale_window();
  o.hysteresis = ls.hysteresis();
  o.consecutive_hysteresis = ls.consecutive_hysteresis();
  o.min_scale = ls.min_loss_scale();
  return o;
}

DType ToDType(PrecisionConfig::DType t) {
  switch (t) {
    case PrecisionConfig::FP16:
      return DType::kFloat16;
    case PrecisionConfig::BF16:
      return DType::kBFloat16;
    default:
      return DType::kFloat32;
  }
}

// H100 SXM dense bf16/fp16 tensor-core peak; MFU is reported on GPUs only.
constexpr double kGpuPeakFlops = 989e12;

}  // namespace

absl::StatusOr<Device> ChooseDevice(const TrainConfig& config, int local_rank) {
  const int gpus = CudaDeviceCount();
  switch (config.device()) {
    case TrainConfig::CPU:
      return Device::Cpu();
    case TrainConfig::CUDA:
      if (!BuiltWithCuda()) {
        return absl::FailedPreconditionError(
            "device: CUDA but this binary was built without CUDA (build with "
            "--config=cuda)");
      }
      if (gpus == 0)
        return absl::FailedPreconditionError(
            "device: CUDA but no GPU is visible");
      return Device::Cuda(local_rank % gpus);
    default:
      return gpus > 0 ? Device::Cuda(local_rank % gpus) : Device::Cpu();
  }
}

Trainer::Trainer(const TrainConfig& config, Communicator* comm,
                 const TrainerOptions& options)
    : config_(config),
      options_(options),
      comm_(comm),
      scaler_(ScalerOptions(config)) {}

Trainer::~Trainer() {
  // A background checkpoint write reads host copies only, but is joined
  // before anything else goes.
  checkpointer_.reset();
  // The engine and model free device memory; they go before the handle.
  model_.reset();
  engine_.reset();
#if ZT_WITH_CUDA
  if (cublaslt_ != nullptr)
    cublasLtDestroy(static_cast<cublasLtHandle_t>(cublaslt_));
#endif
}

absl::StatusOr<std::unique_ptr<Trainer>> Trainer::Create(
    const TrainConfig& config, Communicator* comm,
    const TrainerOptions& options) {
  std::unique_ptr<Trainer> t(new Trainer(config, comm, options));
  ZT_RETURN_IF_ERROR(t->Setup());
  return t;
}

absl::Status Trainer::Setup() {
  device_ = comm_->device();
  if (device_.is_cpu()) {
    // Ranks of one machine share its cores; a launcher that does not say
    // how many ranks run here leaves every rank all the cores.
    if (absl::StatusOr<LaunchEnv> env = DetectLaunchEnv(); env.ok()) {
      kernels::ShareCpuThreadsAmongLocalRanks(env->local_size);
    }
  }
  ZT_ASSIGN_OR_RETURN(allocator_, NewAllocator(device_));
  ctx_.device = device_;
#if !ZT_WITH_CUDA
  if (device_.is_cuda()) {
    return absl::FailedPreconditionError("CUDA device without a CUDA build");
  }
#endif
  // A Stream on the CPU too, so collectives always get one; it has no
  // native handle, so ctx_.stream stays nullptr there.
  ZT_ASSIGN_OR_RETURN(stream_, NewStream(device_));
  ctx_.stream = stream_->cuda_stream();
#if ZT_WITH_CUDA
  if (device_.is_cuda()) {
    cublasLtHandle_t handle = nullptr;
    ZT_CUBLAS_RETURN_IF_ERROR(cublasLtCreate(&handle));
    cublaslt_ = handle;
    ctx_.cublaslt_handle = handle;
  }
#endif
  const ModelConfig& m = config_.model();
  GptShape shape;
  shape.n_layer = m.n_layer();
  shape.n_head = m.n_head();
  shape.n_embd = m.n_embd();
  shape.vocab_size = m.vocab_size();
  shape.padded_vocab_size = static_cast<int>(PaddedVocabSize(m.vocab_size()));
  shape.max_seq_len = m.max_seq_len();
  ZT_ASSIGN_OR_RETURN(ParamLayout layout, ParamLayout::ForGpt(shape));
  layout_ = std::move(layout);
  dtype_ = ToDType(config_.precision().dtype());

  EngineOptions eo;
  eo.stage = static_cast<int>(config_.zero().stage());
  eo.dtype = dtype_;
  eo.reduce_bucket_elements = config_.zero().reduce_bucket_size();
  eo.allgather_bucket_elements = config_.zero().allgather_bucket_size();
  eo.timeout = absl::Seconds(config_.zero().comm_timeout_s());
  eo.stream = stream_.get();
  ZT_ASSIGN_OR_RETURN(
      engine_, ZeroEngine::Create(*layout_, eo, comm_, allocator_.get(), ctx_));
  ZT_RETURN_IF_ERROR(engine_->InitParameters(config_.seed()));
  ZT_ASSIGN_OR_RETURN(
      model_,
      GptModel::Create(*layout_, dtype_, config_.batch().micro_batch_size(),
                       config_.batch().seq_len(), allocator_.get(), ctx_));
  ZT_ASSIGN_OR_RETURN(
      train_data_, DataLoader::FromConfig(config_, DataLoader::Split::kTrain,
                                          comm_->rank(), comm_->world_size()));
  if (config_.eval().batches() > 0) {
    auto eval = DataLoader::FromConfig(config_, DataLoader::Split::kEval,
                                       comm_->rank(), comm_->world_size());
    // Shard data without a val_glob has no eval split: eval is then off.
    if (eval.ok()) {
      eval_data_ = std::move(eval).value();
    } else if (eval.status().code() != absl::StatusCode::kNotFound) {
      return eval.status();
    }
  }
  schedule_.max_lr = config_.optimizer().lr();
  schedule_.min_lr =
      config_.optimizer().lr() * config_.optimizer().min_lr_ratio();
  schedule_.warmup_steps = config_.optimizer().warmup_steps();
  schedule_.max_steps = config_.max_steps();
  if (!config_.checkpoint().dir().empty()) {
    ckpt::CheckpointWriterOptions co;
    co.dir = config_.checkpoint().dir();
    co.keep = config_.checkpoint().keep();
    co.async = !options_.sync_checkpoints;
    co.timeout = engine_->options().timeout;
    co.verbose = comm_->rank() == 0;
    ZT_ASSIGN_OR_RETURN(checkpointer_, ckpt::CheckpointWriter::Create(
                                           co, config_, *layout_, comm_,
                                           allocator_.get(), stream_.get()));
  }
  std::string resume_path = options_.resume_from;
  if (resume_path.empty() && options_.resume) {
    if (config_.checkpoint().dir().empty()) {
      return absl::InvalidArgumentError(
          "--resume needs checkpoint.dir (or use --resume_from=DIR)");
    }
    ZT_ASSIGN_OR_RETURN(std::optional<std::string> latest,
                        ckpt::FindLatest(config_.checkpoint().dir()));
    if (latest) {
      resume_path = *latest;
    } else if (comm_->rank() == 0) {
      std::printf("resume: no checkpoint in %s yet; starting from step 0\n",
                  config_.checkpoint().dir().c_str());
    }
  }
  if (!resume_path.empty()) ZT_RETURN_IF_ERROR(LoadCheckpoint(resume_path));
  return absl::OkStatus();
}

absl::Status Trainer::LoadCheckpoint(const std::string& path) {
  ZT_ASSIGN_OR_RETURN(
      ckpt::LoadedCheckpoint loaded,
      ckpt::LoadCheckpoint(path, *layout_, engine_.get()));
  step_ = loaded.training.step;
  adam_steps_ = loaded.training.adam_steps;
  scaler_.Restore(loaded.training.loss_scaler);
  ZT_RETURN_IF_ERROR(Annotate(train_data_->Seek(loaded.training.data),
                              absl::StrCat("resuming from ", loaded.dir)));
  if (comm_->rank() == 0) {
    std::printf(
        "resume: loaded %s at step %lld (saved by %d rank(s) at ZeRO stage "
        "%d)\n",
        loaded.dir.c_str(), static_cast<long long>(step_),
        loaded.saved_world_size, loaded.saved_stage);
    std::fflush(stdout);
  }
  return absl::OkStatus();
}

absl::Status Trainer::SaveCheckpoint() {
  if (checkpointer_ == nullptr) {
    return absl::FailedPreconditionError(
        "checkpoint.dir is not set: nowhere to save a checkpoint");
  }
  ckpt::TrainingState t;
  t.step = step_;
  t.adam_steps = adam_steps_;
  t.loss_scaler = scaler_.state();
  t.data = train_data_->position();
  return checkpointer_->Save(ckpt::ViewOf(*engine_), t);
}

absl::Status Trainer::FinishCheckpoints() {
  if (checkpointer_ == nullptr) return absl::OkStatus();
  return checkpointer_->Finish();
}

std::optional<double> Trainer::entropy_floor() const {
  const SyntheticCorpus* c = train_data_->synthetic_corpus();
  if (c == nullptr) return std::nullopt;
  return c->entropy_rate_nats();
}

absl::StatusOr<StepReport> Trainer::TrainStep() {
  const auto start = std::chrono::steady_clock::now();
  const int accum = config_.batch().grad_accum_steps();
  const int B = config_.batch().micro_batch_size(),
            T = config_.batch().seq_len();
  const int world = comm_->world_size();
  const double loss_scale = scaler_.scale();
  // Each rank's losses are means over its tokens; the gradient of the mean
  // over the global batch gives every token 1/(B T accum world).
  const float dloss =
      static_cast<float>(loss_scale / (double(B) * T * accum * world));
  ZT_RETURN_IF_ERROR(engine_->BeginStep());
  double loss_sum = 0;
  Batch batch;
  for (int micro = 0; micro < accum; ++micro) {
    ZT_RETURN_IF_ERROR(engine_->BeginMicroBatch(micro));
    ZT_RETURN_IF_ERROR(train_data_->Next(&batch));
    ForwardOptions fo;
    fo.inputs = batch.inputs.data();
    fo.targets = batch.targets.data();
    fo.dloss = dloss;
    fo.compute_grad = true;
    ZT_RETURN_IF_ERROR(model_->Forward(*engine_, fo));
    ZT_ASSIGN_OR_RETURN(double loss, model_->MeanLoss());
    loss_sum += loss;
    ZT_RETURN_IF_ERROR(model_->Backward(*engine_));
  }
  ZT_RETURN_IF_ERROR(engine_->FinishGradients());
  if (inject_nonfinite_) {
    inject_nonfinite_ = false;
    if (comm_->rank() == 0)
      ZT_RETURN_IF_ERROR(engine_->InjectNonFiniteGradient());
  }
  kernels::AdamWHyper hyper;
  hyper.lr = static_cast<float>(schedule_.At(step_));
  hyper.beta1 = config_.optimizer().beta1();
  hyper.beta2 = config_.optimizer().beta2();
  hyper.eps = config_.optimizer().eps();
  hyper.weight_decay = config_.optimizer().weight_decay();
  hyper.step = adam_steps_ + 1;
  ZT_ASSIGN_OR_RETURN(
      StepOutcome outcome,
      engine_->Step(hyper, loss_scale, config_.optimizer().grad_clip()));
  scaler_.Update(outcome.skipped);
  if (!outcome.skipped) ++adam_steps_;
  float mean_loss = static_cast<float>(loss_sum / accum);
  ZT_RETURN_IF_ERROR(AllReduceHostFloats(comm_, allocator_.get(), stream_.get(),
                                         &mean_loss, 1,
                                         engine_->options().timeout));
  StepReport r;
  r.step = ++step_;
  r.loss = static_cast<double>(mean_loss) / world;
  r.lr = hyper.lr;
  r.grad_norm = outcome.grad_norm;
  r.loss_scale = loss_scale;
  r.skipped = outcome.skipped;
  r.tokens = int64_t{B} * T * accum * world;
  r.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  return r;
}

absl::StatusOr<double> Trainer::Evaluate() {
  if (eval_data_ == nullptr)
    return absl::FailedPreconditionError("no eval data configured");
  eval_data_->Reset();
  Batch batch;
  double sum = 0;
  const int n = config_.eval().batches();
  for (int i = 0; i < n; ++i) {
    ZT_RETURN_IF_ERROR(eval_data_->Next(&batch));
    ForwardOptions fo;
    fo.inputs = batch.inputs.data();
    fo.targets = batch.targets.data();
    ZT_RETURN_IF_ERROR(model_->Forward(*engine_, fo));
    ZT_ASSIGN_OR_RETURN(double loss, model_->MeanLoss());
    sum += loss;
  }
  float mean = static_cast<float>(sum / n);
  ZT_RETURN_IF_ERROR(AllReduceHostFloats(comm_, allocator_.get(), stream_.get(),
                                         &mean, 1, engine_->options().timeout));
  return static_cast<double>(mean) / comm_->world_size();
}

absl::Status Trainer::Run() {
  const bool lead = comm_->rank() == 0;
  std::unique_ptr<MetricsLogger> metrics;
  if (lead) {
    MetricsOptions mo;
    mo.jsonl_path = config_.logging().metrics_jsonl();
    mo.tensorboard_dir = config_.logging().tensorboard_dir();
    mo.progress_bar = config_.logging().progress_bar() != LoggingConfig::NEVER;
    mo.total_steps = config_.max_steps();
    mo.print_every = 1;
    ZT_ASSIGN_OR_RETURN(metrics, MetricsLogger::Create(mo));
    std::printf(
        "zerotrain: %d rank(s) on %s over %s, ZeRO stage %d, %s, %lld "
        "parameters\n",
        comm_->world_size(), device_.ToString().c_str(),
        std::string(comm_->backend_name()).c_str(), engine_->options().stage,
        std::string(DTypeName(dtype_)).c_str(),
        static_cast<long long>(layout_->numel()));
    std::printf("data: %s\n", train_data_->Describe().c_str());
    if (auto h = entropy_floor()) {
      std::printf("corpus entropy rate: %.4f nats/token (the loss floor)\n",
                  *h);
    }
    const MemoryStats ms = allocator_->Stats();
    std::printf("memory per rank: %s\n", ms.ToString().c_str());
    std::fflush(stdout);
  }
  const int interval = std::max(1, config_.logging().interval());
  const int eval_every = config_.eval().interval();
  double tokens = 0, seconds = 0, last_loss = NAN;
  std::optional<double> last_eval;
  const int ckpt_every = config_.checkpoint().interval();
  while (step_ < config_.max_steps()) {
    ZT_ASSIGN_OR_RETURN(StepReport r, TrainStep());
    tokens += r.tokens;
    seconds += r.seconds;
    last_loss = r.loss;
    const bool last = step_ == config_.max_steps();
    if (lead && (step_ % interval == 0 || last || r.step == 1)) {
      StepMetrics sm;
      sm.step = r.step;
      sm.loss = r.loss;
      sm.lr = r.lr;
      sm.grad_norm = r.grad_norm;
      sm.loss_scale = r.loss_scale;
      sm.skipped = r.skipped;
      sm.tokens_per_s = seconds > 0 ? tokens / seconds : 0;
      sm.mfu = device_.is_cuda()
                   ? sm.tokens_per_s * model_->FlopsPerToken() / kGpuPeakFlops
                   : NAN;
      sm.peak_memory_bytes = allocator_->Stats().total_peak;
      const TrafficStats traffic = comm_->traffic();
      sm.extras["comm_elements"] =
          static_cast<double>(traffic.total_elements());
      sm.extras["model_state_bytes"] =
          static_cast<double>(engine_->ModelStateBytes());
      ZT_RETURN_IF_ERROR(metrics->Log(sm));
      tokens = seconds = 0;
    }
    if (eval_data_ && ((eval_every > 0 && step_ % eval_every == 0) || last)) {
      ZT_ASSIGN_OR_RETURN(double val, Evaluate());
      last_eval = val;
      if (lead) ZT_RETURN_IF_ERROR(metrics->LogEval(step_, val));
    }
    if (checkpointer_) {
      ZT_RETURN_IF_ERROR(checkpointer_->Poll());
      if ((ckpt_every > 0 && step_ % ckpt_every == 0) || last) {
        ZT_RETURN_IF_ERROR(SaveCheckpoint());
      }
    }
  }
  ZT_RETURN_IF_ERROR(FinishCheckpoints());
  if (lead) {
    std::printf("final train loss %.4f", last_loss);
    if (last_eval) std::printf(", val loss %.4f", *last_eval);
    if (auto h = entropy_floor()) {
      const double final_loss = last_eval ? *last_eval : last_loss;
      std::printf("; corpus entropy %.4f nats, gap %.4f nats", *h,
                  final_loss - *h);
    }
    std::printf("\n");
    std::fflush(stdout);
  }
  return absl::OkStatus();
}

}  // namespace zt
