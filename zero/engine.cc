#include "zero/engine.h"

#include <algorithm>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <random>

#include "absl/strings/str_cat.h"
#include "kernels/accumulate.h"
#include "core/status_macros.h"
#include "kernels/grad_utils.h"

namespace zt {
namespace {

// Standard normal draws from a fully specified generator (std::normal_
// distribution differs between standard libraries; checkpoints and
// equivalence tests need the same numbers everywhere).
class NormalStream {
 public:
  explicit NormalStream(uint64_t seed) : rng_(seed) {}
  double Next() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    double u1;
    do {
      u1 = Uniform();
    } while (u1 <= 0);
    const double u2 = Uniform();
    const double r = std::sqrt(-2.0 * std::log(u1));
    spare_ = r * std::sin(2 * M_PI * u2);
    has_spare_ = true;
    return r * std::cos(2 * M_PI * u2);
  }

 private:
  double Uniform() { return static_cast<double>(rng_() >> 11) * 0x1.0p-53; }
  std::mt19937_64 rng_;
  bool has_spare_ = false;
  double spare_ = 0;
};

Range Intersect(Range a, Range b) {
  return {std::max(a.begin, b.begin),
          std::max(std::max(a.begin, b.begin), std::min(a.end, b.end))};
}

}  // namespace

absl::Status AllReduceHostFloats(Communicator* comm, Allocator* allocator,
                                 Stream* stream, float* values, int n,
                                 absl::Duration timeout) {
  if (comm->world_size() == 1) return absl::OkStatus();
  float* buf = values;
  Buffer dev_buf;
  const Device dev = comm->device();
  if (!dev.is_cpu()) {
    // Device transports (NCCL) need device memory.
    ZT_ASSIGN_OR_RETURN(dev_buf, Buffer::Allocate(*allocator, n * sizeof(float),
                                                  MemoryCategory::kWorkspace));
    ZT_RETURN_IF_ERROR(CopyBytes(dev_buf.data(), dev, values, Device::Cpu(),
                                 n * sizeof(float), stream));
    ZT_RETURN_IF_ERROR(SynchronizeStream(dev, stream));
    buf = dev_buf.as<float>();
  }
  AllReduceOptions o;
  o.send = buf;
  o.recv = buf;
  o.count = n;
  o.dtype = DType::kFloat32;
  o.stream = stream;
  ZT_ASSIGN_OR_RETURN(auto h, comm->AllReduce(o));
  ZT_RETURN_IF_ERROR(h->Wait(timeout));
  if (!dev_buf.empty()) {
    ZT_RETURN_IF_ERROR(
        CopyBytes(values, Device::Cpu(), buf, dev, n * sizeof(float), stream));
    ZT_RETURN_IF_ERROR(SynchronizeStream(dev, stream));
  }
  return absl::OkStatus();
}

ZeroEngine::ZeroEngine(const ParamLayout& layout, const EngineOptions& options,
                       Communicator* comm, Allocator* allocator,
                       const kernels::OpContext& ctx)
    : layout_(layout),
      opt_(options),
      comm_(comm),
      alloc_(allocator),
      ctx_(ctx),
      part_(layout.numel(), comm->world_size()) {}

ZeroEngine::~ZeroEngine() {
  // Collectives still in flight here mean a failed step (a dead peer): do
  // not wait for them again, and do not free memory they may still write.
  bool pending = false;
  for (int s = 0; s < 3; ++s) {
    for (auto* list : {&gather_pending_[s], &reduce_pending_[s]}) {
      for (auto& h : *list) {
        auto done = h->Poll();
        pending = pending || !done.ok() || !*done;
      }
    }
  }
  if (pending) {
    for (Buffer* b : {&params_, &grads_, &reduced_, &param_send_, &reduce_tmp_})
      b->Leak();
    for (int s = 0; s < 3; ++s) {
      grad_slots_[s].Leak();
      gather_slots_[s].Leak();
    }
  }
}

