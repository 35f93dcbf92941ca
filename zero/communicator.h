#ifndef ZEROTRAIN_ZERO_COMMUNICATOR_H_
#define ZEROTRAIN_ZERO_COMMUNICATOR_H_

// The collectives ZeRO needs (all-reduce, reduce-scatter, all-gather, their
// variable-count forms, broadcast, barrier) behind one small interface, with asynchronous handles
// whose Wait() has a deadline: a dead or stuck peer becomes an error naming
// the operation and the rank instead of a hang.
//
// Contract shared by every backend:
// - Every rank issues the same collectives in the same order with matching
//   counts, dtypes and roots (as in MPI and NCCL). Nothing checks this across
//   ranks; a mismatch shows up as a timeout or wrong data.
// - Buffers live on the communicator's device(). A call only starts the
//   collective; the buffers (and the options' stream) must stay alive and
//   untouched (the send buffer unmodified, the receive buffer unread) until
//   the handle's Wait() returns OK. After that the result is visible to the
//   host and to work issued on the options' stream.
// - `stream` orders a GPU collective after the work already issued on that
//   stream (the producer of the send buffer). Host backends ignore it unless
//   they stage device buffers through host memory.
// - Calls on one communicator are not thread-safe with respect to each
//   other; use one thread per communicator (or a lock).
//
// Traffic accounting. Each communicator counts, per collective type, the
// calls and the *logical* volume a rank sends, in elements of the collective
// (and bytes = elements * dtype size), following the ZeRO paper's
// convention rather than a particular algorithm's wire volume:
//   all-reduce of n elements         -> 2n   (a reduce-scatter plus an all-gather)
//   reduce-scatter of N*n into n     -> N*n  (the full input buffer)
//   all-gather of n into N*n         -> N*n  (the full output buffer)
//   broadcast of n elements          -> n
//   barrier                          -> 0
// The variable-count forms are counted under reduce-scatter and all-gather
// with the full buffer, sum(counts), which is N*n when the counts are equal:
//   reduce-scatter-v of sum(counts)  -> sum(counts)
//   all-gather-v into sum(counts)    -> sum(counts)
// so stage 0-2 ZeRO steps count 2 Psi per rank and stage 3 counts 3 Psi. The
// same numbers are counted at every world size, including 1, where nothing
// travels. A bandwidth-optimal ring moves (N-1)/N of these volumes over each
// rank's link.

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/device.h"
#include "core/dtype.h"

