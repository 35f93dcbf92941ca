// World size 1 on a real GPU: the NCCL backend, the local backend and the
// host-staged MPI backend (MPI singleton, no mpirun) with device buffers.
#include <cstdint>
#include <vector>

#include "gtest/gtest.h"
#include "core/device.h"
#include "kernels/testutil.h"
#include "zero/communicator.h"
#include "zero/communicator_factory.h"
#include "zero/local_communicator.h"
#include "zero/mpi_communicator.h"
#include "zero/nccl_communicator.h"

namespace zt {
namespace {

using ::zt::kernels::testing::FromBytes;
using ::zt::kernels::testing::ToBytes;

constexpr absl::Duration kTimeout = absl::Seconds(30);

class GpuCommunicatorTest : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    ASSERT_GT(CudaDeviceCount(), 0) << "no GPU";
    auto alloc = NewCudaAllocator(0);
    ASSERT_TRUE(alloc.ok()) << alloc.status();
    alloc_ = std::move(*alloc);
    auto stream = NewStream(Device::Cuda(0));
    ASSERT_TRUE(stream.ok()) << stream.status();
    stream_ = std::move(*stream);
    const std::string backend = GetParam();
    absl::StatusOr<std::unique_ptr<Communicator>> c;
    if (backend == "nccl") {
      NcclCommunicatorOptions o;
      o.device_index = 0;
      o.init_timeout = kTimeout;
      c = CreateNcclCommunicator(o);
    } else if (backend == "local") {
      c = CreateLocalCommunicator(Device::Cuda(0));
    } else {
      MpiCommunicatorOptions o;
      o.device = Device::Cuda(0);
      c = CreateMpiCommunicator(o);
    }
    ASSERT_TRUE(c.ok()) << c.status();
    comm_ = std::move(*c);
  }

  // Device copy of `bytes`.
  Buffer Upload(const std::vector<uint8_t>& bytes) {
    auto b = Buffer::Allocate(*alloc_, bytes.size(), MemoryCategory::kCommBuffers);
    EXPECT_TRUE(b.ok()) << b.status();
    EXPECT_TRUE(CopyBytes(b->data(), Device::Cuda(0), bytes.data(), Device::Cpu(), bytes.size(),
                          stream_.get())
                    .ok());
    return std::move(*b);
  }
  std::vector<uint8_t> Download(const Buffer& b) {
    std::vector<uint8_t> out(b.bytes());
    EXPECT_TRUE(
        CopyBytes(out.data(), Device::Cpu(), b.data(), Device::Cuda(0), b.bytes(), stream_.get())
            .ok());
    EXPECT_TRUE(stream_->Synchronize().ok());
    return out;
  }

  std::unique_ptr<Allocator> alloc_;
  std::unique_ptr<Stream> stream_;
  std::unique_ptr<Communicator> comm_;
};

TEST_P(GpuCommunicatorTest, IsRankZeroOfOneOnTheGpu) {
  EXPECT_EQ(comm_->rank(), 0);
  EXPECT_EQ(comm_->world_size(), 1);
  EXPECT_TRUE(comm_->device() == Device::Cuda(0));
}

TEST_P(GpuCommunicatorTest, EveryCollectiveOfOneRankReturnsItsInput) {
  for (DType dt : {DType::kFloat32, DType::kFloat16, DType::kBFloat16}) {
    for (int64_t count : {1, 7, 1000}) {
      SCOPED_TRACE(std::string(DTypeName(dt)) + " count=" + std::to_string(count));
      std::vector<float> values(count);
      for (int64_t i = 0; i < count; ++i) values[i] = 0.25f * static_cast<float>(i % 11 - 5);
      const std::vector<uint8_t> host = ToBytes(values, dt);
      Buffer in = Upload(host);
      Buffer out = Upload(std::vector<uint8_t>(host.size(), 0));
      for (ReduceOp op : {ReduceOp::kSum, ReduceOp::kAverage}) {
        AllReduceOptions ar;
        ar.send = in.data();
        ar.recv = out.data();
        ar.count = count;
        ar.dtype = dt;
        ar.op = op;
        ar.stream = stream_.get();
        ASSERT_TRUE(Await(comm_->AllReduce(ar), kTimeout).ok());
        EXPECT_EQ(FromBytes(Download(out).data(), count, dt), FromBytes(host.data(), count, dt));
        ReduceScatterOptions rs;
        rs.send = in.data();
        rs.recv = out.data();
        rs.count = count;
        rs.dtype = dt;
        rs.op = op;
        rs.stream = stream_.get();
        ASSERT_TRUE(Await(comm_->ReduceScatter(rs), kTimeout).ok());
        EXPECT_EQ(Download(out), host);
      }
      AllGatherOptions ag;
      ag.send = in.data();
      ag.recv = out.data();
      ag.count = count;
      ag.dtype = dt;
      ag.stream = stream_.get();
      ASSERT_TRUE(Await(comm_->AllGather(ag), kTimeout).ok());
      EXPECT_EQ(Download(out), host);
      BroadcastOptions bc;
      bc.buffer = in.data();
      bc.count = count;
      bc.dtype = dt;
      bc.stream = stream_.get();
      ASSERT_TRUE(Await(comm_->Broadcast(bc), kTimeout).ok());
      EXPECT_EQ(Download(in), host);
    }
  }
  ASSERT_TRUE(Await(comm_->Barrier(), kTimeout).ok());
}