absl::StatusOr<std::unique_ptr<ZeroEngine>> ZeroEngine::Create(
    const ParamLayout& layout, const EngineOptions& options, Communicator* comm,
    Allocator* allocator, const kernels::OpContext& ctx) {
  if (options.stage < 0 || options.stage > 3) {
    return absl::InvalidArgumentError(
        absl::StrCat("zero.stage must be 0..3, got ", options.stage));
  }
  // Collectives ordered on another stream than the compute would race it.
  if (options.stream != nullptr &&
      options.stream->cuda_stream() != ctx.stream) {
    return absl::InvalidArgumentError(
        "EngineOptions.stream must be the stream behind ctx.stream");
  }
  std::unique_ptr<ZeroEngine> e(
      new ZeroEngine(layout, options, comm, allocator, ctx));
  ZT_RETURN_IF_ERROR(e->Setup());
  return e;
}

absl::Status ZeroEngine::Setup() {
  if (const char* r = std::getenv("ZEROTRAIN_TEST_KILL_RANK"))
    kill_rank_ = std::atoi(r);
  if (const char* s = std::getenv("ZEROTRAIN_TEST_KILL_AT_STEP"))
    kill_at_step_ = std::atoll(s);
  const int64_t numel = layout_.numel();
  const int rank = comm_->rank();
  shard_ = part_.Shard(rank);
  opt_range_ =
      opt_.stage == 0 ? Range{0, numel} : Intersect(shard_, {0, numel});
  const int64_t S = part_.shard_size();
  auto alloc = [&](Buffer* b, int64_t bytes, MemoryCategory c) -> absl::Status {
    ZT_ASSIGN_OR_RETURN(
        *b, Buffer::Allocate(*alloc_, static_cast<size_t>(bytes), c));
    return ZeroBytes(b->data(), alloc_->device(), b->bytes(), ctx_.stream);
  };
  const int stage = opt_.stage;
  ZT_RETURN_IF_ERROR(alloc(&params_, (stage < 3 ? numel : S) * es(),
                           MemoryCategory::kParameters));
  ZT_RETURN_IF_ERROR(alloc(&grads_, (stage < 2 ? numel : S) * es(),
                           MemoryCategory::kGradients));
  const int64_t n_opt = stage == 0 ? numel : S;
  ZT_RETURN_IF_ERROR(
      alloc(&master_, n_opt * 4, MemoryCategory::kMasterWeights));
  ZT_RETURN_IF_ERROR(alloc(&m_, n_opt * 4, MemoryCategory::kOptimizerStates));
  ZT_RETURN_IF_ERROR(alloc(&v_, n_opt * 4, MemoryCategory::kOptimizerStates));
  if (stage == 1)
    ZT_RETURN_IF_ERROR(
        alloc(&reduced_, S * es(), MemoryCategory::kCommBuffers));
  if (stage == 1 || stage == 2) {
    ZT_RETURN_IF_ERROR(
        alloc(&param_send_, S * es(), MemoryCategory::kCommBuffers));
  }
  if (stage >= 2) {
    ZT_RETURN_IF_ERROR(
        alloc(&reduce_tmp_, S * es(), MemoryCategory::kCommBuffers));
    int64_t max_unit = 0;
    for (size_t u = 1; u < layout_.units().size(); ++u) {
      max_unit = std::max(max_unit, layout_.units()[u].numel());
    }
    const int64_t sizes[3] = {layout_.units()[0].numel(), max_unit, max_unit};
    for (int s = 0; s < 3; ++s) {
      ZT_RETURN_IF_ERROR(alloc(&grad_slots_[s], sizes[s] * es(),
                               MemoryCategory::kCommBuffers));
      if (stage == 3) {
        ZT_RETURN_IF_ERROR(alloc(&gather_slots_[s], sizes[s] * es(),
                                 MemoryCategory::kCommBuffers));
      }
    }
  }
  ZT_RETURN_IF_ERROR(alloc(&flags_, 16, MemoryCategory::kWorkspace));

  // The optimizer's view of this rank's state: one AdamW tensor per piece of
  // a parameter inside opt_range, so weight decay follows each parameter.
  const char* grad_base = stage == 1 ? reduced_.as<char>() : grads_.as<char>();
  const int64_t grad_origin = stage == 0 ? 0 : shard_.begin;
  for (const ParamSpec& p : layout_.params()) {
    const Range piece = Intersect({p.offset, p.offset + p.numel}, opt_range_);
    if (piece.size() == 0) continue;
    kernels::AdamWTensor t;
    const int64_t o = piece.begin - opt_range_.begin;
    t.master = master_.as<float>() + o;
    t.m = m_.as<float>() + o;
    t.v = v_.as<float>() + o;
    t.grad = grad_base + (piece.begin - grad_origin) * es();
    char* param_base =
        stage == 0 ? params_.as<char>() + piece.begin * es()
        : stage == 3
            ? params_.as<char>() + (piece.begin - shard_.begin) * es()
            : param_send_.as<char>() + (piece.begin - shard_.begin) * es();
    t.param = param_base;
    t.n = piece.size();
    t.decay = p.decay;
    adam_tensors_.push_back(t);
  }
  norm_refs_ = {
      {grad_base + (opt_range_.begin - grad_origin) * es(), opt_range_.size()}};
  const size_t ws = kernels::SquaredNormWorkspaceBytes(norm_refs_);
  ZT_RETURN_IF_ERROR(
      alloc(&norm_ws_, std::max<size_t>(ws, 16), MemoryCategory::kWorkspace));
  return absl::OkStatus();
}

