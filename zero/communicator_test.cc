#include "zero/communicator.h"

#include <climits>
#include <cstdint>
#include <memory>
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

// Answers the variable-count collectives at once, so what the base class
// counts can be checked.
class CompletingCommunicator final : public Communicator {
 public:
  explicit CompletingCommunicator(int rank = 1)
      : Communicator("completing", rank, 4, Device::Cpu()) {}

 protected:
  absl::StatusOr<std::unique_ptr<WorkHandle>> DoReduceScatterV(
      const ReduceScatterVOptions&) override {
    return std::unique_ptr<WorkHandle>(std::make_unique<CompletedWork>());
  }
  absl::StatusOr<std::unique_ptr<WorkHandle>> DoAllGatherV(const AllGatherVOptions&) override {
    return std::unique_ptr<WorkHandle>(std::make_unique<CompletedWork>());
  }
};

TEST(CommunicatorTest, VariableCountCollectivesAreUnsupportedUnderTheirOwnNames) {
  NothingCommunicator comm;
  float x[8] = {}, y[8] = {};
  ReduceScatterVOptions rs;
  rs.send = x;
  rs.recv = y;
  rs.counts = {1, 2, 0, 3};
  const absl::Status s = comm.ReduceScatterV(rs).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kUnimplemented);
  EXPECT_EQ(s.message(), "nothing does not support reduce_scatter_v");
  AllGatherVOptions ag;
  ag.send = x;
  ag.recv = y;
  ag.counts = {1, 2, 0, 3};
  EXPECT_EQ(comm.AllGatherV(ag).status().message(), "nothing does not support allgather_v");
}

TEST(CommunicatorTest, VariableCountsNeedOneEntryPerRank) {
  NothingCommunicator comm;
  float x[8] = {}, y[8] = {};
  ReduceScatterVOptions rs;
  rs.send = x;
  rs.recv = y;
  rs.counts = {1, 2, 3};
  absl::Status s = comm.ReduceScatterV(rs).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("reduce_scatter_v (6 x fp32) on rank 1 of 4 (nothing): counts has 3 "
                             "entries, expected one per rank (4)"),
            absl::string_view::npos)
      << s;
  AllGatherVOptions ag;
  ag.send = x;
  ag.recv = y;
  ag.counts = {1, 1, 1, 1, 1};
  ag.dtype = DType::kBFloat16;
  s = comm.AllGatherV(ag).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("allgather_v (5 x bf16) on rank 1 of 4 (nothing): counts has 5 "
                             "entries, expected one per rank (4)"),
            absl::string_view::npos)
      << s;
}

TEST(CommunicatorTest, NegativeVariableCountIsInvalidArgumentNamingTheRank) {
  NothingCommunicator comm;
  float x[8] = {}, y[8] = {};
  ReduceScatterVOptions rs;
  rs.send = x;
  rs.recv = y;
  rs.counts = {1, 2, -3, 0};
  absl::Status s = comm.ReduceScatterV(rs).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("reduce_scatter_v"), absl::string_view::npos) << s;
  EXPECT_NE(s.message().find("negative count -3 for rank 2"), absl::string_view::npos) << s;
  AllGatherVOptions ag;
  ag.send = x;
  ag.recv = y;
  ag.counts = {-1, 0, 0, 0};
  s = comm.AllGatherV(ag).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("allgather_v"), absl::string_view::npos) << s;
  EXPECT_NE(s.message().find("negative count -1 for rank 0"), absl::string_view::npos) << s;
}

TEST(CommunicatorTest, VariableCountsBeyondIntAreInvalidArgumentAskingForBuckets) {
  NothingCommunicator comm;
  float x = 0, y = 0;
  ReduceScatterVOptions rs;
  rs.send = &x;
  rs.recv = &y;
  rs.counts = {INT_MAX, 0, 1, 0};  // Each fits in int; their sum does not.
  absl::Status s = comm.ReduceScatterV(rs).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("buckets"), absl::string_view::npos) << s;
  AllGatherVOptions ag;
  ag.send = &x;
  ag.recv = &y;
  ag.counts = {0, int64_t{1} << 40, 0, 0};
  s = comm.AllGatherV(ag).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("buckets"), absl::string_view::npos) << s;
}

