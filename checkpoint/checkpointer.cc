#include "checkpoint/checkpointer.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/match.h"
#include "checkpoint/file_io.h"
#include "checkpoint/format.h"
#include "glog/logging.h"
#include "core/status_macros.h"

namespace zt {
namespace ckpt {
namespace {

using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

std::string RecordFileName(int rank) {
  return absl::StrFormat("shard_%05d.rank.pb", rank);
}

// Codes exchanged by the agreement all-reduce: one float per rank, summed,
// so each slot carries exactly its rank's value (small integers are exact).
constexpr int kRunning = 0;
constexpr int kDone = 1;
int FailedCode(const absl::Status& s) { return 2 + static_cast<int>(s.code()); }

// Every rank's code through one all-reduce (nothing moves at world size 1).
absl::StatusOr<std::vector<int>> GatherCodesOn(Communicator* comm,
                                               Allocator* allocator,
                                               Stream* stream,
                                               absl::Duration timeout,
                                               int mine) {
  const int world = comm->world_size();
  std::vector<float> v(world, 0.0f);
  v[comm->rank()] = static_cast<float>(mine);
  ZT_RETURN_IF_ERROR(
      AllReduceHostFloats(comm, allocator, stream, v.data(), world, timeout));
  std::vector<int> codes(world);
  for (int r = 0; r < world; ++r) codes[r] = static_cast<int>(v[r]);
  return codes;
}

// `mine` if it failed; else the first failed rank's error, naming it.
absl::Status StatusFromCodes(const std::vector<int>& codes, int rank,
                             const absl::Status& mine, absl::string_view what) {
  if (!mine.ok()) return mine;
  for (size_t r = 0; r < codes.size(); ++r) {
    if (codes[r] >= 2) {
      return absl::Status(
          static_cast<absl::StatusCode>(codes[r] - 2),
          absl::StrCat(what, " failed on rank ", r,
                       " (that rank's log has the details)"));
    }
  }
  return absl::OkStatus();
}

absl::Status AgreeOn(Communicator* comm, Allocator* allocator,
                     Stream* stream, absl::Duration timeout,
                     const absl::Status& mine, absl::string_view what) {
  ZT_ASSIGN_OR_RETURN(
      std::vector<int> codes,
      GatherCodesOn(comm, allocator, stream, timeout,
                    mine.ok() ? kDone : FailedCode(mine)));
  return StatusFromCodes(codes, comm->rank(), mine, what);
}

}  // namespace

OptimizerStateView ViewOf(const ZeroEngine& engine) {
  OptimizerStateView v;
  v.range = engine.opt_range();
  v.master = engine.master();
  v.exp_avg = engine.moment1();
  v.exp_avg_sq = engine.moment2();
  v.device = engine.allocator()->device();
  return v;
}

CheckpointWriter::CheckpointWriter(const CheckpointWriterOptions& options,
                                   const TrainConfig& config,
                                   const ParamLayout& layout,
                                   Communicator* comm, Allocator* allocator,
                                   Stream* stream)
    : opt_(options), comm_(comm), allocator_(allocator), stream_(stream) {
  base_.set_format_version(kFormatVersion);
  *base_.mutable_config() = config;
  SetLayout(layout, &base_);
  base_.set_world_size(comm->world_size());
  base_.set_stage(static_cast<int>(config.zero().stage()));
  base_.set_rng_seed(config.seed());
  const Partition part(layout.numel(), comm->world_size());
  const Range shard = part.Shard(comm->rank());
  save_range_ = {std::min(shard.begin, layout.numel()),
                 std::min(shard.end, layout.numel())};
}

CheckpointWriter::~CheckpointWriter() {
  if (pending_.work.valid()) pending_.work.wait();
}

absl::StatusOr<std::unique_ptr<CheckpointWriter>> CheckpointWriter::Create(
    const CheckpointWriterOptions& options, const TrainConfig& config,
    const ParamLayout& layout, Communicator* comm, Allocator* allocator,
    Stream* stream) {
  if (options.dir.empty()) {
    return absl::InvalidArgumentError("checkpoint.dir is empty");
  }
  if (options.keep < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "checkpoint.keep = ", options.keep, " must be >= 0 (0 keeps all)"));
  }
  std::unique_ptr<CheckpointWriter> w(new CheckpointWriter(
      options, config, layout, comm, allocator, stream));
  if (options.async) {
    // The snapshot buffers, touched now: first-touch page faults on ~12
    // bytes per parameter would otherwise stall the first Save().
    const int64_t n = std::max<int64_t>(w->save_range_.size(), 1);
    for (auto& h : w->host_) {
      h.reset(new float[n]);
      std::memset(h.get(), 0, static_cast<size_t>(n) * 4);
    }
  }
  return w;
}

