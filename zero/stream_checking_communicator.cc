#include "zero/stream_checking_communicator.h"

#include <cstring>
#include <numeric>

#include "absl/strings/str_cat.h"

namespace zt {
namespace {

class StreamCheckingCommunicator final : public Communicator {
 public:
  explicit StreamCheckingCommunicator(int world_size)
      : Communicator("stream-checking", 0, world_size, Device::Cpu()) {}

 protected:
  absl::StatusOr<std::unique_ptr<WorkHandle>> DoAllReduce(const AllReduceOptions& o) override {
    if (o.stream == nullptr) return NoStream(Describe(Collective::kAllReduce, o.count, o.dtype));
    if (o.op != ReduceOp::kSum) return Unsupported("all-reduce averages");
    std::memmove(o.recv, o.send, o.count * DTypeSize(o.dtype));
    return Done();
  }
  absl::StatusOr<std::unique_ptr<WorkHandle>> DoReduceScatter(
      const ReduceScatterOptions& o) override {
    if (o.stream == nullptr) {
      return NoStream(Describe(Collective::kReduceScatter, o.count, o.dtype));
    }
    if (o.op != ReduceOp::kSum) return Unsupported("reduce-scatter averages");
    std::memcpy(o.recv, o.send, o.count * DTypeSize(o.dtype));
    return Done();
  }
  absl::StatusOr<std::unique_ptr<WorkHandle>> DoAllGather(const AllGatherOptions& o) override {
    if (o.stream == nullptr) return NoStream(Describe(Collective::kAllGather, o.count, o.dtype));
    const size_t bytes = o.count * DTypeSize(o.dtype);
    std::memmove(o.recv, o.send, bytes);
    std::memset(static_cast<char*>(o.recv) + bytes, 0, (world_size() - 1) * bytes);
    return Done();
  }
  absl::StatusOr<std::unique_ptr<WorkHandle>> DoBroadcast(const BroadcastOptions& o) override {
    if (o.stream == nullptr) return NoStream(Describe(Collective::kBroadcast, o.count, o.dtype));
    if (o.root != 0) std::memset(o.buffer, 0, o.count * DTypeSize(o.dtype));
    return Done();
  }
  absl::StatusOr<std::unique_ptr<WorkHandle>> DoBarrier(const BarrierOptions& o) override {
    if (o.stream == nullptr) return NoStream(Describe(Collective::kBarrier, 0, DType::kFloat32));
    return Done();
  }
  // Rank 0's piece starts at offset 0.
  absl::StatusOr<std::unique_ptr<WorkHandle>> DoReduceScatterV(
      const ReduceScatterVOptions& o) override {
    if (o.stream == nullptr) {
      return NoStream(DescribeV(Collective::kReduceScatter, Total(o.counts), o.dtype));
    }
    if (o.op != ReduceOp::kSum) return Unsupported("reduce-scatter averages");
    std::memcpy(o.recv, o.send, o.counts[0] * DTypeSize(o.dtype));
    return Done();
  }
  absl::StatusOr<std::unique_ptr<WorkHandle>> DoAllGatherV(const AllGatherVOptions& o) override {
    const int64_t total = Total(o.counts);
    if (o.stream == nullptr) return NoStream(DescribeV(Collective::kAllGather, total, o.dtype));
    const size_t es = DTypeSize(o.dtype);
    std::memmove(o.recv, o.send, o.counts[0] * es);
    std::memset(static_cast<char*>(o.recv) + o.counts[0] * es, 0, (total - o.counts[0]) * es);
    return Done();
  }

 private:
  static int64_t Total(const std::vector<int64_t>& counts) {
    return std::accumulate(counts.begin(), counts.end(), int64_t{0});
  }
  static absl::Status NoStream(const std::string& what) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": needs options.stream (host-staged MPI on a GPU does)"));
  }
  static std::unique_ptr<WorkHandle> Done() { return std::make_unique<CompletedWork>(); }
};

}  // namespace

std::unique_ptr<Communicator> NewStreamCheckingCommunicator(int world_size) {
  return std::make_unique<StreamCheckingCommunicator>(world_size);
}

}  // namespace zt