namespace zt {

enum class Collective : int {
  kAllReduce = 0,
  kReduceScatter,
  kAllGather,
  kBroadcast,
  kBarrier,
};
inline constexpr int kNumCollectives = 5;

// "allreduce", "reduce_scatter", "allgather", "broadcast", "barrier".
absl::string_view CollectiveName(Collective c);

enum class ReduceOp : int {
  kSum = 0,
  // The sum divided by world_size (one more rounding than kSum).
  kAverage = 1,
};

// A generous default for callers without a configured timeout.
inline constexpr absl::Duration kDefaultCollectiveTimeout = absl::Minutes(5);

// In place when send == recv.
struct AllReduceOptions {
  const void* send = nullptr;  // `count` elements.
  void* recv = nullptr;        // `count` elements.
  int64_t count = 0;
  DType dtype = DType::kFloat32;
  ReduceOp op = ReduceOp::kSum;
  Stream* stream = nullptr;
};

// Rank r receives the reduction of chunk r (elements [r*count, (r+1)*count))
// of every rank's input. The chunks are equal: padding the input to a
// multiple of world_size is the caller's job. The buffers must not overlap.
struct ReduceScatterOptions {
  const void* send = nullptr;  // world_size * `count` elements.
  void* recv = nullptr;        // `count` elements.
  int64_t count = 0;           // Elements per rank (of the output).
  DType dtype = DType::kFloat32;
  ReduceOp op = ReduceOp::kSum;
  Stream* stream = nullptr;
};

// recv = concat(send of rank 0, ..., send of rank N-1). In place when
// send == recv + rank * count (each rank's shard already sits in the output);
// any other overlap is an error.
struct AllGatherOptions {
  const void* send = nullptr;  // `count` elements.
  void* recv = nullptr;        // world_size * `count` elements.
  int64_t count = 0;           // Elements per rank (of the input).
  DType dtype = DType::kFloat32;
  Stream* stream = nullptr;
};

// The variable-count forms, for buffers that meet contiguous per-rank shards
// of unequal size (ZeRO's flat parameter space cut into rank-ordered shards:
// a bucket meets them in consecutive pieces, often empty for most ranks).
// `counts` has one entry per rank, each >= 0, and the same on every rank;
// rank r's piece of the full buffer starts at offset(r) = sum(counts[0..r)).

// Rank r receives the reduction of its piece (elements [offset(r),
// offset(r) + counts[r])) of every rank's input. The buffers must not
// overlap.
struct ReduceScatterVOptions {
  const void* send = nullptr;   // sum(counts) elements.
  void* recv = nullptr;         // counts[rank] elements.
  std::vector<int64_t> counts;  // Elements of each rank's piece; zeros allowed.
  DType dtype = DType::kFloat32;
  ReduceOp op = ReduceOp::kSum;
  Stream* stream = nullptr;
};

// recv = concat(send of rank 0, ..., send of rank N-1), piece r at offset(r).
// In place when send == recv + offset(rank) (this rank's piece already sits
// in the output); any other overlap is an error.
struct AllGatherVOptions {
  const void* send = nullptr;   // counts[rank] elements.
  void* recv = nullptr;         // sum(counts) elements.
  std::vector<int64_t> counts;  // Elements of each rank's piece; zeros allowed.
  DType dtype = DType::kFloat32;
  Stream* stream = nullptr;
};

// Copies `root`'s buffer into everyone's. Moves bits only: any dtype of the
// right byte count works.
struct BroadcastOptions {
  void* buffer = nullptr;  // `count` elements.
  int64_t count = 0;
  DType dtype = DType::kFloat32;
  int root = 0;
  Stream* stream = nullptr;
};

struct BarrierOptions {
  Stream* stream = nullptr;
};

// Per-rank traffic counters; see "Traffic accounting" above.
struct TrafficStats {
  struct Counts {
    int64_t calls = 0;
    int64_t elements = 0;
    int64_t bytes = 0;
  };
  std::array<Counts, kNumCollectives> by_collective{};

  const Counts& operator[](Collective c) const { return by_collective[static_cast<int>(c)]; }
  int64_t total_elements() const;
  int64_t total_bytes() const;
  // "allreduce: 2 calls, 14 elements, 56 bytes; ..." (collectives never used
  // are left out).
  std::string ToString() const;
};

// The logical element count of one collective (the table above).
int64_t LogicalElements(Collective c, int64_t count, int world_size);

// One started collective.
class WorkHandle {
 public:
  virtual ~WorkHandle() = default;

  // Blocks until the collective is complete or `timeout` passes.
  // kDeadlineExceeded: not complete in time (a dead or stuck peer, or a
  // mismatched call order); the message names the operation and the rank.
  // kUnavailable: the transport reported a failure. Backends state whether
  // Wait may be called again after a timeout. Calling Wait after it returned
  // OK returns OK again at once.
  virtual absl::Status Wait(absl::Duration timeout) = 0;

  // Non-blocking: advances the collective (host backends progress only
  // inside library calls, so call this between pieces of compute to overlap
  // communication with it) and tells whether it is complete. A true here
  // means Wait() will return at once.
  virtual absl::StatusOr<bool> Poll() = 0;

  // Makes work issued on `stream` afterwards see the result. The NCCL
  // backend only enqueues an event wait (no host block, no timeout check);
  // host backends simply Wait(timeout).
  virtual absl::Status OrderBefore(Stream* stream, absl::Duration timeout) { return Wait(timeout); }
};

// A handle for work that finished when it was started.
class CompletedWork final : public WorkHandle {
 public:
  absl::Status Wait(absl::Duration) override { return absl::OkStatus(); }
  absl::StatusOr<bool> Poll() override { return true; }
};

// Base of every backend: checks arguments, counts traffic, and forwards to
// the backend's Do* methods. A backend that leaves a Do* method alone
// answers absl::UnimplementedError("<backend> does not support <op>").
class Communicator {
 public:
  virtual ~Communicator() = default;
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  int rank() const { return rank_; }
  int world_size() const { return world_size_; }
  Device device() const { return device_; }
  // "local", "mpi", "mpi-staged", "nccl".
  absl::string_view backend_name() const { return backend_name_; }