absl::StatusOr<std::vector<int>> CheckpointWriter::GatherCodes(int mine) {
  return GatherCodesOn(comm_, allocator_, stream_, opt_.timeout, mine);
}

absl::Status CheckpointWriter::Agree(const absl::Status& mine,
                                     absl::string_view what) {
  return AgreeOn(comm_, allocator_, stream_, opt_.timeout, mine, what);
}

absl::Status CheckpointWriter::WriteShard(int64_t step,
                                          const std::string& tmp_dir,
                                          ShardData data,
                                          DataPosition position) {
  const auto start = Clock::now();
  RankRecord record;
  ZT_ASSIGN_OR_RETURN(*record.mutable_shard(),
                      WriteShardFile(tmp_dir, base_, data));
  DataLoaderPosition* d = record.mutable_data();
  d->set_rank(comm_->rank());
  d->set_shard_index(position.shard_index);
  d->set_offset(position.offset);
  ZT_RETURN_IF_ERROR(WriteFileDurably(
      JoinPath(tmp_dir, RecordFileName(comm_->rank())),
      record.SerializeAsString()));
  write_seconds_ = SecondsSince(start);
  return absl::OkStatus();
}

SaveStats CheckpointWriter::last_stats() const {
  SaveStats s = stats_;
  s.write_seconds = write_seconds_;
  s.commit_seconds = commit_seconds_;
  return s;
}

absl::Status CheckpointWriter::Save(const OptimizerStateView& state,
                                    const TrainingState& training) {
  const auto start = Clock::now();
  ZT_RETURN_IF_ERROR(Finish());
  if (state.range.begin > save_range_.begin ||
      state.range.end < save_range_.end) {
    return absl::FailedPreconditionError(absl::StrCat(
        "rank ", comm_->rank(), " holds optimizer state [", state.range.begin,
        ", ", state.range.end, ") but must save [", save_range_.begin, ", ",
        save_range_.end, ")"));
  }
  FaultHookBeginSave();
  const int64_t step = training.step;
  const std::string tmp_dir =
      JoinPath(opt_.dir, absl::StrCat(StepDirName(step), ".tmp-w",
                                      comm_->world_size()));
  absl::Status prepared;
  if (comm_->rank() == 0) {
    prepared = [&]() -> absl::Status {
      ZT_RETURN_IF_ERROR(MakeDirectories(opt_.dir));
      // A leftover of a save of the same step that crashed.
      ZT_RETURN_IF_ERROR(RemoveRecursively(tmp_dir));
      return MakeDirectory(tmp_dir);
    }();
  }
  ZT_RETURN_IF_ERROR(Agree(prepared, "creating the checkpoint directory"));

  stats_ = SaveStats();
  stats_.step = step;
  const int64_t n = save_range_.size();
  stats_.bytes = 3 * n * 4;
  ShardData data;
  data.rank = comm_->rank();
  data.range = save_range_;
  const float* src[3] = {state.master, state.exp_avg, state.exp_avg_sq};
  const int64_t skip = save_range_.begin - state.range.begin;
  if (!opt_.async && state.device.is_cpu()) {
    // Nothing changes the state while a synchronous save writes it.
    data.master = src[0] + skip;
    data.exp_avg = src[1] + skip;
    data.exp_avg_sq = src[2] + skip;
  } else {
    for (int i = 0; i < 3; ++i) {
      if (!host_[i]) host_[i].reset(new float[std::max<int64_t>(n, 1)]);
      ZT_RETURN_IF_ERROR(CopyBytes(host_[i].get(), Device::Cpu(), src[i] + skip,
                                   state.device, static_cast<size_t>(n) * 4,
                                   stream_));
    }
    ZT_RETURN_IF_ERROR(SynchronizeStream(state.device, stream_));
    data.master = host_[0].get();
    data.exp_avg = host_[1].get();
    data.exp_avg_sq = host_[2].get();
  }
  pending_ = Pending();
  pending_.job.step = step;
  pending_.job.tmp_dir = tmp_dir;
  pending_.job.unix_time = static_cast<int64_t>(std::time(nullptr));
  pending_.job.training = training;
  write_seconds_ = 0;
  commit_seconds_ = 0;
  pending_.work = std::async(
      opt_.async ? std::launch::async : std::launch::deferred,
      [this, step, tmp_dir, data, pos = training.data] {
        return WriteShard(step, tmp_dir, data, pos);
      });
  phase_ = Phase::kWriting;
  if (!opt_.async) {
    const absl::Status s = Finish();
    stats_.blocked_seconds = SecondsSince(start);
    return s;
  }
  stats_.blocked_seconds = SecondsSince(start);
  return absl::OkStatus();
}

