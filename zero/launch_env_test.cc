#include "zero/launch_env.h"

#include <map>
#include <string>

#include "gtest/gtest.h"

namespace zt {
namespace {

using Env = std::map<std::string, std::string>;

absl::StatusOr<LaunchEnv> Detect(const Env& vars) {
  return DetectLaunchEnv([&vars](const char* name) -> const char* {
    auto it = vars.find(name);
    return it == vars.end() ? nullptr : it->second.c_str();
  });
}

TEST(LaunchEnvTest, NoLauncherIsOneRank) {
  auto e = Detect({});
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->launcher, Launcher::kNone);
  EXPECT_EQ(e->rank, 0);
  EXPECT_EQ(e->world_size, 1);
}

TEST(LaunchEnvTest, ReadsOpenMpiVariables) {
  auto e = Detect({{"OMPI_COMM_WORLD_SIZE", "4"},
                   {"OMPI_COMM_WORLD_RANK", "3"},
                   {"OMPI_COMM_WORLD_LOCAL_SIZE", "2"},
                   {"OMPI_COMM_WORLD_LOCAL_RANK", "1"}});
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->launcher, Launcher::kMpi);
  EXPECT_EQ(e->world_size, 4);
  EXPECT_EQ(e->rank, 3);
  EXPECT_EQ(e->local_size, 2);
  EXPECT_EQ(e->local_rank, 1);
}

TEST(LaunchEnvTest, ReadsPmiVariables) {
  auto e = Detect({{"PMI_SIZE", "8"}, {"PMI_RANK", "5"}});
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->launcher, Launcher::kMpi);
  EXPECT_EQ(e->world_size, 8);
  EXPECT_EQ(e->rank, 5);
}

TEST(LaunchEnvTest, MpiWinsOverTorchrunStyleVariables) {
  auto e = Detect({{"OMPI_COMM_WORLD_SIZE", "2"},
                   {"OMPI_COMM_WORLD_RANK", "1"},
                   {"WORLD_SIZE", "2"},
                   {"RANK", "1"}});
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->launcher, Launcher::kMpi);
}

TEST(LaunchEnvTest, ReadsTorchrunStyleVariables) {
  auto e = Detect({{"WORLD_SIZE", "3"},
                   {"RANK", "2"},
                   {"LOCAL_RANK", "0"},
                   {"LOCAL_WORLD_SIZE", "1"},
                   {"MASTER_ADDR", "node7"},
                   {"MASTER_PORT", "29500"}});
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->launcher, Launcher::kEnv);
  EXPECT_EQ(e->world_size, 3);
  EXPECT_EQ(e->rank, 2);
  EXPECT_EQ(e->master_addr, "node7");
  EXPECT_EQ(e->master_port, 29500);
}

TEST(LaunchEnvTest, RankNotBelowWorldSizeNamesTheVariables) {
  auto e = Detect({{"WORLD_SIZE", "2"}, {"RANK", "2"}, {"MASTER_ADDR", "h"}, {"MASTER_PORT", "1"}});
  EXPECT_EQ(e.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(e.status().message().find("RANK=2 is not below WORLD_SIZE=2"), absl::string_view::npos)
      << e.status();
}

TEST(LaunchEnvTest, MalformedNumberNamesTheVariable) {
  auto e = Detect({{"OMPI_COMM_WORLD_SIZE", "four"}});
  EXPECT_EQ(e.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(e.status().message().find("OMPI_COMM_WORLD_SIZE=\"four\""), absl::string_view::npos)
      << e.status();
}

TEST(LaunchEnvTest, SeveralRanksWithoutMasterAddressAreRejected) {
  auto e = Detect({{"WORLD_SIZE", "2"}, {"RANK", "0"}, {"MASTER_PORT", "29500"}});
  EXPECT_EQ(e.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(e.status().message().find("MASTER_ADDR"), absl::string_view::npos) << e.status();
  e = Detect({{"WORLD_SIZE", "2"}, {"RANK", "0"}, {"MASTER_ADDR", "h"}, {"MASTER_PORT", "0"}});
  EXPECT_EQ(e.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(e.status().message().find("MASTER_PORT"), absl::string_view::npos) << e.status();
}

TEST(LaunchEnvTest, WorldSizeOneNeedsNoMasterAddress) {
  auto e = Detect({{"WORLD_SIZE", "1"}, {"RANK", "0"}});
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->launcher, Launcher::kEnv);
  EXPECT_EQ(e->world_size, 1);
}

}  // namespace
}  // namespace zt