// A rank whose piece is empty may pass a null buffer for it; a rank with
// data may not.
TEST(CommunicatorTest, VariableCountBuffersMayBeNullOnlyWhereTheirCountIsZero) {
  NothingCommunicator comm(/*rank=*/1);
  float x[8] = {};
  ReduceScatterVOptions rs;
  rs.send = x;
  rs.counts = {3, 0, 2, 0};
  EXPECT_EQ(comm.ReduceScatterV(rs).status().code(), absl::StatusCode::kUnimplemented);
  rs.counts = {3, 1, 2, 0};
  absl::Status s = comm.ReduceScatterV(rs).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("reduce_scatter_v (6 x fp32) on rank 1 of 4 (nothing): recv is null"),
            absl::string_view::npos)
      << s;
  rs.send = nullptr;
  rs.recv = x;
  s = comm.ReduceScatterV(rs).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("send is null"), absl::string_view::npos) << s;

  AllGatherVOptions ag;
  ag.recv = x;
  ag.counts = {3, 0, 2, 0};
  EXPECT_EQ(comm.AllGatherV(ag).status().code(), absl::StatusCode::kUnimplemented);
  ag.counts = {3, 1, 2, 0};
  s = comm.AllGatherV(ag).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("allgather_v (6 x fp32) on rank 1 of 4 (nothing): send is null"),
            absl::string_view::npos)
      << s;
  ag.send = x;
  ag.recv = nullptr;
  s = comm.AllGatherV(ag).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("recv is null"), absl::string_view::npos) << s;
}

TEST(CommunicatorTest, OverlappingReduceScatterVBuffersAreRejected) {
  NothingCommunicator comm(/*rank=*/1);
  float x[8] = {};
  ReduceScatterVOptions rs;
  rs.send = x;
  rs.recv = x + 1;  // This rank's own piece.
  rs.counts = {1, 2, 0, 3};
  const absl::Status s = comm.ReduceScatterV(rs).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("reduce_scatter_v (6 x fp32) on rank 1 of 4 (nothing): send and recv "
                             "overlap"),
            absl::string_view::npos)
      << s;
}

TEST(CommunicatorTest, AllGatherVAcceptsOnlyItsOwnPieceAsInPlaceSend) {
  NothingCommunicator comm(/*rank=*/2);
  float x[8] = {};
  AllGatherVOptions o;
  o.recv = x;
  o.counts = {1, 2, 3, 2};
  o.send = x + 3;  // Rank 2's piece: in place, reaches the backend.
  EXPECT_EQ(comm.AllGatherV(o).status().code(), absl::StatusCode::kUnimplemented);
  o.send = x + 2;  // Straddles rank 1's and rank 2's pieces.
  const absl::Status s = comm.AllGatherV(o).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("recv + offset(rank)"), absl::string_view::npos) << s;
}

TEST(CommunicatorTest, AllZeroVariableCountsCompleteWithoutTheBackendAndCountACall) {
  NothingCommunicator comm;
  ReduceScatterVOptions rs;
  rs.counts = {0, 0, 0, 0};
  ASSERT_TRUE(Await(comm.ReduceScatterV(rs), absl::Seconds(1)).ok());
  AllGatherVOptions ag;
  ag.counts = {0, 0, 0, 0};
  ASSERT_TRUE(Await(comm.AllGatherV(ag), absl::Seconds(1)).ok());
  const TrafficStats t = comm.traffic();
  EXPECT_EQ(t[Collective::kReduceScatter].calls, 1);
  EXPECT_EQ(t[Collective::kAllGather].calls, 1);
  EXPECT_EQ(t.total_elements(), 0);
}

// sum(counts), the full buffer, as N*count is for the equal-count forms.
TEST(CommunicatorTest, VariableCountTrafficIsTheFullBufferUnderTheFixedCountCollective) {
  CompletingCommunicator comm;
  float x[16] = {}, y[16] = {};
  ReduceScatterVOptions rs;
  rs.send = x;
  rs.recv = y;
  rs.counts = {0, 5, 0, 2};
  rs.dtype = DType::kBFloat16;
  ASSERT_TRUE(Await(comm.ReduceScatterV(rs), absl::Seconds(1)).ok());
  AllGatherVOptions ag;
  ag.send = x;
  ag.recv = y;
  ag.counts = {3, 3, 3, 3};
  ASSERT_TRUE(Await(comm.AllGatherV(ag), absl::Seconds(1)).ok());
  ASSERT_TRUE(Await(comm.AllGatherV(ag), absl::Seconds(1)).ok());
  const TrafficStats t = comm.traffic();
  EXPECT_EQ(t[Collective::kReduceScatter].calls, 1);
  EXPECT_EQ(t[Collective::kReduceScatter].elements, 7);
  EXPECT_EQ(t[Collective::kReduceScatter].bytes, 14);
  EXPECT_EQ(t[Collective::kAllGather].calls, 2);
  EXPECT_EQ(t[Collective::kAllGather].elements, 2 * LogicalElements(Collective::kAllGather, 3, 4));
  EXPECT_EQ(t[Collective::kAllGather].bytes, 2 * 12 * 4);
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