absl::Status CheckpointWriter::StartCommit() {
  phase_ = Phase::kCommitting;
  if (comm_->rank() != 0) {
    pending_.work = std::future<absl::Status>();
    return absl::OkStatus();
  }
  pending_.work =
      std::async(opt_.async ? std::launch::async : std::launch::deferred,
                 [this, job = pending_.job] { return Commit(job); });
  return absl::OkStatus();
}

absl::Status CheckpointWriter::Poll() {
  if (phase_ != Phase::kWriting) return absl::OkStatus();
  const bool done = pending_.work.wait_for(std::chrono::seconds(0)) ==
                    std::future_status::ready;
  absl::Status mine;
  if (done) mine = pending_.work.get();
  ZT_ASSIGN_OR_RETURN(
      std::vector<int> codes,
      GatherCodes(!done ? kRunning : mine.ok() ? kDone : FailedCode(mine)));
  if (std::count(codes.begin(), codes.end(), kRunning) > 0) {
    if (done) {
      // Keep the result for the next Poll/Finish.
      std::promise<absl::Status> p;
      p.set_value(mine);
      pending_.work = p.get_future();
    }
    return absl::OkStatus();
  }
  const absl::Status agreed =
      StatusFromCodes(codes, comm_->rank(), mine,
                      absl::StrCat("writing checkpoint step ", pending_.job.step));
  if (!agreed.ok()) {
    LOG(ERROR) << "checkpoint step " << pending_.job.step
               << " failed: " << agreed;
    if (deferred_.ok()) deferred_ = agreed;
    phase_ = Phase::kIdle;
    return absl::OkStatus();
  }
  return StartCommit();
}

absl::Status CheckpointWriter::Finish() {
  if (phase_ == Phase::kWriting) {
    const absl::Status mine = pending_.work.get();
    const absl::Status agreed = Agree(
        mine, absl::StrCat("writing checkpoint step ", pending_.job.step));
    if (!agreed.ok()) {
      if (deferred_.ok()) deferred_ = agreed;
      phase_ = Phase::kIdle;
    } else {
      ZT_RETURN_IF_ERROR(StartCommit());
    }
  }
  if (phase_ == Phase::kCommitting) {
    const absl::Status mine =
        pending_.work.valid() ? pending_.work.get() : absl::OkStatus();
    const absl::Status agreed = Agree(
        mine, absl::StrCat("committing checkpoint step ", pending_.job.step));
    if (!agreed.ok()) {
      if (deferred_.ok()) deferred_ = agreed;
    } else {
      committed_ = pending_.job.step;
    }
    phase_ = Phase::kIdle;
  }
  absl::Status s = deferred_;
  deferred_ = absl::OkStatus();
  return s;
}

