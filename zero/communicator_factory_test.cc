#include "zero/communicator_factory.h"

#include "gtest/gtest.h"

namespace zt {
namespace {

LaunchEnv Mpi(int world, int local) {
  LaunchEnv e;
  e.launcher = Launcher::kMpi;
  e.world_size = world;
  e.local_size = local;
  return e;
}

LaunchEnv Torchrun(int world) {
  LaunchEnv e;
  e.launcher = Launcher::kEnv;
  e.world_size = world;
  e.master_addr = "h";
  e.master_port = 29500;
  return e;
}

CommunicatorBackend Resolve(CommunicatorBackend b, Device d, const LaunchEnv& e, bool cuda,
                            int gpus) {
  auto r = ResolveCommunicatorBackend(b, d, e, cuda, gpus);
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? *r : CommunicatorBackend::kAuto;
}

TEST(CommunicatorFactoryTest, AutoWithoutLauncherIsLocal) {
  EXPECT_EQ(Resolve(CommunicatorBackend::kAuto, Device::Cpu(), LaunchEnv{}, false, 0),
            CommunicatorBackend::kLocal);
  EXPECT_EQ(Resolve(CommunicatorBackend::kAuto, Device::Cuda(0), LaunchEnv{}, true, 1),
            CommunicatorBackend::kLocal);
}

TEST(CommunicatorFactoryTest, AutoUnderMpiOnCpuIsMpi) {
  EXPECT_EQ(Resolve(CommunicatorBackend::kAuto, Device::Cpu(), Mpi(4, 4), true, 8),
            CommunicatorBackend::kMpi);
}

TEST(CommunicatorFactoryTest, AutoUnderMpiWithAGpuPerRankIsNccl) {
  EXPECT_EQ(Resolve(CommunicatorBackend::kAuto, Device::Cuda(1), Mpi(8, 4), true, 4),
            CommunicatorBackend::kNccl);
}

TEST(CommunicatorFactoryTest, AutoUnderMpiWithRanksSharingAGpuIsHostStagedMpi) {
  EXPECT_EQ(Resolve(CommunicatorBackend::kAuto, Device::Cuda(0), Mpi(4, 4), true, 1),
            CommunicatorBackend::kMpi);
}

TEST(CommunicatorFactoryTest, AutoUnderMpiWithoutCudaBuildIsMpi) {
  EXPECT_EQ(Resolve(CommunicatorBackend::kAuto, Device::Cuda(0), Mpi(2, 2), false, 0),
            CommunicatorBackend::kMpi);
}

TEST(CommunicatorFactoryTest, AutoWithTorchrunVariablesOnGpuIsNccl) {
  EXPECT_EQ(Resolve(CommunicatorBackend::kAuto, Device::Cuda(0), Torchrun(2), true, 1),
            CommunicatorBackend::kNccl);
}

TEST(CommunicatorFactoryTest, TorchrunVariablesOnCpuAskForMpirun) {
  auto r =
      ResolveCommunicatorBackend(CommunicatorBackend::kAuto, Device::Cpu(), Torchrun(2), false, 0);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(r.status().message().find("mpirun"), absl::string_view::npos) << r.status();
}

TEST(CommunicatorFactoryTest, NcclNeedsCudaBuildAndCudaDevice) {
  auto r = ResolveCommunicatorBackend(CommunicatorBackend::kNccl, Device::Cuda(0), LaunchEnv{},
                                      false, 0);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(r.status().message().find("--config=cuda"), absl::string_view::npos) << r.status();
  r = ResolveCommunicatorBackend(CommunicatorBackend::kNccl, Device::Cpu(), LaunchEnv{}, true, 1);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(r.status().message().find("CUDA device, not cpu"), absl::string_view::npos)
      << r.status();
}

TEST(CommunicatorFactoryTest, LocalInsideAMultiRankLaunchIsRefused) {
  auto r =
      ResolveCommunicatorBackend(CommunicatorBackend::kLocal, Device::Cpu(), Mpi(2, 2), false, 0);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(CommunicatorFactoryTest, ParsesBackendNames) {
  EXPECT_EQ(*ParseCommunicatorBackend("NCCL"), CommunicatorBackend::kNccl);
  EXPECT_EQ(*ParseCommunicatorBackend("auto"), CommunicatorBackend::kAuto);
  auto r = ParseCommunicatorBackend("gloo");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("\"gloo\""), absl::string_view::npos);
}

// This test runs without mpirun: the trainer's default must need no MPI.
TEST(CommunicatorFactoryTest, CreateAutoOutsideMpirunGivesTheLocalCommunicator) {
  auto c = CreateCommunicator(CommunicatorBackend::kAuto, Device::Cpu());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ((*c)->backend_name(), "local");
  EXPECT_EQ((*c)->world_size(), 1);
}

}  // namespace
}  // namespace zt