int64_t ZeroEngine::ModelStateBytes() const {
  const MemoryStats s = alloc_->Stats();
  return s.Live(MemoryCategory::kParameters) +
         s.Live(MemoryCategory::kGradients) +
         s.Live(MemoryCategory::kMasterWeights) +
         s.Live(MemoryCategory::kOptimizerStates);
}

absl::Status ZeroEngine::InitParameters(uint64_t seed) {
  const int64_t numel = layout_.numel();
  std::vector<float> full(numel);
  for (size_t i = 0; i < layout_.params().size(); ++i) {
    const ParamSpec& p = layout_.params()[i];
    float* dst = full.data() + p.offset;
    if (p.init_std > 0) {
      NormalStream rng(seed * 0x9E3779B97F4A7C15ull + i + 1);
      for (int64_t j = 0; j < p.numel; ++j)
        dst[j] = static_cast<float>(p.init_std * rng.Next());
    } else {
      std::fill(dst, dst + p.numel, p.init_value);
    }
  }
  const Device dev = alloc_->device();
  ZT_RETURN_IF_ERROR(CopyBytes(master_.data(), dev,
                               full.data() + opt_range_.begin, Device::Cpu(),
                               opt_range_.size() * 4, ctx_.stream));
  // Working parameters are the rounding of master, made on the host with the
  // same RNE conversion the device uses.
  const Range held =
      opt_.stage < 3 ? Range{0, numel} : Intersect(shard_, {0, numel});
  std::vector<uint16_t> half;
  const void* src = full.data() + held.begin;
  if (opt_.dtype != DType::kFloat32) {
    half.resize(held.size());
    for (int64_t j = 0; j < held.size(); ++j) {
      const float f = full[held.begin + j];
      half[j] = opt_.dtype == DType::kFloat16 ? FloatToHalfBits(f)
                                              : FloatToBFloat16Bits(f);
    }
    src = half.data();
  }
  ZT_RETURN_IF_ERROR(CopyBytes(params_.data(), dev, src, Device::Cpu(),
                               held.size() * es(), ctx_.stream));
  ZT_RETURN_IF_ERROR(ZeroBytes(m_.data(), dev, m_.bytes(), ctx_.stream));
  ZT_RETURN_IF_ERROR(ZeroBytes(v_.data(), dev, v_.bytes(), ctx_.stream));
  return SynchronizeStream(dev, ctx_.stream);
}