absl::Status CheckpointWriter::Commit(const SaveJob& p) {
  const auto start = Clock::now();
  Manifest m = base_;
  m.set_step(p.step);
  m.set_adam_steps(p.training.adam_steps);
  m.set_unix_time(p.unix_time);
  LossScalerRecord* ls = m.mutable_loss_scaler();
  ls->set_scale(p.training.loss_scaler.scale);
  ls->set_iteration(p.training.loss_scaler.iteration);
  ls->set_last_overflow_iteration(p.training.loss_scaler.last_overflow_iteration);
  ls->set_hysteresis_left(p.training.loss_scaler.hysteresis_left);
  const int world = comm_->world_size();
  for (int r = 0; r < world; ++r) {
    const std::string path = JoinPath(p.tmp_dir, RecordFileName(r));
    ZT_ASSIGN_OR_RETURN(std::string bytes, ReadFileToString(path));
    RankRecord rec;
    if (!rec.ParseFromString(bytes) || rec.shard().rank() != r) {
      return absl::DataLossError(
          absl::StrCat(path, ": unreadable record of rank ", r));
    }
    *m.add_shards() = rec.shard();
    *m.add_data() = rec.data();
  }
  for (int r = 0; r < world; ++r) {
    ZT_RETURN_IF_ERROR(Unlink(JoinPath(p.tmp_dir, RecordFileName(r))));
  }
  ZT_RETURN_IF_ERROR(WriteManifest(p.tmp_dir, m));
  ZT_RETURN_IF_ERROR(SyncDirectory(p.tmp_dir));
  const std::string name = StepDirName(p.step);
  const std::string final_dir = JoinPath(opt_.dir, name);
  bool exchanged = false;
  ZT_RETURN_IF_ERROR(RenameDirectoryReplacing(p.tmp_dir, final_dir, &exchanged));
  ZT_RETURN_IF_ERROR(SyncDirectory(opt_.dir));
  const std::string latest = JoinPath(opt_.dir, kLatestName);
  const std::string latest_tmp = latest + ".tmp";
  ZT_RETURN_IF_ERROR(WriteFileDurably(latest_tmp, name + "\n"));
  ZT_RETURN_IF_ERROR(Rename(latest_tmp, latest));
  ZT_RETURN_IF_ERROR(SyncDirectory(opt_.dir));
  // `latest` names the new checkpoint: only now may older ones go.
  if (exchanged) ZT_RETURN_IF_ERROR(RemoveRecursively(p.tmp_dir));
  CollectGarbage(p.step);
  commit_seconds_ = SecondsSince(start);
  if (opt_.verbose) {
    std::printf("checkpoint: saved step %lld to %s (%.1f MiB in %d file(s))\n",
                static_cast<long long>(p.step), final_dir.c_str(),
                3.0 * m.numel() * 4 / (1 << 20), world);
    std::fflush(stdout);
  }
  return absl::OkStatus();
}

