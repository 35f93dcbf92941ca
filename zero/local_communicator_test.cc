#include "zero/local_communicator.h"

#include <algorithm>
#include <cstdlib>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/testutil.h"
#include "zero/communicator.h"

namespace zt {
namespace {

using ::zt::kernels::testing::FromBytes;
using ::zt::kernels::testing::ToBytes;

std::unique_ptr<Communicator> MakeLocal() {
  auto c = CreateLocalCommunicator();
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? std::move(*c) : nullptr;
}

TEST(LocalCommunicatorTest, IsRankZeroOfOneWithoutAnyMpi) {
  // No launcher variables: this process was not started by mpirun.
  EXPECT_EQ(std::getenv("OMPI_COMM_WORLD_SIZE"), nullptr);
  auto comm = MakeLocal();
  EXPECT_EQ(comm->rank(), 0);
  EXPECT_EQ(comm->world_size(), 1);
  EXPECT_EQ(comm->backend_name(), "local");
  EXPECT_TRUE(comm->device().is_cpu());
}

TEST(LocalCommunicatorTest, EveryCollectiveIsTheIdentityForEveryDtype) {
  auto comm = MakeLocal();
  const std::vector<float> values = {1.5f, -2.0f, 0.25f, 3.0f, -0.5f, 7.0f, 8.0f};
  for (DType dt : {DType::kFloat32, DType::kFloat16, DType::kBFloat16}) {
    SCOPED_TRACE(DTypeName(dt));
    const std::vector<uint8_t> in = ToBytes(values, dt);
    std::vector<uint8_t> out(in.size());
    for (ReduceOp op : {ReduceOp::kSum, ReduceOp::kAverage}) {
      AllReduceOptions ar;
      ar.send = in.data();
      ar.recv = out.data();
      ar.count = 7;
      ar.dtype = dt;
      ar.op = op;
      ASSERT_TRUE(Await(comm->AllReduce(ar), absl::Seconds(1)).ok());
      EXPECT_EQ(out, in);
      std::fill(out.begin(), out.end(), 0);
      ReduceScatterOptions rs;
      rs.send = in.data();
      rs.recv = out.data();
      rs.count = 7;
      rs.dtype = dt;
      rs.op = op;
      ASSERT_TRUE(Await(comm->ReduceScatter(rs), absl::Seconds(1)).ok());
      EXPECT_EQ(out, in);
    }
    std::fill(out.begin(), out.end(), 0);
    AllGatherOptions ag;
    ag.send = in.data();
    ag.recv = out.data();
    ag.count = 7;
    ag.dtype = dt;
    ASSERT_TRUE(Await(comm->AllGather(ag), absl::Seconds(1)).ok());
    EXPECT_EQ(out, in);
    std::vector<uint8_t> buf = in;
    BroadcastOptions bc;
    bc.buffer = buf.data();
    bc.count = 7;
    bc.dtype = dt;
    ASSERT_TRUE(Await(comm->Broadcast(bc), absl::Seconds(1)).ok());
    EXPECT_EQ(buf, in);
  }
  ASSERT_TRUE(Await(comm->Barrier(), absl::Seconds(1)).ok());
}

TEST(LocalCommunicatorTest, InPlaceAllReduceAndAllGatherKeepTheData) {
  auto comm = MakeLocal();
  std::vector<float> x = {1, 2, 3};
  AllReduceOptions ar;
  ar.send = ar.recv = x.data();
  ar.count = 3;
  ASSERT_TRUE(Await(comm->AllReduce(ar), absl::Seconds(1)).ok());
  AllGatherOptions ag;
  ag.send = ag.recv = x.data();
  ag.count = 3;
  ASSERT_TRUE(Await(comm->AllGather(ag), absl::Seconds(1)).ok());
  EXPECT_EQ(x, (std::vector<float>{1, 2, 3}));
}

TEST(LocalCommunicatorTest, CountsTheSameLogicalTrafficAsAnyWorldOfOne) {
  auto comm = MakeLocal();
  std::vector<float> x(10), y(10);
  AllReduceOptions ar;
  ar.send = ar.recv = x.data();
  ar.count = 10;
  ASSERT_TRUE(Await(comm->AllReduce(ar), absl::Seconds(1)).ok());
  AllGatherOptions ag;
  ag.send = x.data();
  ag.recv = y.data();
  ag.count = 10;
  ag.dtype = DType::kBFloat16;
  ASSERT_TRUE(Await(comm->AllGather(ag), absl::Seconds(1)).ok());
  const TrafficStats t = comm->traffic();
  EXPECT_EQ(t[Collective::kAllReduce].elements, 20);
  EXPECT_EQ(t[Collective::kAllReduce].bytes, 80);
  EXPECT_EQ(t[Collective::kAllGather].elements, 10);
  EXPECT_EQ(t[Collective::kAllGather].bytes, 20);
}

TEST(LocalCommunicatorTest, VariableCountCollectivesAreTheIdentityForEveryDtype) {
  auto comm = MakeLocal();
  const std::vector<float> values = {1.5f, -2.0f, 0.25f, 3.0f, -0.5f, 7.0f, 8.0f};
  for (DType dt : {DType::kFloat32, DType::kFloat16, DType::kBFloat16}) {
    SCOPED_TRACE(DTypeName(dt));
    const std::vector<uint8_t> in = ToBytes(values, dt);
    std::vector<uint8_t> out(in.size(), 0);
    for (ReduceOp op : {ReduceOp::kSum, ReduceOp::kAverage}) {
      ReduceScatterVOptions rs;
      rs.send = in.data();
      rs.recv = out.data();
      rs.counts = {7};
      rs.dtype = dt;
      rs.op = op;
      ASSERT_TRUE(Await(comm->ReduceScatterV(rs), absl::Seconds(1)).ok());
      EXPECT_EQ(out, in);
      std::fill(out.begin(), out.end(), 0);
    }
    AllGatherVOptions ag;
    ag.send = in.data();
    ag.recv = out.data();
    ag.counts = {7};
    ag.dtype = dt;
    ASSERT_TRUE(Await(comm->AllGatherV(ag), absl::Seconds(1)).ok());
    EXPECT_EQ(out, in);
    // In place: send is this rank's piece of recv.
    ag.send = out.data();
    ASSERT_TRUE(Await(comm->AllGatherV(ag), absl::Seconds(1)).ok());
    EXPECT_EQ(out, in);
  }
}

TEST(LocalCommunicatorTest, EmptyVariableCountCollectivesTouchNothing) {
  auto comm = MakeLocal();
  ReduceScatterVOptions rs;
  rs.counts = {0};
  ASSERT_TRUE(Await(comm->ReduceScatterV(rs), absl::Seconds(1)).ok());
  AllGatherVOptions ag;
  ag.counts = {0};
  ASSERT_TRUE(Await(comm->AllGatherV(ag), absl::Seconds(1)).ok());
  const TrafficStats t = comm->traffic();
  EXPECT_EQ(t[Collective::kReduceScatter].calls, 1);
  EXPECT_EQ(t[Collective::kAllGather].calls, 1);
  EXPECT_EQ(t.total_elements(), 0);
}

TEST(LocalCommunicatorTest, VariableCountsForAnotherWorldSizeAreInvalidArgument) {
  auto comm = MakeLocal();
  std::vector<float> x(4), y(4);
  ReduceScatterVOptions rs;
  rs.send = x.data();
  rs.recv = y.data();
  rs.counts = {2, 2};
  const absl::Status s = Await(comm->ReduceScatterV(rs), absl::Seconds(1));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("reduce_scatter_v (4 x fp32) on rank 0 of 1 (local): counts has 2 "
                             "entries, expected one per rank (1)"),
            absl::string_view::npos)
      << s;
}

TEST(LocalCommunicatorTest, VariableCountTrafficIsTheFullBuffer) {
  auto comm = MakeLocal();
  std::vector<float> x(10), y(10);
  ReduceScatterVOptions rs;
  rs.send = x.data();
  rs.recv = y.data();
  rs.counts = {10};
  rs.dtype = DType::kFloat16;
  ASSERT_TRUE(Await(comm->ReduceScatterV(rs), absl::Seconds(1)).ok());
  AllGatherVOptions ag;
  ag.send = x.data();
  ag.recv = y.data();
  ag.counts = {6};
  ASSERT_TRUE(Await(comm->AllGatherV(ag), absl::Seconds(1)).ok());
  const TrafficStats t = comm->traffic();
  EXPECT_EQ(t[Collective::kReduceScatter].elements, 10);
  EXPECT_EQ(t[Collective::kReduceScatter].bytes, 20);
  EXPECT_EQ(t[Collective::kAllGather].elements, 6);
  EXPECT_EQ(t[Collective::kAllGather].bytes, 24);
}

TEST(LocalCommunicatorTest, BroadcastFromAnotherRootIsInvalidArgument) {
  auto comm = MakeLocal();
  float x = 0;
  BroadcastOptions bc;
  bc.buffer = &x;
  bc.count = 1;
  bc.root = 1;
  const absl::Status s = Await(comm->Broadcast(bc), absl::Seconds(1));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("broadcast (1 x fp32) on rank 0 of 1 (local): root 1"),
            absl::string_view::npos)
      << s;
}

}  // namespace
}  // namespace zt
