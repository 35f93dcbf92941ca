#include "zero/communicator.h"

#include "core/status_macros.h"

#include <climits>
#include <cstdint>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "glog/logging.h"

namespace zt {

absl::string_view CollectiveName(Collective c) {
  switch (c) {
    case Collective::kAllReduce:
      return "allreduce";
    case Collective::kReduceScatter:
      return "reduce_scatter";
    case Collective::kAllGather:
      return "allgather";
    case Collective::kBroadcast:
      return "broadcast";
    case Collective::kBarrier:
      return "barrier";
  }
  return "unknown";
}

int64_t LogicalElements(Collective c, int64_t count, int world_size) {
  switch (c) {
    case Collective::kAllReduce:
      return 2 * count;
    case Collective::kReduceScatter:
    case Collective::kAllGather:
      return static_cast<int64_t>(world_size) * count;
    case Collective::kBroadcast:
      return count;
    case Collective::kBarrier:
      return 0;
  }
  return 0;
}

int64_t TrafficStats::total_elements() const {
  int64_t total = 0;
  for (const Counts& c : by_collective) total += c.elements;
  return total;
}

int64_t TrafficStats::total_bytes() const {
  int64_t total = 0;
  for (const Counts& c : by_collective) total += c.bytes;
  return total;
}

std::string TrafficStats::ToString() const {
  std::string out;
  for (int i = 0; i < kNumCollectives; ++i) {
    const Counts& c = by_collective[i];
    if (c.calls == 0) continue;
    if (!out.empty()) out += "; ";
    absl::StrAppendFormat(&out, "%s: %d calls, %d elements, %d bytes",
                          CollectiveName(static_cast<Collective>(i)), c.calls, c.elements, c.bytes);
  }
  return out.empty() ? "no collectives" : out;
}

absl::Status Await(absl::StatusOr<std::unique_ptr<WorkHandle>> work, absl::Duration timeout) {
  if (!work.ok()) return work.status();
  return (*work)->Wait(timeout);
}

absl::Status CollectiveTimeoutError(absl::string_view description, absl::Duration timeout,
                                    absl::string_view detail) {
  return absl::DeadlineExceededError(
      absl::StrCat(description, " did not complete within ", absl::FormatDuration(timeout),
                   ": a peer rank is dead, stuck, or issued a different collective",
                   detail.empty() ? "" : "; ", detail));
}

Communicator::Communicator(std::string backend_name, int rank, int world_size, Device device)
    : backend_name_(std::move(backend_name)),
      rank_(rank),
      world_size_(world_size),
      device_(device) {
  CHECK_GE(world_size, 1);
  CHECK(rank >= 0 && rank < world_size) << "rank " << rank << " of " << world_size;
}

std::string Communicator::Describe(Collective c, int64_t count, DType dtype) const {
  if (c == Collective::kBarrier) {
    return absl::StrFormat("barrier on rank %d of %d (%s)", rank_, world_size_, backend_name_);
  }
  return absl::StrFormat("%s (%d x %s) on rank %d of %d (%s)", CollectiveName(c), count,
                         DTypeName(dtype), rank_, world_size_, backend_name_);
}

std::string Communicator::DescribeV(Collective c, int64_t total, DType dtype) const {
  return absl::StrFormat("%s_v (%d x %s) on rank %d of %d (%s)", CollectiveName(c), total,
                         DTypeName(dtype), rank_, world_size_, backend_name_);
}

absl::Status Communicator::Unsupported(Collective c) const {
  return Unsupported(CollectiveName(c));
}

absl::Status Communicator::Unsupported(absl::string_view op_name) const {
  return absl::UnimplementedError(absl::StrCat(backend_name_, " does not support ", op_name));
}

namespace {

bool ValidDType(DType t) {
  return t == DType::kFloat32 || t == DType::kFloat16 || t == DType::kBFloat16;
}

// Byte ranges [a, a+an) and [b, b+bn) overlap.
bool Overlap(const void* a, int64_t an, const void* b, int64_t bn) {
  const auto x = reinterpret_cast<uintptr_t>(a);
  const auto y = reinterpret_cast<uintptr_t>(b);
  return an > 0 && bn > 0 && x < y + static_cast<uintptr_t>(bn) &&
         y < x + static_cast<uintptr_t>(an);
}

// Element counts stay within int so every backend (MPI and NCCL take int or
// size_t counts) can pass them on unchanged.
absl::Status CheckCommon(const std::string& what, int64_t count, int64_t total, DType dtype) {
  if (!ValidDType(dtype)) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": unknown dtype ", static_cast<int>(dtype)));
  }
  if (count < 0) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": negative count ", count));
  }
  if (total > INT_MAX) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": ", total,
                                                   " elements exceed the limit of ", INT_MAX,
                                                   " per collective; split it into buckets"));
  }
  return absl::OkStatus();
}