absl::Status ZeroEngine::RefreshParamsFromMaster() {
  if (opt_.stage == 0 || opt_.stage == 3) {
    char* dst = opt_.stage == 0 ? params_.as<char>() : params_.as<char>();
    ZT_RETURN_IF_ERROR(kernels::Cast(ctx_, master_.data(), DType::kFloat32, dst,
                                     opt_.dtype, opt_range_.size()));
    return SynchronizeStream(alloc_->device(), ctx_.stream);
  }
  ZT_RETURN_IF_ERROR(kernels::Cast(ctx_, master_.data(), DType::kFloat32,
                                   param_send_.data(), opt_.dtype,
                                   opt_range_.size()));
  ZT_RETURN_IF_ERROR(SynchronizeStream(alloc_->device(), ctx_.stream));
  std::vector<std::unique_ptr<WorkHandle>> handles;
  for (const Range& b :
       MakeBuckets({0, layout_.numel()}, opt_.allgather_bucket_elements, {})) {
    const Range mine = Intersect(b, shard_);
    AllGatherVOptions o;
    o.send = param_send_.as<char>() + (mine.begin - shard_.begin) * es();
    o.recv = params_.as<char>() + b.begin * es();
    o.counts = part_.Counts(b);
    o.dtype = opt_.dtype;
    o.stream = opt_.stream;
    ZT_ASSIGN_OR_RETURN(auto h, comm_->AllGatherV(o));
    handles.push_back(std::move(h));
  }
  return WaitAll(handles);
}

absl::Status ZeroEngine::WaitAll(
    std::vector<std::unique_ptr<WorkHandle>>& handles) {
  for (auto& h : handles) ZT_RETURN_IF_ERROR(h->Wait(opt_.timeout));
  handles.clear();
  return absl::OkStatus();
}

absl::Status ZeroEngine::Progress() {
  // Host transports advance only inside MPI calls: poke them between units
  // so the collectives overlap the compute.
  for (int s = 0; s < 3; ++s) {
    for (auto& h : gather_pending_[s]) ZT_RETURN_IF_ERROR(h->Poll().status());
    for (auto& h : reduce_pending_[s]) ZT_RETURN_IF_ERROR(h->Poll().status());
  }
  return absl::OkStatus();
}

absl::Status ZeroEngine::BeginStep() {
  ++steps_begun_;
  micro_batch_ = 0;
  comm_->ResetTraffic();
  return ZeroBytes(grads_.data(), alloc_->device(), grads_.bytes(),
                   ctx_.stream);
}

absl::Status ZeroEngine::BeginMicroBatch(int index) {
  for (int s = 0; s < 3; ++s) ZT_RETURN_IF_ERROR(DrainReduce(s));
  micro_batch_ = index;
  return absl::OkStatus();
}

int ZeroEngine::SlotFor(int unit) const {
  for (int s = 0; s < 3; ++s) {
    if (gather_slot_unit_[s] == unit) return s;
  }
  return -1;
}

absl::Status ZeroEngine::StartGather(int unit, int slot) {
  const UnitSpec& u = layout_.units()[unit];
  gather_slot_unit_[slot] = unit;
  for (const Range& b :
       MakeBuckets({u.begin, u.end}, opt_.allgather_bucket_elements, {})) {
    const Range mine = Intersect(b, shard_);
    AllGatherVOptions o;
    o.send = params_.as<char>() + (mine.begin - shard_.begin) * es();
    o.recv = gather_slots_[slot].as<char>() + (b.begin - u.begin) * es();
    o.counts = part_.Counts(b);
    o.dtype = opt_.dtype;
    o.stream = opt_.stream;
    ZT_ASSIGN_OR_RETURN(auto h, comm_->AllGatherV(o));
    gather_pending_[slot].push_back(std::move(h));
  }
  return absl::OkStatus();
}

