#include "zero/tcp_rendezvous.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace zt {
namespace {

// A port nobody listens on right now (the kernel's pick for port 0).
int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

TcpRendezvousOptions Options(int port, int rank, int world, absl::Duration timeout) {
  TcpRendezvousOptions o;
  o.master_addr = "localhost";
  o.master_port = port;
  o.rank = rank;
  o.world_size = world;
  o.timeout = timeout;
  return o;
}

TEST(TcpRendezvousTest, EveryRankReceivesRankZerosBytes) {
  const int port = FreePort();
  const int world = 4;
  // Binary payload with a zero byte, like an ncclUniqueId.
  const std::string payload("unique\0id-bytes", 15);
  std::vector<absl::StatusOr<std::string>> results(world, absl::UnknownError("not run"));
  std::vector<std::thread> threads;
  // Peers first: they must retry until rank 0 listens.
  for (int r = world - 1; r >= 0; --r) {
    threads.emplace_back([&, r] {
      results[r] = TcpBroadcastFromRank0(Options(port, r, world, absl::Seconds(10)),
                                         r == 0 ? payload : "ignored");
    });
    if (r == world - 1) absl::SleepFor(absl::Milliseconds(200));
  }
  for (std::thread& t : threads) t.join();
  for (int r = 0; r < world; ++r) {
    ASSERT_TRUE(results[r].ok()) << "rank " << r << ": " << results[r].status();
    EXPECT_EQ(*results[r], payload) << "rank " << r;
  }
}

TEST(TcpRendezvousTest, WorldOfOneNeedsNoNetwork) {
  auto r = TcpBroadcastFromRank0(Options(0, 0, 1, absl::Seconds(1)), "id");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, "id");
}

TEST(TcpRendezvousTest, RankZeroTimesOutNamingTheMissingRanks) {
  const int port = FreePort();
  absl::StatusOr<std::string> peer1 = absl::UnknownError("not run");
  std::thread t([&] { peer1 = TcpBroadcastFromRank0(Options(port, 1, 4, absl::Seconds(10)), ""); });
  const absl::Time start = absl::Now();
  auto r0 = TcpBroadcastFromRank0(Options(port, 0, 4, absl::Milliseconds(500)), "id");
  t.join();
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  EXPECT_EQ(r0.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_NE(r0.status().message().find("heard from 1 of 3 peers"), absl::string_view::npos)
      << r0.status();
  EXPECT_NE(r0.status().message().find("missing ranks: 2, 3"), absl::string_view::npos)
      << r0.status();
  // Rank 1 had joined in time and got the id.
  ASSERT_TRUE(peer1.ok()) << peer1.status();
  EXPECT_EQ(*peer1, "id");
}

TEST(TcpRendezvousTest, PeerTimesOutNamingTheUnreachableAddress) {
  const int port = FreePort();
  const absl::Time start = absl::Now();
  auto r = TcpBroadcastFromRank0(Options(port, 2, 3, absl::Milliseconds(400)), "");
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_NE(
      r.status().message().find(absl::StrCat("rank 2 could not reach rank 0 at localhost:", port)),
      absl::string_view::npos)
      << r.status();
}

TEST(TcpRendezvousTest, DuplicateRankIsInvalidArgument) {
  const int port = FreePort();
  std::vector<std::thread> threads;
  for (int i = 0; i < 2; ++i) {
    threads.emplace_back([&] {
      // Both claim rank 1; at most one is served, the other times out.
      (void)TcpBroadcastFromRank0(Options(port, 1, 3, absl::Seconds(2)), "");
    });
  }
  auto r0 = TcpBroadcastFromRank0(Options(port, 0, 3, absl::Seconds(5)), "id");
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(r0.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r0.status().message().find("two processes claim rank 1"), absl::string_view::npos)
      << r0.status();
}

TEST(TcpRendezvousTest, BadRankIsInvalidArgument) {
  auto r = TcpBroadcastFromRank0(Options(1234, 3, 3, absl::Seconds(1)), "");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace zt