  absl::StatusOr<std::unique_ptr<WorkHandle>> AllReduce(const AllReduceOptions& options);
  absl::StatusOr<std::unique_ptr<WorkHandle>> ReduceScatter(const ReduceScatterOptions& options);
  absl::StatusOr<std::unique_ptr<WorkHandle>> AllGather(const AllGatherOptions& options);
  absl::StatusOr<std::unique_ptr<WorkHandle>> Broadcast(const BroadcastOptions& options);
  absl::StatusOr<std::unique_ptr<WorkHandle>> Barrier(const BarrierOptions& options = {});
  // All-zero counts complete at once without reaching the backend (every
  // rank sees the same counts, so every rank skips it).
  absl::StatusOr<std::unique_ptr<WorkHandle>> ReduceScatterV(const ReduceScatterVOptions& options);
  absl::StatusOr<std::unique_ptr<WorkHandle>> AllGatherV(const AllGatherVOptions& options);

  // Counted when a collective starts successfully.
  TrafficStats traffic() const;
  void ResetTraffic();

  // "allreduce (7 x bf16) on rank 1 of 3 (mpi)": the prefix of every error a
  // backend reports about one collective.
  std::string Describe(Collective c, int64_t count, DType dtype) const;
  // "reduce_scatter_v (12 x fp32) on rank 1 of 4 (mpi)" for the variable-count
  // form of `c` (kReduceScatter or kAllGather); `total` is sum(counts).
  std::string DescribeV(Collective c, int64_t total, DType dtype) const;

 protected:
  Communicator(std::string backend_name, int rank, int world_size, Device device);

  absl::Status Unsupported(Collective c) const;
  absl::Status Unsupported(absl::string_view op_name) const;

  // Called with validated options.
  virtual absl::StatusOr<std::unique_ptr<WorkHandle>> DoAllReduce(const AllReduceOptions& options);
  virtual absl::StatusOr<std::unique_ptr<WorkHandle>> DoReduceScatter(
      const ReduceScatterOptions& options);
  virtual absl::StatusOr<std::unique_ptr<WorkHandle>> DoAllGather(const AllGatherOptions& options);
  virtual absl::StatusOr<std::unique_ptr<WorkHandle>> DoBroadcast(const BroadcastOptions& options);
  virtual absl::StatusOr<std::unique_ptr<WorkHandle>> DoBarrier(const BarrierOptions& options);
  // Also with counts.size() == world_size() and sum(counts) > 0.
  virtual absl::StatusOr<std::unique_ptr<WorkHandle>> DoReduceScatterV(
      const ReduceScatterVOptions& options);
  virtual absl::StatusOr<std::unique_ptr<WorkHandle>> DoAllGatherV(
      const AllGatherVOptions& options);

 private:
  void Count(Collective c, int64_t count, DType dtype);
  // `elements` is the logical volume (see "Traffic accounting").
  void CountElements(Collective c, int64_t elements, DType dtype);

  const std::string backend_name_;
  const int rank_;
  const int world_size_;
  const Device device_;
  mutable absl::Mutex mu_;
  TrafficStats traffic_ ABSL_GUARDED_BY(mu_);
};

// Starts nothing: waits for a just-started collective, passing on a start
// error. `ZT_RETURN_IF_ERROR(Await(comm.AllReduce(o), timeout));`
absl::Status Await(absl::StatusOr<std::unique_ptr<WorkHandle>> work, absl::Duration timeout);

// The error a handle returns when its deadline passes. `description` is
// Communicator::Describe().
absl::Status CollectiveTimeoutError(absl::string_view description, absl::Duration timeout,
                                    absl::string_view detail = "");

}  // namespace zt

#endif  // ZEROTRAIN_ZERO_COMMUNICATOR_H_