void CheckpointWriter::CollectGarbage(int64_t newest) {
  auto names = ListDirectory(opt_.dir);
  if (!names.ok()) {
    LOG(WARNING) << "checkpoint cleanup: " << names.status();
    return;
  }
  std::vector<int64_t> steps;
  for (const std::string& n : *names) {
    const std::string path = JoinPath(opt_.dir, n);
    if (!IsDirectory(path)) continue;
    if (auto s = ParseStepDirName(n)) {
      steps.push_back(*s);
    } else if (absl::StrContains(n, ".tmp-") ||
               absl::EndsWith(n, ".deleting")) {
      // Leftovers of crashed saves and deletions.
      if (auto st = RemoveRecursively(path); !st.ok()) {
        LOG(WARNING) << "checkpoint cleanup: " << st;
      }
    }
  }
  if (opt_.keep <= 0) return;
  std::sort(steps.rbegin(), steps.rend());
  for (size_t i = static_cast<size_t>(opt_.keep); i < steps.size(); ++i) {
    if (steps[i] == newest) continue;
    // Renamed first, so a crash mid-delete never leaves a partial
    // directory under a step_<N> name.
    const std::string path = JoinPath(opt_.dir, StepDirName(steps[i]));
    const std::string doomed = path + ".deleting";
    absl::Status st = Rename(path, doomed);
    if (st.ok()) st = RemoveRecursively(doomed);
    if (!st.ok()) LOG(WARNING) << "checkpoint cleanup: " << st;
  }
}

absl::StatusOr<LoadedCheckpoint> LoadCheckpoint(const std::string& path,
                                                const ParamLayout& layout,
                                                ZeroEngine* engine) {
  Stream* const stream = engine->options().stream;
  Communicator* comm = engine->comm();
  const Range r = engine->opt_range();
  const int64_t n = r.size();
  LoadedCheckpoint out;
  std::vector<float> host[3];
  const absl::Status mine = [&]() -> absl::Status {
    ZT_ASSIGN_OR_RETURN(out.dir, ResolveCheckpointDir(path));
    ZT_ASSIGN_OR_RETURN(CheckpointReader reader,
                        CheckpointReader::Open(out.dir));
    const Manifest& m = reader.manifest();
    const std::string manifest_path = JoinPath(out.dir, kManifestName);
    ZT_RETURN_IF_ERROR(CheckLayoutMatches(m, layout, manifest_path));
    if (m.data_size() == 0) {
      return absl::DataLossError(
          absl::StrCat(manifest_path, ": no data loader position"));
    }
    for (const DataLoaderPosition& d : m.data()) {
      if (d.shard_index() != m.data(0).shard_index() ||
          d.offset() != m.data(0).offset()) {
        return absl::DataLossError(absl::StrCat(
            manifest_path, ": the saving ranks' data positions differ (rank ",
            d.rank(), " vs rank ", m.data(0).rank(), ")"));
      }
    }
    for (auto& h : host) h.resize(n);
    ZT_RETURN_IF_ERROR(
        reader.Read(r, host[0].data(), host[1].data(), host[2].data()));
    TrainingState& t = out.training;
    t.step = m.step();
    t.adam_steps = m.adam_steps();
    t.loss_scaler.scale = m.loss_scaler().scale();
    t.loss_scaler.iteration = m.loss_scaler().iteration();
    t.loss_scaler.last_overflow_iteration =
        m.loss_scaler().last_overflow_iteration();
    t.loss_scaler.hysteresis_left = m.loss_scaler().hysteresis_left();
    t.data.shard_index = m.data(0).shard_index();
    t.data.offset = m.data(0).offset();
    out.saved_world_size = m.world_size();
    out.saved_stage = m.stage();
    return absl::OkStatus();
  }();
  ZT_RETURN_IF_ERROR(AgreeOn(comm, engine->allocator(), stream,
                             engine->options().timeout, mine,
                             absl::StrCat("loading checkpoint ", path)));
  const Device dev = engine->allocator()->device();
  float* dst[3] = {engine->master(), engine->moment1(), engine->moment2()};
  for (int i = 0; i < 3; ++i) {
    ZT_RETURN_IF_ERROR(CopyBytes(dst[i], dev, host[i].data(), Device::Cpu(),
                                 static_cast<size_t>(n) * 4, stream));
  }
  ZT_RETURN_IF_ERROR(SynchronizeStream(dev, stream));
  ZT_RETURN_IF_ERROR(engine->RefreshParamsFromMaster());
  return out;
}

}  // namespace ckpt
}  // namespace zt