absl::Status CheckPointer(const std::string& what, const void* p, absl::string_view name,
                          int64_t count) {
  if (count > 0 && p == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": ", name, " is null"));
  }
  return absl::OkStatus();
}

// sum(counts) over the non-negative entries, saturating (the limit check
// then rejects it).
int64_t SumCounts(const std::vector<int64_t>& counts) {
  int64_t total = 0;
  for (int64_t c : counts) {
    if (c > 0) total = c > INT64_MAX - total ? INT64_MAX : total + c;
  }
  return total;
}

absl::Status CheckCounts(const std::string& what, const std::vector<int64_t>& counts,
                         int world_size, int64_t total, DType dtype) {
  if (counts.size() != static_cast<size_t>(world_size)) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": counts has ", counts.size(),
                                                   " entries, expected one per rank (", world_size,
                                                   ")"));
  }
  for (int r = 0; r < world_size; ++r) {
    if (counts[r] < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": negative count ", counts[r], " for rank ", r));
    }
  }
  return CheckCommon(what, 0, total, dtype);
}

// sum(counts[0..rank)).
int64_t Offset(const std::vector<int64_t>& counts, int rank) {
  int64_t offset = 0;
  for (int r = 0; r < rank; ++r) offset += counts[r];
  return offset;
}

}  // namespace

void Communicator::Count(Collective c, int64_t count, DType dtype) {
  CountElements(c, LogicalElements(c, count, world_size_), dtype);
}

void Communicator::CountElements(Collective c, int64_t elements, DType dtype) {
  absl::MutexLock lock(&mu_);
  TrafficStats::Counts& counts = traffic_.by_collective[static_cast<int>(c)];
  ++counts.calls;
  counts.elements += elements;
  counts.bytes += elements * static_cast<int64_t>(DTypeSize(dtype));
}

TrafficStats Communicator::traffic() const {
  absl::MutexLock lock(&mu_);
  return traffic_;
}

void Communicator::ResetTraffic() {
  absl::MutexLock lock(&mu_);
  traffic_ = TrafficStats();
}

absl::StatusOr<std::unique_ptr<WorkHandle>> Communicator::AllReduce(const AllReduceOptions& o) {
  const std::string what = Describe(Collective::kAllReduce, o.count, o.dtype);
  if (absl::Status s = CheckCommon(what, o.count, o.count, o.dtype); !s.ok()) return s;
  if (absl::Status s = CheckPointer(what, o.send, "send", o.count); !s.ok()) return s;
  if (absl::Status s = CheckPointer(what, o.recv, "recv", o.count); !s.ok()) return s;
  const int64_t bytes = o.count * static_cast<int64_t>(DTypeSize(o.dtype));
  if (o.send != o.recv && Overlap(o.send, bytes, o.recv, bytes)) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": send and recv overlap without being the same buffer"));
  }
  auto work = DoAllReduce(o);
  if (work.ok()) Count(Collective::kAllReduce, o.count, o.dtype);
  return work;
}

absl::StatusOr<std::unique_ptr<WorkHandle>> Communicator::ReduceScatter(
    const ReduceScatterOptions& o) {
  const std::string what = Describe(Collective::kReduceScatter, o.count, o.dtype);
  const int64_t total = o.count * world_size_;
  if (absl::Status s = CheckCommon(what, o.count, total, o.dtype); !s.ok()) return s;
  if (absl::Status s = CheckPointer(what, o.send, "send", o.count); !s.ok()) return s;
  if (absl::Status s = CheckPointer(what, o.recv, "recv", o.count); !s.ok()) return s;
  const int64_t size = static_cast<int64_t>(DTypeSize(o.dtype));
  if (Overlap(o.send, total * size, o.recv, o.count * size)) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": send and recv overlap"));
  }
  auto work = DoReduceScatter(o);
  if (work.ok()) Count(Collective::kReduceScatter, o.count, o.dtype);
  return work;
}

absl::StatusOr<std::unique_ptr<WorkHandle>> Communicator::AllGather(const AllGatherOptions& o) {
  const std::string what = Describe(Collective::kAllGather, o.count, o.dtype);
  const int64_t total = o.count * world_size_;
  if (absl::Status s = CheckCommon(what, o.count, total, o.dtype); !s.ok()) return s;
  if (absl::Status s = CheckPointer(what, o.send, "send", o.count); !s.ok()) return s;
  if (absl::Status s = CheckPointer(what, o.recv, "recv", o.count); !s.ok()) return s;
  const int64_t size = static_cast<int64_t>(DTypeSize(o.dtype));
  const void* own_slot = static_cast<const char*>(o.recv) + rank_ * o.count * size;
  if (o.send != own_slot && Overlap(o.send, o.count * size, o.recv, total * size)) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": send overlaps recv without being this rank's slot recv + rank * count"));
  }
  auto work = DoAllGather(o);
  if (work.ok()) Count(Collective::kAllGather, o.count, o.dtype);
  return work;
}

