#ifndef ZEROTRAIN_CHECKPOINT_CHECKPOINTER_H_
#define ZEROTRAIN_CHECKPOINT_CHECKPOINTER_H_

// Saving and loading sharded checkpoints from a running ZeRO job.
//
// Save (collective; every rank calls the same methods at the same steps):
//   1. rank 0 creates <dir>/step_<N>.tmp-w<world>/ (removing a leftover of
//      a crashed save of the same name); all ranks agree it exists;
//   2. each rank copies its slice of master weights and moments to host
//      memory and writes shard_<rank>.bin plus a small record of its ranges,
//      checksums and data position, each fsynced -- on a background thread
//      when async, so training goes on meanwhile;
//   3. once every rank reports its write finished and OK (Poll, or the next
//      Save/Finish), rank 0 commits: merges the records into manifest.pb,
//      fsyncs it and the directory, renames the directory to step_<N>,
//      fsyncs the root, then replaces `latest` (latest.tmp, fsync, rename,
//      fsync) and only then deletes checkpoints beyond the newest `keep`.
// A crash at any point leaves `latest` naming a complete checkpoint (or
// absent if none was ever committed). A failed write or commit is returned
// by the next Save() or by Finish(), on every rank.
//
// Each rank saves the slice [r*S, (r+1)*S) of the flat space (the ZeRO
// partition of the saving world), also at stage 0 where every rank holds
// everything: the write is spread over all ranks either way.
//
// Load (collective): each rank reads the global range its engine owns
// (ZeroEngine::opt_range()) from whichever shard files overlap it, so any
// world size and stage can load any checkpoint.

#include <atomic>
#include <cstdint>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "checkpoint/format.h"
#include "checkpoint/manifest.pb.h"
#include "core/device.h"
#include "trainer/config.pb.h"
#include "trainer/data.h"
#include "optim/loss_scaler.h"
#include "trainer/param_layout.h"
#include "zero/communicator.h"
#include "zero/engine.h"
#include "zero/partition.h"

namespace zt {
namespace ckpt {

// Everything besides the tensors that a bit-exact resume needs.
struct TrainingState {
  int64_t step = 0;        // optimizer steps done (the LR schedule position)
  int64_t adam_steps = 0;  // AdamW updates applied (bias correction)
  zt::LossScalerState loss_scaler;
  zt::DataPosition data;  // this rank's training data position
};

// This rank's fp32 optimizer state where it lives (ZeroEngine: opt_range(),
// master(), moment1(), moment2() on the engine's device).
struct OptimizerStateView {
  Range range;
  const float* master = nullptr;
  const float* exp_avg = nullptr;
  const float* exp_avg_sq = nullptr;
  Device device;
};

OptimizerStateView ViewOf(const ZeroEngine& engine);

struct CheckpointWriterOptions {
  std::string dir;  // checkpoint root
  int keep = 3;     // newest committed checkpoints kept; 0 keeps all
  // Write on a background thread; Save() blocks only for the copy to host.
  bool async = true;
  // For the agreement collectives.
  absl::Duration timeout = absl::Minutes(5);
  // Rank 0 prints one line per committed checkpoint.
  bool verbose = true;
};

struct SaveStats {
  int64_t step = -1;
  int64_t bytes = 0;              // this rank's shard file
  double blocked_seconds = 0;     // time Save() kept the caller
  double write_seconds = 0;       // shard file write incl. checksums, fsync
  double commit_seconds = 0;      // rank 0: manifest, renames, fsyncs
};

class CheckpointWriter {
 public:
  // `config` is recorded in every manifest; `allocator` and `stream` (the
  // compute stream, as in EngineOptions) stage the small agreement
  // collectives on GPU communicators.
  static absl::StatusOr<std::unique_ptr<CheckpointWriter>> Create(
      const CheckpointWriterOptions& options, const TrainConfig& config,
      const ParamLayout& layout, Communicator* comm, Allocator* allocator,
      Stream* stream);
  // Waits for a write in flight; does not commit it.
  ~CheckpointWriter();

  // Collective. Completes the previous save (returning its error, if any),
  // then starts saving `state` as step `training.step`.
  absl::Status Save(const OptimizerStateView& state,
                    const TrainingState& training);
  // Collective and cheap: commits a save whose writes have finished on
  // every rank. Call once per training step.
  absl::Status Poll();
  // Collective: waits for the save in flight and commits it. Returns the
  // first error of any save since the last Save()/Finish().
  absl::Status Finish();

  // Stats of the most recent save (bytes and times are this rank's).
  SaveStats last_stats() const;
  // The newest step this writer committed (on every rank), if any.
  std::optional<int64_t> last_committed_step() const { return committed_; }

 private:
  enum class Phase { kIdle, kWriting, kCommitting };
  // What the commit needs to know about a save.
  struct SaveJob {
    int64_t step = 0;
    std::string tmp_dir;
    int64_t unix_time = 0;
    TrainingState training;
  };
  struct Pending {
    SaveJob job;
    // The shard write (phase kWriting), then rank 0's commit (kCommitting).
    std::future<absl::Status> work;
  };

  CheckpointWriter(const CheckpointWriterOptions& options,
                   const TrainConfig& config, const ParamLayout& layout,
                   Communicator* comm, Allocator* allocator,
                   Stream* stream);

  // Every rank's code (0 = OK), gathered through one all-reduce.
  absl::StatusOr<std::vector<int>> GatherCodes(int mine);
  // `mine` if it failed, else the first failed rank's code, naming it.
  absl::Status Agree(const absl::Status& mine, absl::string_view what);
  absl::Status WriteShard(int64_t step, const std::string& tmp_dir,
                          ShardData data, DataPosition position);
  absl::Status Commit(const SaveJob& p);
  void CollectGarbage(int64_t newest);
  // All ranks: the writes are done and agreed; start (or run) the commit.
  absl::Status StartCommit();

  CheckpointWriterOptions opt_;
  Manifest base_;  // config, layout, world size, stage
  Communicator* comm_;
  Allocator* allocator_;
  Stream* stream_;  // may be nullptr on the CPU
  Range save_range_;
  std::unique_ptr<float[]> host_[3];
  Phase phase_ = Phase::kIdle;
  Pending pending_;
  absl::Status deferred_;  // a failed save, reported by the next Save/Finish
  SaveStats stats_;
  // Written by the background thread.
  std::atomic<double> write_seconds_{0};
  std::atomic<double> commit_seconds_{0};
  std::optional<int64_t> committed_;
};

struct LoadedCheckpoint {
  std::string dir;  // the step directory read
  TrainingState training;
  int saved_world_size = 0;
  int saved_stage = 0;
};

// Collective. Resolves `path` (a step directory, or a root's `latest`),
// checks the model matches `layout`, reads this rank's opt_range() of
// master weights and moments into `engine` verifying every checksum, and
// recomputes the working parameters. On any rank's error every rank
// returns an error (its own, or one naming the failing rank); the engine
// may then hold a partial state. Device work goes on the engine's stream.
absl::StatusOr<LoadedCheckpoint> LoadCheckpoint(const std::string& path,
                                                const ParamLayout& layout,
                                                ZeroEngine* engine);

}  // namespace ckpt
}  // namespace zt

#endif  // ZEROTRAIN_CHECKPOINT_CHECKPOINTER_H_
