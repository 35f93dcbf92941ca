#include "zero/communicator.h"

#include <cstdint>
#include <vector>

#include "gtest/gtest.h"

namespace zt {
namespace {

// A backend that implements nothing, with a world of 4 so argument checks
// that depend on the world size are exercised.
class NothingCommunicator final : public Communicator {
 public:
  explicit NothingCommunicator(int rank = 1) : Communicator("nothing", rank, 4, Device::Cpu()) {}
};

TEST(CommunicatorTest, UnimplementedCollectiveNamesBackendAndOperation) {
  NothingCommunicator comm;
  float x[8] = {};
  AllReduceOptions ar;
  ar.send = ar.recv = x;
  ar.count = 1;
  auto w = comm.AllReduce(ar);
  EXPECT_EQ(w.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_EQ(w.status().message(), "nothing does not support allreduce");
  EXPECT_EQ(comm.Barrier().status().message(), "nothing does not support barrier");
  BroadcastOptions bc;
  bc.buffer = x;
  bc.count = 1;
  EXPECT_EQ(comm.Broadcast(bc).status().message(), "nothing does not support broadcast");
}

TEST(CommunicatorTest, FailedStartIsNotCountedAsTraffic) {
  NothingCommunicator comm;
  float x[1] = {};
  AllReduceOptions ar;
  ar.send = ar.recv = x;
  ar.count = 1;
  EXPECT_FALSE(comm.AllReduce(ar).ok());
  EXPECT_EQ(comm.traffic().total_elements(), 0);
  EXPECT_EQ(comm.traffic()[Collective::kAllReduce].calls, 0);
}

TEST(CommunicatorTest, NullBufferIsInvalidArgumentNamingTheBufferAndOperation) {
  NothingCommunicator comm;
  AllReduceOptions ar;
  ar.count = 3;
  const absl::Status s = comm.AllReduce(ar).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("allreduce (3 x fp32) on rank 1 of 4 (nothing)"),
            absl::string_view::npos)
      << s;
  EXPECT_NE(s.message().find("send is null"), absl::string_view::npos) << s;
}

TEST(CommunicatorTest, NegativeCountIsInvalidArgument) {
  NothingCommunicator comm;
  float x = 0;
  BroadcastOptions o;
  o.buffer = &x;
  o.count = -1;
  const absl::Status s = comm.Broadcast(o).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("negative count -1"), absl::string_view::npos) << s;
}

TEST(CommunicatorTest, CountBeyondIntIsInvalidArgumentAskingForBuckets) {
  NothingCommunicator comm;
  float x = 0, y = 0;
  ReduceScatterOptions o;
  o.send = &x;
  o.recv = &y;
  o.count = (int64_t{1} << 29) + 1;  // Times 4 ranks exceeds INT_MAX.
  const absl::Status s = comm.ReduceScatter(o).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("buckets"), absl::string_view::npos) << s;
}

TEST(CommunicatorTest, RootOutsideWorldIsInvalidArgumentNamingRoot) {
  NothingCommunicator comm;
  float x = 0;
  BroadcastOptions o;
  o.buffer = &x;
  o.count = 1;
  o.root = 4;
  const absl::Status s = comm.Broadcast(o).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("root 4 is not in [0, 4)"), absl::string_view::npos) << s;
}

TEST(CommunicatorTest, PartiallyOverlappingAllReduceBuffersAreRejected) {
  NothingCommunicator comm;
  float x[8] = {};
  AllReduceOptions o;
  o.send = x;
  o.recv = x + 1;
  o.count = 4;
  EXPECT_EQ(comm.AllReduce(o).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(CommunicatorTest, OverlappingReduceScatterBuffersAreRejected) {
  NothingCommunicator comm;
  float x[8] = {};
  ReduceScatterOptions o;
  o.send = x;
  o.recv = x + 2;  // Even this rank's own chunk: MPI has no such in-place form.
  o.count = 2;
  const absl::Status s = comm.ReduceScatter(o).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("overlap"), absl::string_view::npos) << s;
}

TEST(CommunicatorTest, AllGatherAcceptsOnlyItsOwnSlotAsInPlaceSend) {
  NothingCommunicator comm(/*rank=*/1);
  float x[8] = {};
  AllGatherOptions o;
  o.recv = x;
  o.count = 2;
  o.send = x + 2;  // Rank 1's slot: in place, reaches the backend.
  EXPECT_EQ(comm.AllGather(o).status().code(), absl::StatusCode::kUnimplemented);
  o.send = x + 4;  // Another rank's slot.
  const absl::Status s = comm.AllGather(o).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("recv + rank * count"), absl::string_view::npos) << s;
}

TEST(CommunicatorTest, LogicalElementsFollowTheZeroPaper) {
  EXPECT_EQ(LogicalElements(Collective::kAllReduce, 10, 4), 20);
  EXPECT_EQ(LogicalElements(Collective::kReduceScatter, 10, 4), 40);
  EXPECT_EQ(LogicalElements(Collective::kAllGather, 10, 4), 40);
  EXPECT_EQ(LogicalElements(Collective::kBroadcast, 10, 4), 10);
  EXPECT_EQ(LogicalElements(Collective::kBarrier, 10, 4), 0);
}

TEST(CommunicatorTest, TimeoutErrorIsDeadlineExceededNamingTheCollective) {
  NothingCommunicator comm(/*rank=*/2);
  const absl::Status s = CollectiveTimeoutError(
      comm.Describe(Collective::kReduceScatter, 5, DType::kBFloat16), absl::Milliseconds(250));
  EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_NE(s.message().find("reduce_scatter (5 x bf16) on rank 2 of 4 (nothing) did not "
                             "complete within 250ms"),
            absl::string_view::npos)
      << s;
}

TEST(CommunicatorTest, TrafficToStringListsUsedCollectives) {
  TrafficStats t;
  EXPECT_EQ(t.ToString(), "no collectives");
  t.by_collective[static_cast<int>(Collective::kAllGather)] = {2, 30, 60};
  EXPECT_EQ(t.ToString(), "allgather: 2 calls, 30 elements, 60 bytes");
}

TEST(CommunicatorTest, AwaitPassesOnAStartError) {
  const absl::Status s = Await(absl::InternalError("start failed"), absl::Seconds(1));
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal);
}

}  // namespace
}  // namespace zt