absl::StatusOr<std::unique_ptr<WorkHandle>> Communicator::Broadcast(const BroadcastOptions& o) {
  const std::string what = Describe(Collective::kBroadcast, o.count, o.dtype);
  if (absl::Status s = CheckCommon(what, o.count, o.count, o.dtype); !s.ok()) return s;
  if (absl::Status s = CheckPointer(what, o.buffer, "buffer", o.count); !s.ok()) return s;
  if (o.root < 0 || o.root >= world_size_) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": root ", o.root, " is not in [0, ", world_size_, ")"));
  }
  auto work = DoBroadcast(o);
  if (work.ok()) Count(Collective::kBroadcast, o.count, o.dtype);
  return work;
}

absl::StatusOr<std::unique_ptr<WorkHandle>> Communicator::Barrier(const BarrierOptions& o) {
  auto work = DoBarrier(o);
  if (work.ok()) Count(Collective::kBarrier, 0, DType::kFloat32);
  return work;
}

absl::StatusOr<std::unique_ptr<WorkHandle>> Communicator::ReduceScatterV(
    const ReduceScatterVOptions& o) {
  const int64_t total = SumCounts(o.counts);
  const std::string what = DescribeV(Collective::kReduceScatter, total, o.dtype);
  if (absl::Status s = CheckCounts(what, o.counts, world_size_, total, o.dtype); !s.ok()) {
    return s;
  }
  const int64_t mine = o.counts[rank_];
  if (absl::Status s = CheckPointer(what, o.send, "send", total); !s.ok()) return s;
  if (absl::Status s = CheckPointer(what, o.recv, "recv", mine); !s.ok()) return s;
  const int64_t size = static_cast<int64_t>(DTypeSize(o.dtype));
  if (Overlap(o.send, total * size, o.recv, mine * size)) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": send and recv overlap"));
  }
  absl::StatusOr<std::unique_ptr<WorkHandle>> work =
      total == 0 ? std::unique_ptr<WorkHandle>(std::make_unique<CompletedWork>())
                 : DoReduceScatterV(o);
  if (work.ok()) CountElements(Collective::kReduceScatter, total, o.dtype);
  return work;
}

absl::StatusOr<std::unique_ptr<WorkHandle>> Communicator::AllGatherV(const AllGatherVOptions& o) {
  const int64_t total = SumCounts(o.counts);
  const std::string what = DescribeV(Collective::kAllGather, total, o.dtype);
  if (absl::Status s = CheckCounts(what, o.counts, world_size_, total, o.dtype); !s.ok()) {
    return s;
  }
  const int64_t mine = o.counts[rank_];
  if (absl::Status s = CheckPointer(what, o.send, "send", mine); !s.ok()) return s;
  if (absl::Status s = CheckPointer(what, o.recv, "recv", total); !s.ok()) return s;
  const int64_t size = static_cast<int64_t>(DTypeSize(o.dtype));
  const void* own_piece = static_cast<const char*>(o.recv) + Offset(o.counts, rank_) * size;
  if (o.send != own_piece && Overlap(o.send, mine * size, o.recv, total * size)) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": send overlaps recv without being this rank's piece recv + offset(rank)"));
  }
  absl::StatusOr<std::unique_ptr<WorkHandle>> work =
      total == 0 ? std::unique_ptr<WorkHandle>(std::make_unique<CompletedWork>()) : DoAllGatherV(o);
  if (work.ok()) CountElements(Collective::kAllGather, total, o.dtype);
  return work;
}

absl::StatusOr<std::unique_ptr<WorkHandle>> Communicator::DoAllReduce(const AllReduceOptions&) {
  return Unsupported(Collective::kAllReduce);
}
absl::StatusOr<std::unique_ptr<WorkHandle>> Communicator::DoReduceScatter(
    const ReduceScatterOptions&) {
  return Unsupported(Collective::kReduceScatter);
}
absl::StatusOr<std::unique_ptr<WorkHandle>> Communicator::DoAllGather(const AllGatherOptions&) {
  return Unsupported(Collective::kAllGather);
}
absl::StatusOr<std::unique_ptr<WorkHandle>> Communicator::DoBroadcast(const BroadcastOptions&) {
  return Unsupported(Collective::kBroadcast);
}
absl::StatusOr<std::unique_ptr<WorkHandle>> Communicator::DoBarrier(const BarrierOptions&) {
  return Unsupported(Collective::kBarrier);
}
absl::StatusOr<std::unique_ptr<WorkHandle>> Communicator::DoReduceScatterV(
    const ReduceScatterVOptions&) {
  return Unsupported("reduce_scatter_v");
}
absl::StatusOr<std::unique_ptr<WorkHandle>> Communicator::DoAllGatherV(const AllGatherVOptions&) {
  return Unsupported("allgather_v");
}

}  // namespace zt