absl::StatusOr<UnitBuffers> ZeroEngine::Acquire(int unit, Pass pass) {
  const int n_units = static_cast<int>(layout_.units().size());
  if (unit < 0 || unit >= n_units) {
    return absl::InvalidArgumentError(
        absl::StrCat("unit ", unit, " out of range"));
  }
  if (unit == 0) {
    pass_ = pass;
    pass_order_.clear();
    pass_order_.push_back(0);
    if (pass == Pass::kForward) {
      for (int u = 1; u < n_units; ++u) pass_order_.push_back(u);
    } else {
      for (int u = n_units - 1; u >= 1; --u) pass_order_.push_back(u);
    }
  }
  ZT_RETURN_IF_ERROR(Progress());
  const UnitSpec& spec = layout_.units()[unit];
  UnitBuffers out;
  out.begin = spec.begin;
  if (opt_.stage < 3) {
    out.params = params_.as<char>() + spec.begin * es();
  } else {
    int slot = SlotFor(unit);
    if (slot < 0) {
      slot = unit == 0 ? 0 : (gather_slot_unit_[1] == -1 ? 1 : 2);
      if (gather_slot_unit_[slot] != -1) {
        return absl::InternalError(
            absl::StrCat("no free gather slot for unit ", unit));
      }
      ZT_RETURN_IF_ERROR(StartGather(unit, slot));
    }
    ZT_RETURN_IF_ERROR(WaitAll(gather_pending_[slot]));
    out.params = gather_slots_[slot].data();
    // Prefetch the next unit of this pass into the free slot.
    auto it = std::find(pass_order_.begin(), pass_order_.end(), unit);
    if (it != pass_order_.end() && it + 1 != pass_order_.end()) {
      const int next = *(it + 1);
      const int free_slot = gather_slot_unit_[1] == -1   ? 1
                            : gather_slot_unit_[2] == -1 ? 2
                                                         : -1;
      if (next != 0 && SlotFor(next) < 0 && free_slot > 0) {
        ZT_RETURN_IF_ERROR(StartGather(next, free_slot));
      }
    }
  }
  if (pass == Pass::kBackward) {
    if (steps_begun_ == kill_at_step_ && comm_->rank() == kill_rank_ &&
        unit == layout_.final_unit()) {
      std::fprintf(stderr,
                   "rank %d: killing itself mid-step %lld (test hook)\n",
                   kill_rank_, static_cast<long long>(steps_begun_));
      std::fflush(stderr);
      raise(SIGKILL);
    }
    if (opt_.stage < 2) {
      out.grads = grads_.as<char>() + spec.begin * es();
      // BeginStep zeroed grads_; later micro-batches add to it.
      out.grads_zeroed = micro_batch_ == 0;
    } else {
      int slot = 0;
      if (unit != 0) {
        slot = next_block_slot_;
        next_block_slot_ = 3 - next_block_slot_;
      }
      ZT_RETURN_IF_ERROR(DrainReduce(slot));
      grad_slot_unit_[slot] = unit;
      ZT_RETURN_IF_ERROR(ZeroBytes(grad_slots_[slot].data(), alloc_->device(),
                                   spec.numel() * es(), ctx_.stream));
      out.grads = grad_slots_[slot].data();
      out.grads_zeroed = true;
    }
  }
  return out;
}

absl::Status ZeroEngine::GradientsReady(int unit) {
  if (opt_.stage < 2) return absl::OkStatus();
  int slot = -1;
  for (int s = 0; s < 3; ++s) {
    if (grad_slot_unit_[s] == unit) slot = s;
  }
  if (slot < 0)
    return absl::InternalError(
        absl::StrCat("unit ", unit, " has no gradient slot"));
  // The gradients were written on the compute stream; host transports read
  // them directly.
  ZT_RETURN_IF_ERROR(SynchronizeStream(alloc_->device(), ctx_.stream));
  const UnitSpec& u = layout_.units()[unit];
  char* dst_base =
      micro_batch_ == 0 ? grads_.as<char>() : reduce_tmp_.as<char>();
  for (const Range& b :
       MakeBuckets({u.begin, u.end}, opt_.reduce_bucket_elements, {})) {
    const Range mine = Intersect(b, shard_);
    ReduceScatterVOptions o;
    o.send = grad_slots_[slot].as<char>() + (b.begin - u.begin) * es();
    o.recv = dst_base + (mine.begin - shard_.begin) * es();
    o.counts = part_.Counts(b);
    o.dtype = opt_.dtype;
    o.stream = opt_.stream;
    ZT_ASSIGN_OR_RETURN(auto h, comm_->ReduceScatterV(o));
    reduce_pending_[slot].push_back(std::move(h));
  }
  return absl::OkStatus();
}