TEST_P(GpuCommunicatorTest, VariableCountCollectivesOfOneRankReturnTheirInput) {
  for (DType dt : {DType::kFloat32, DType::kFloat16, DType::kBFloat16}) {
    for (int64_t count : {1, 7, 1000}) {
      SCOPED_TRACE(std::string(DTypeName(dt)) + " count=" + std::to_string(count));
      std::vector<float> values(count);
      for (int64_t i = 0; i < count; ++i) values[i] = 0.25f * static_cast<float>(i % 11 - 5);
      const std::vector<uint8_t> host = ToBytes(values, dt);
      const std::vector<uint8_t> zeros(host.size(), 0);
      Buffer in = Upload(host);
      Buffer out = Upload(zeros);
      for (ReduceOp op : {ReduceOp::kSum, ReduceOp::kAverage}) {
        ReduceScatterVOptions rs;
        rs.send = in.data();
        rs.recv = out.data();
        rs.counts = {count};
        rs.dtype = dt;
        rs.op = op;
        rs.stream = stream_.get();
        ASSERT_TRUE(Await(comm_->ReduceScatterV(rs), kTimeout).ok());
        EXPECT_EQ(Download(out), host);
        out = Upload(zeros);
      }
      AllGatherVOptions ag;
      ag.send = in.data();
      ag.recv = out.data();
      ag.counts = {count};
      ag.dtype = dt;
      ag.stream = stream_.get();
      ASSERT_TRUE(Await(comm_->AllGatherV(ag), kTimeout).ok());
      EXPECT_EQ(Download(out), host);
      // In place: send is this rank's piece of recv.
      ag.send = in.data();
      ag.recv = in.data();
      ASSERT_TRUE(Await(comm_->AllGatherV(ag), kTimeout).ok());
      EXPECT_EQ(Download(in), host);
    }
  }
  ReduceScatterVOptions rs;
  rs.counts = {0};
  rs.stream = stream_.get();
  ASSERT_TRUE(Await(comm_->ReduceScatterV(rs), kTimeout).ok());
  AllGatherVOptions ag;
  ag.counts = {0};
  ag.stream = stream_.get();
  ASSERT_TRUE(Await(comm_->AllGatherV(ag), kTimeout).ok());
  const TrafficStats t = comm_->traffic();
  EXPECT_EQ(t[Collective::kReduceScatter].calls, 3 * 3 * 2 + 1);
  EXPECT_EQ(t[Collective::kReduceScatter].elements, 2 * (1 + 7 + 1000) * 3);
  EXPECT_EQ(t[Collective::kAllGather].elements, 2 * (1 + 7 + 1000) * 3);
}

// The result is ordered before later work on the caller's stream without
// a host wait.
TEST_P(GpuCommunicatorTest, OrderBeforeMakesAVariableCountResultVisibleOnTheStream) {
  std::vector<float> values(1 << 16);
  for (size_t i = 0; i < values.size(); ++i) values[i] = static_cast<float>(i % 101);
  const std::vector<uint8_t> host = ToBytes(values, DType::kFloat32);
  Buffer in = Upload(host);
  Buffer out = Upload(std::vector<uint8_t>(host.size(), 0));
  ReduceScatterVOptions rs;
  rs.send = in.data();
  rs.recv = out.data();
  rs.counts = {static_cast<int64_t>(values.size())};
  rs.stream = stream_.get();
  auto h = comm_->ReduceScatterV(rs);
  ASSERT_TRUE(h.ok()) << h.status();
  ASSERT_TRUE((*h)->OrderBefore(stream_.get(), kTimeout).ok());
  EXPECT_EQ(Download(out), host);
  ASSERT_TRUE((*h)->Wait(kTimeout).ok());
}

TEST_P(GpuCommunicatorTest, PollAndOrderBeforeCompleteAnInPlaceAllReduce) {
  std::vector<float> values(1 << 16, 1.5f);
  const std::vector<uint8_t> host = ToBytes(values, DType::kFloat32);
  Buffer buf = Upload(host);
  AllReduceOptions ar;
  ar.send = ar.recv = buf.data();
  ar.count = static_cast<int64_t>(values.size());
  ar.stream = stream_.get();
  auto h = comm_->AllReduce(ar);
  ASSERT_TRUE(h.ok()) << h.status();
  const absl::Time deadline = absl::Now() + kTimeout;
  bool done = false;
  while (!done && absl::Now() < deadline) {
    auto p = (*h)->Poll();
    ASSERT_TRUE(p.ok()) << p.status();
    done = *p;
  }
  EXPECT_TRUE(done);
  ASSERT_TRUE((*h)->OrderBefore(stream_.get(), kTimeout).ok());
  EXPECT_EQ(Download(buf), host);
  EXPECT_EQ(comm_->traffic()[Collective::kAllReduce].elements, 2 * (1 << 16));
}

INSTANTIATE_TEST_SUITE_P(Backends, GpuCommunicatorTest,
                         ::testing::Values("nccl", "local", "mpi_staged"),
                         [](const ::testing::TestParamInfo<const char*>& info) {
                           return std::string(info.param);
                         });

TEST(GpuCommunicatorFactoryTest, AutoWithoutLauncherIsLocalAndNcclCanBeAskedFor) {
  auto c = CreateCommunicator(CommunicatorBackend::kAuto, Device::Cuda(0));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ((*c)->backend_name(), "local");
  c = CreateCommunicator(CommunicatorBackend::kNccl, Device::Cuda(0));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ((*c)->backend_name(), "nccl");
}

TEST(GpuCommunicatorFactoryTest, NcclOnAMissingGpuIsFailedPrecondition) {
  NcclCommunicatorOptions o;
  o.device_index = CudaDeviceCount();
  auto c = CreateNcclCommunicator(o);
  EXPECT_EQ(c.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(c.status().message().find("cuda:" + std::to_string(o.device_index)),
            absl::string_view::npos)
      << c.status();
}

}  // namespace
}  // namespace zt