absl::Status ZeroEngine::DrainReduce(int slot) {
  if (grad_slot_unit_[slot] < 0) return absl::OkStatus();
  ZT_RETURN_IF_ERROR(WaitAll(reduce_pending_[slot]));
  const UnitSpec& u = layout_.units()[grad_slot_unit_[slot]];
  grad_slot_unit_[slot] = -1;
  if (micro_batch_ > 0) {
    const Range mine = Intersect({u.begin, u.end}, shard_);
    const int64_t off = (mine.begin - shard_.begin) * es();
    ZT_RETURN_IF_ERROR(
        kernels::Accumulate(ctx_, opt_.dtype, grads_.as<char>() + off,
                            reduce_tmp_.as<char>() + off, mine.size()));
  }
  return absl::OkStatus();
}

absl::Status ZeroEngine::Release(int unit, Pass pass) {
  if (opt_.stage == 3) {
    const int slot = SlotFor(unit);
    if (slot >= 0) {
      // Later work on the stream may still read the slot; it is reused only
      // after a collective that is ordered after that work.
      ZT_RETURN_IF_ERROR(SynchronizeStream(alloc_->device(), ctx_.stream));
      gather_slot_unit_[slot] = -1;
    }
  }
  return Progress();
}

absl::Status ZeroEngine::FinishGradients() {
  for (int s = 0; s < 3; ++s) ZT_RETURN_IF_ERROR(DrainReduce(s));
  ZT_RETURN_IF_ERROR(SynchronizeStream(alloc_->device(), ctx_.stream));
  // Stage 0 on one rank has nothing to reduce; stage 1 still moves its
  // gradient into the shard buffer the optimizer reads.
  if (comm_->world_size() == 1 && opt_.stage == 0) return absl::OkStatus();
  std::vector<std::unique_ptr<WorkHandle>> handles;
  const std::vector<Range> buckets =
      MakeBuckets({0, layout_.numel()}, opt_.reduce_bucket_elements, {});
  if (opt_.stage == 0) {
    for (const Range& b : buckets) {
      AllReduceOptions o;
      o.send = grads_.as<char>() + b.begin * es();
      o.recv = grads_.as<char>() + b.begin * es();
      o.count = b.size();
      o.dtype = opt_.dtype;
      o.stream = opt_.stream;
      ZT_ASSIGN_OR_RETURN(auto h, comm_->AllReduce(o));
      handles.push_back(std::move(h));
    }
  } else if (opt_.stage == 1) {
    for (const Range& b : buckets) {
      const Range mine = Intersect(b, shard_);
      ReduceScatterVOptions o;
      o.send = grads_.as<char>() + b.begin * es();
      o.recv = reduced_.as<char>() + (mine.begin - shard_.begin) * es();
      o.counts = part_.Counts(b);
      o.dtype = opt_.dtype;
      o.stream = opt_.stream;
      ZT_ASSIGN_OR_RETURN(auto h, comm_->ReduceScatterV(o));
      handles.push_back(std::move(h));
    }
  }
  return WaitAll(handles);
}

absl::StatusOr<StepOutcome> ZeroEngine::Step(kernels::AdamWHyper hyper,
                                             double loss_scale, double clip) {
  const Device dev = alloc_->device();
  int32_t* flag = flags_.as<int32_t>();
  float* sqnorm = reinterpret_cast<float*>(flags_.as<char>() + 8);
  ZT_RETURN_IF_ERROR(
      ZeroBytes(flags_.data(), dev, flags_.bytes(), ctx_.stream));
  kernels::OpContext ctx = ctx_;
  ctx.workspace = norm_ws_.data();
  ctx.workspace_bytes = norm_ws_.bytes();
  if (opt_range_.size() > 0) {
    // Scaling by 1 changes nothing; the pass is for the inf/nan check.
    ZT_RETURN_IF_ERROR(kernels::ScaleAndCheckFinite(
        ctx, opt_.dtype, const_cast<void*>(norm_refs_[0].data),
        opt_range_.size(), 1.0f, flag));
    ZT_RETURN_IF_ERROR(
        kernels::SquaredNorm(ctx, opt_.dtype, norm_refs_, sqnorm));
  }
  char host[16];
  ZT_RETURN_IF_ERROR(
      CopyBytes(host, Device::Cpu(), flags_.data(), dev, 16, ctx_.stream));
  ZT_RETURN_IF_ERROR(SynchronizeStream(dev, ctx_.stream));
  int32_t found;
  float local_sq;
  std::memcpy(&found, host, 4);
  std::memcpy(&local_sq, host + 8, 4);
  float agreed[2] = {static_cast<float>(found), local_sq};
  if (comm_->world_size() > 1 && opt_.stage > 0) {
    // One fp32 all-reduce agrees on both the overflow flag and the norm.
    ZT_RETURN_IF_ERROR(AllReduceHostFloats(comm_, alloc_, opt_.stream, agreed,
                                           2, opt_.timeout));
  }
  StepOutcome out;
  out.grad_norm = std::sqrt(static_cast<double>(agreed[1])) / loss_scale;
  out.skipped = agreed[0] > 0 || !std::isfinite(out.grad_norm);
  if (out.skipped) return out;
  const double coef =
      clip > 0 && out.grad_norm > clip ? clip / (out.grad_norm + 1e-6) : 1.0;
  hyper.grad_scale = static_cast<float>(coef / loss_scale);
  ZT_RETURN_IF_ERROR(
      kernels::AdamWUpdate(ctx_, opt_.dtype, opt_.dtype, hyper, adam_tensors_));
  if (opt_.stage == 1 || opt_.stage == 2) {
    ZT_RETURN_IF_ERROR(SynchronizeStream(dev, ctx_.stream));
    std::vector<std::unique_ptr<WorkHandle>> handles;
    for (const Range& b : MakeBuckets({0, layout_.numel()},
                                      opt_.allgather_bucket_elements, {})) {
      const Range mine = Intersect(b, shard_);
      AllGatherVOptions o;
      o.send = param_send_.as<char>() + (mine.begin - shard_.begin) * es();
      o.recv = params_.as<char>() + b.begin * es();
      o.counts = part_.Counts(b);
      o.dtype = opt_.dtype;
      o.stream = opt_.stream;
      ZT_ASSIGN_OR_RETURN(auto h, comm_->AllGatherV(o));
      handles.push_back(std::move(h));
    }
    ZT_RETURN_IF_ERROR(WaitAll(handles));
  }
  return out;
}

absl::Status ZeroEngine::InjectNonFiniteGradient() {
  if (opt_range_.size() == 0) return absl::OkStatus();
  const float inf = INFINITY;
  uint16_t bits16 = opt_.dtype == DType::kFloat16 ? FloatToHalfBits(inf)
                                                  : FloatToBFloat16Bits(inf);
  const void* src =
      opt_.dtype == DType::kFloat32 ? static_cast<const void*>(&inf) : &bits16;
  ZT_RETURN_IF_ERROR(CopyBytes(const_cast<void*>(norm_refs_[0].data),
                               alloc_->device(), src, Device::Cpu(), es(),
                               ctx_.stream));
  return SynchronizeStream(alloc_->device(), ctx_.stream);
}

}  // namespace zt
