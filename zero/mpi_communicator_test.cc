// Runs on every rank of an mpirun job (mpirun_test.sh); all ranks run the
// same tests in the same order, so their collectives match.
#include "zero/mpi_communicator.h"

#include <mpi.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "core/dtype.h"
#include "kernels/testutil.h"
#include "zero/communicator.h"

namespace zt {
namespace {

using ::zt::kernels::testing::FromBytes;
using ::zt::kernels::testing::ToBytes;

constexpr absl::Duration kTimeout = absl::Seconds(20);
constexpr DType kDTypes[] = {DType::kFloat32, DType::kFloat16, DType::kBFloat16};
// 7 is divisible by no world size tested; 1000 by some.
constexpr int64_t kCounts[] = {1, 7, 1000};

// Multiples of 0.5 no larger than 12: every partial sum over 4 ranks is
// exact in bf16 (8 significant bits), so sums have one right answer.
float Value(int rank, int64_t i) { return 0.5f * (rank + 1) * static_cast<float>(i % 7 - 3); }

std::string Trace(DType dt, int64_t count) { return absl::StrCat(DTypeName(dt), " count=", count); }

// Per-rank piece sizes for the variable-count collectives at world size n:
// the first n entries of a pattern (repeated if n exceeds it).
const std::vector<int64_t> kCountPatterns[] = {
    {0, 5, 0, 2},     // A ZeRO bucket meets most shards not at all.
    {3, 1, 4, 1},     // Uneven.
    {1000, 0, 0, 0},  // One large piece on the first rank.
    {0, 1000, 7, 1},  // Large and small.
    {7, 7, 7, 7},     // Equal, as in the fixed-count form.
};

std::vector<int64_t> CountsFor(const std::vector<int64_t>& pattern, int n) {
  std::vector<int64_t> counts(n);
  for (int r = 0; r < n; ++r) counts[r] = pattern[r % pattern.size()];
  return counts;
}

// Only the last rank owns anything.
std::vector<int64_t> LastRankOnly(int n, int64_t count) {
  std::vector<int64_t> counts(n, 0);
  counts[n - 1] = count;
  return counts;
}

int64_t Sum(const std::vector<int64_t>& counts, int end) {
  int64_t total = 0;
  for (int r = 0; r < end; ++r) total += counts[r];
  return total;
}

std::string Trace(DType dt, const std::vector<int64_t>& counts) {
  return absl::StrCat(DTypeName(dt), " counts=", absl::StrJoin(counts, ","));
}

class MpiCollectiveTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    MpiCommunicatorOptions o;
    o.host_staged = GetParam();
    auto c = CreateMpiCommunicator(o);
    ASSERT_TRUE(c.ok()) << c.status();
    comm_ = std::move(*c);
    n_ = comm_->world_size();
    r_ = comm_->rank();
  }
  std::unique_ptr<Communicator> comm_;
  int n_ = 0;
  int r_ = 0;
};

TEST_P(MpiCollectiveTest, ReportsRankWorldSizeAndBackend) {
  int world = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  EXPECT_EQ(comm_->world_size(), world);
  int rank = -1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  EXPECT_EQ(comm_->rank(), rank);
  EXPECT_EQ(comm_->backend_name(), GetParam() ? "mpi-staged" : "mpi");
  EXPECT_TRUE(comm_->device().is_cpu());
}

TEST_P(MpiCollectiveTest, AllReduceSumsEveryDtypeAndCount) {
  for (DType dt : kDTypes) {
    for (int64_t count : kCounts) {
      for (bool in_place : {false, true}) {
        SCOPED_TRACE(Trace(dt, count) + (in_place ? " in place" : ""));
        std::vector<float> mine(count), expected(count, 0.0f);
        for (int64_t i = 0; i < count; ++i) {
          mine[i] = Value(r_, i);
          for (int s = 0; s < n_; ++s) expected[i] += Value(s, i);
        }
        std::vector<uint8_t> send = ToBytes(mine, dt);
        std::vector<uint8_t> recv(send.size(), 0xff);
        AllReduceOptions o;
        o.send = send.data();
        o.recv = in_place ? send.data() : recv.data();
        o.count = count;
        o.dtype = dt;
        ASSERT_TRUE(Await(comm_->AllReduce(o), kTimeout).ok());
        EXPECT_EQ(FromBytes(o.recv, count, dt), expected);
      }
    }
  }
}

TEST_P(MpiCollectiveTest, AllReduceAverageDividesTheSumByWorldSize) {
  for (DType dt : kDTypes) {
    SCOPED_TRACE(DTypeName(dt));
    const int64_t count = 7;
    std::vector<float> mine(count), expected(count, 0.0f);
    for (int64_t i = 0; i < count; ++i) {
      mine[i] = Value(r_, i);
      for (int s = 0; s < n_; ++s) expected[i] += Value(s, i);
      expected[i] = RoundTo(dt, expected[i] / static_cast<float>(n_));
    }
    std::vector<uint8_t> buf = ToBytes(mine, dt);
    AllReduceOptions o;
    o.send = o.recv = buf.data();
    o.count = count;
    o.dtype = dt;
    o.op = ReduceOp::kAverage;
    ASSERT_TRUE(Await(comm_->AllReduce(o), kTimeout).ok());
    EXPECT_EQ(FromBytes(buf.data(), count, dt), expected);
  }
}

// Only ranks 0 and 1 contribute non-zeros, so whatever association MPI
// picks, each element is one rounded add of a0 + a1: ties must go to even.
TEST_P(MpiCollectiveTest, SixteenBitSumRoundsEachAddToNearestEven) {
  if (n_ < 2) GTEST_SKIP() << "needs two ranks to add anything";
  for (DType dt : {DType::kFloat16, DType::kBFloat16}) {
    SCOPED_TRACE(DTypeName(dt));
    const float eps = static_cast<float>(DTypeEpsilon(dt));
    const float max = dt == DType::kFloat16 ? 65504.0f : BFloat16BitsToFloat(0x7f7f);
    const std::vector<float> a0 = {1.0f, 1.0f + eps, 1.0f, -1.0f, max};
    const std::vector<float> a1 = {eps / 2, eps / 2, 0.75f * eps, -eps / 2, max};
    const std::vector<float> expected = {1.0f, 1.0f + 2 * eps, 1.0f + eps, -1.0f,
                                         std::numeric_limits<float>::infinity()};
    std::vector<float> mine(a0.size(), 0.0f);
    if (r_ == 0) mine = a0;
    if (r_ == 1) mine = a1;
    std::vector<uint8_t> buf = ToBytes(mine, dt);
    AllReduceOptions o;
    o.send = o.recv = buf.data();
    o.count = static_cast<int64_t>(mine.size());
    o.dtype = dt;
    ASSERT_TRUE(Await(comm_->AllReduce(o), kTimeout).ok());
    EXPECT_EQ(FromBytes(buf.data(), mine.size(), dt), expected);
  }
}

// Inexact 16-bit sums: every rank must hold the same bits (ZeRO replicas
// would drift apart otherwise), every run the same, and the error stays
// within N-1 roundings.
TEST_P(MpiCollectiveTest, SixteenBitSumIsBitwiseIdenticalOnAllRanksAndRuns) {
  for (DType dt : {DType::kFloat16, DType::kBFloat16}) {
    SCOPED_TRACE(DTypeName(dt));
    const int64_t count = 257;
    std::vector<float> mine(count);
    std::vector<double> exact(count, 0.0), magnitude(count, 0.0);
    for (int64_t i = 0; i < count; ++i) {
      for (int s = 0; s < n_; ++s) {
        const float v = RoundTo(dt, std::sin(0.37f * i + 1.3f * s) * (1.0f + 0.01f * s));
        if (s == r_) mine[i] = v;
        exact[i] += v;
        magnitude[i] += std::fabs(v);
      }
    }
    std::vector<uint8_t> first = ToBytes(mine, dt);
    std::vector<uint8_t> second = first;
    for (std::vector<uint8_t>* b : {&first, &second}) {
      AllReduceOptions o;
      o.send = o.recv = b->data();
      o.count = count;
      o.dtype = dt;
      ASSERT_TRUE(Await(comm_->AllReduce(o), kTimeout).ok());
    }
    EXPECT_EQ(first, second);
    const std::vector<float> sum = FromBytes(first.data(), count, dt);
    for (int64_t i = 0; i < count; ++i) {
      EXPECT_LE(std::fabs(sum[i] - exact[i]), (n_ - 1) * DTypeEpsilon(dt) * magnitude[i])
          << "element " << i;
    }
    std::vector<uint8_t> all(first.size() * n_);
    AllGatherOptions g;
    g.send = first.data();
    g.recv = all.data();
    g.count = count;
    g.dtype = dt;
    ASSERT_TRUE(Await(comm_->AllGather(g), kTimeout).ok());
    for (int s = 0; s < n_; ++s) {
      EXPECT_EQ(std::memcmp(all.data() + s * first.size(), first.data(), first.size()), 0)
          << "rank " << s << " holds different bits";
    }
  }
}

TEST_P(MpiCollectiveTest, ReduceScatterGivesEachRankItsReducedChunk) {
  for (DType dt : kDTypes) {
    for (int64_t count : kCounts) {
      for (ReduceOp op : {ReduceOp::kSum, ReduceOp::kAverage}) {
        SCOPED_TRACE(Trace(dt, count) + (op == ReduceOp::kAverage ? " average" : " sum"));
        std::vector<float> mine(count * n_), expected(count, 0.0f);
        for (int64_t j = 0; j < count * n_; ++j) mine[j] = Value(r_, j);
        for (int64_t i = 0; i < count; ++i) {
          for (int s = 0; s < n_; ++s) expected[i] += Value(s, r_ * count + i);
          if (op == ReduceOp::kAverage) {
            expected[i] = RoundTo(dt, expected[i] / static_cast<float>(n_));
          }
        }
        std::vector<uint8_t> send = ToBytes(mine, dt);
        std::vector<uint8_t> recv(count * DTypeSize(dt), 0xff);
        ReduceScatterOptions o;
        o.send = send.data();
        o.recv = recv.data();
        o.count = count;
        o.dtype = dt;
        o.op = op;
        ASSERT_TRUE(Await(comm_->ReduceScatter(o), kTimeout).ok());
        EXPECT_EQ(FromBytes(recv.data(), count, dt), expected);
      }
    }
  }
}

TEST_P(MpiCollectiveTest, AllGatherConcatenatesInRankOrder) {
  for (DType dt : kDTypes) {
    for (int64_t count : kCounts) {
      for (bool in_place : {false, true}) {
        SCOPED_TRACE(Trace(dt, count) + (in_place ? " in place" : ""));
        std::vector<float> mine(count), expected;
        for (int64_t i = 0; i < count; ++i) mine[i] = Value(r_, i);
        for (int s = 0; s < n_; ++s) {
          for (int64_t i = 0; i < count; ++i) expected.push_back(Value(s, i));
        }
        const size_t chunk = count * DTypeSize(dt);
        std::vector<uint8_t> send = ToBytes(mine, dt);
        std::vector<uint8_t> recv(chunk * n_, 0xff);
        AllGatherOptions o;
        o.send = send.data();
        if (in_place) {
          std::memcpy(recv.data() + r_ * chunk, send.data(), chunk);
          o.send = recv.data() + r_ * chunk;
        }
        o.recv = recv.data();
        o.count = count;
        o.dtype = dt;
        ASSERT_TRUE(Await(comm_->AllGather(o), kTimeout).ok());
        EXPECT_EQ(FromBytes(recv.data(), count * n_, dt), expected);
      }
    }
  }
}

TEST_P(MpiCollectiveTest, BroadcastCopiesTheRootsBufferFromEveryRoot) {
  for (DType dt : kDTypes) {
    for (int root = 0; root < n_; ++root) {
      SCOPED_TRACE(Trace(dt, 7) + " root=" + std::to_string(root));
      std::vector<float> mine(7), expected(7);
      for (int64_t i = 0; i < 7; ++i) {
        mine[i] = Value(r_, i);
        expected[i] = Value(root, i);
      }
      std::vector<uint8_t> buf = ToBytes(mine, dt);
      BroadcastOptions o;
      o.buffer = buf.data();
      o.count = 7;
      o.dtype = dt;
      o.root = root;
      ASSERT_TRUE(Await(comm_->Broadcast(o), kTimeout).ok());
      EXPECT_EQ(FromBytes(buf.data(), 7, dt), expected);
    }
  }
}

TEST_P(MpiCollectiveTest, BroadcastRejectsARootOutsideTheWorld) {
  float x = 0;
  BroadcastOptions o;
  o.buffer = &x;
  o.count = 1;
  o.root = n_;
  const absl::Status s = Await(comm_->Broadcast(o), kTimeout);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find(absl::StrCat("root ", n_)), absl::string_view::npos) << s;
}

// The ZeRO paper's per-rank volumes, in elements of the collective.
TEST_P(MpiCollectiveTest, TrafficCountersReportLogicalVolumePerCollective) {
  std::vector<uint8_t> a(14 * 4 * n_), b(14 * 4 * n_);
  AllReduceOptions ar;
  ar.send = ar.recv = a.data();
  ar.count = 7;
  ar.dtype = DType::kFloat16;
  ASSERT_TRUE(Await(comm_->AllReduce(ar), kTimeout).ok());
  ReduceScatterOptions rs;
  rs.send = a.data();
  rs.recv = b.data();
  rs.count = 5;
  rs.dtype = DType::kBFloat16;
  ASSERT_TRUE(Await(comm_->ReduceScatter(rs), kTimeout).ok());
  ASSERT_TRUE(Await(comm_->ReduceScatter(rs), kTimeout).ok());
  AllGatherOptions ag;
  ag.send = a.data();
  ag.recv = b.data();
  ag.count = 3;
  ASSERT_TRUE(Await(comm_->AllGather(ag), kTimeout).ok());
  BroadcastOptions bc;
  bc.buffer = a.data();
  bc.count = 4;
  ASSERT_TRUE(Await(comm_->Broadcast(bc), kTimeout).ok());
  ASSERT_TRUE(Await(comm_->Barrier(), kTimeout).ok());

  const TrafficStats t = comm_->traffic();
  EXPECT_EQ(t[Collective::kAllReduce].calls, 1);
  EXPECT_EQ(t[Collective::kAllReduce].elements, 14);
  EXPECT_EQ(t[Collective::kAllReduce].bytes, 28);
  EXPECT_EQ(t[Collective::kReduceScatter].calls, 2);
  EXPECT_EQ(t[Collective::kReduceScatter].elements, 2 * 5 * n_);
  EXPECT_EQ(t[Collective::kReduceScatter].bytes, 2 * 10 * n_);
  EXPECT_EQ(t[Collective::kAllGather].elements, 3 * n_);
  EXPECT_EQ(t[Collective::kAllGather].bytes, 12 * n_);
  EXPECT_EQ(t[Collective::kBroadcast].elements, 4);
  EXPECT_EQ(t[Collective::kBroadcast].bytes, 16);
  EXPECT_EQ(t[Collective::kBarrier].calls, 1);
  EXPECT_EQ(t[Collective::kBarrier].elements, 0);
  EXPECT_EQ(t.total_elements(), 14 + 10 * n_ + 3 * n_ + 4);
  comm_->ResetTraffic();
  EXPECT_EQ(comm_->traffic().total_elements(), 0);
}

// Every count pattern the engine can produce, plus the last rank alone.
std::vector<std::vector<int64_t>> AllCountCases(int n) {
  std::vector<std::vector<int64_t>> cases;
  for (const std::vector<int64_t>& p : kCountPatterns) cases.push_back(CountsFor(p, n));
  cases.push_back(LastRankOnly(n, 9));
  return cases;
}

TEST_P(MpiCollectiveTest, ReduceScatterVGivesEachRankItsReducedPiece) {
  for (DType dt : kDTypes) {
    for (const std::vector<int64_t>& counts : AllCountCases(n_)) {
      for (ReduceOp op : {ReduceOp::kSum, ReduceOp::kAverage}) {
        SCOPED_TRACE(Trace(dt, counts) + (op == ReduceOp::kAverage ? " average" : " sum"));
        const int64_t total = Sum(counts, n_), offset = Sum(counts, r_), mine = counts[r_];
        std::vector<float> full(total), expected(mine, 0.0f);
        for (int64_t j = 0; j < total; ++j) full[j] = Value(r_, j);
        for (int64_t i = 0; i < mine; ++i) {
          for (int s = 0; s < n_; ++s) expected[i] += Value(s, offset + i);
          if (op == ReduceOp::kAverage) {
            expected[i] = RoundTo(dt, expected[i] / static_cast<float>(n_));
          }
        }
        std::vector<uint8_t> send = ToBytes(full, dt);
        // One spare element on each side catches writes outside the piece.
        const size_t size = DTypeSize(dt);
        std::vector<uint8_t> recv((mine + 2) * size, 0xff);
        ReduceScatterVOptions o;
        o.send = send.data();
        // A rank without a piece has no buffer for it.
        o.recv = mine > 0 ? recv.data() + size : nullptr;
        o.counts = counts;
        o.dtype = dt;
        o.op = op;
        ASSERT_TRUE(Await(comm_->ReduceScatterV(o), kTimeout).ok());
        EXPECT_EQ(FromBytes(recv.data() + size, mine, dt), expected);
        for (size_t b = 0; b < size; ++b) {
          EXPECT_EQ(recv[b], 0xff) << "wrote before the piece";
          EXPECT_EQ(recv[recv.size() - 1 - b], 0xff) << "wrote past the piece";
        }
        EXPECT_EQ(send, ToBytes(full, dt)) << "modified the send buffer";
      }
    }
  }
}

TEST_P(MpiCollectiveTest, AllGatherVConcatenatesPiecesInRankOrder) {
  for (DType dt : kDTypes) {
    for (const std::vector<int64_t>& counts : AllCountCases(n_)) {
      for (bool in_place : {false, true}) {
        SCOPED_TRACE(Trace(dt, counts) + (in_place ? " in place" : ""));
        const int64_t total = Sum(counts, n_), offset = Sum(counts, r_), mine = counts[r_];
        const size_t size = DTypeSize(dt);
        std::vector<float> piece(mine), expected;
        for (int64_t i = 0; i < mine; ++i) piece[i] = Value(r_, offset + i);
        for (int s = 0; s < n_; ++s) {
          for (int64_t i = 0; i < counts[s]; ++i) expected.push_back(Value(s, Sum(counts, s) + i));
        }
        std::vector<uint8_t> send = ToBytes(piece, dt);
        std::vector<uint8_t> recv(total * size, 0xff);
        AllGatherVOptions o;
        o.send = mine > 0 ? send.data() : nullptr;
        if (in_place) {
          std::copy(send.begin(), send.end(), recv.begin() + offset * size);
          o.send = recv.data() + offset * size;
        }
        o.recv = recv.data();
        o.counts = counts;
        o.dtype = dt;
        ASSERT_TRUE(Await(comm_->AllGatherV(o), kTimeout).ok());
        EXPECT_EQ(FromBytes(recv.data(), total, dt), expected);
      }
    }
  }
}

TEST_P(MpiCollectiveTest, AllZeroVariableCountsCompleteOnEveryRank) {
  const std::vector<int64_t> zeros(n_, 0);
  for (int i = 0; i < 3; ++i) {
    ReduceScatterVOptions rs;
    rs.counts = zeros;
    ASSERT_TRUE(Await(comm_->ReduceScatterV(rs), kTimeout).ok());
    AllGatherVOptions ag;
    ag.counts = zeros;
    ASSERT_TRUE(Await(comm_->AllGatherV(ag), kTimeout).ok());
  }
  // The ranks still agree on what comes next.
  float x = static_cast<float>(r_);
  AllReduceOptions ar;
  ar.send = ar.recv = &x;
  ar.count = 1;
  ASSERT_TRUE(Await(comm_->AllReduce(ar), kTimeout).ok());
  EXPECT_EQ(x, n_ * (n_ - 1) / 2.0f);
  EXPECT_EQ(comm_->traffic()[Collective::kReduceScatter].calls, 3);
  EXPECT_EQ(comm_->traffic()[Collective::kAllGather].elements, 0);
}

// Inexact 16-bit sums through the variable-count path: the same bits on
// every run, within N-1 roundings of the exact sum, and after the all-gather
// that ZeRO follows it with, the same bits on every rank.
TEST_P(MpiCollectiveTest, SixteenBitReduceScatterVIsDeterministicAndGathersToIdenticalBits) {
  for (DType dt : {DType::kFloat16, DType::kBFloat16}) {
    for (const std::vector<int64_t>& counts :
         {CountsFor({0, 257, 0, 31}, n_), CountsFor({101, 3, 64, 0}, n_)}) {
      SCOPED_TRACE(Trace(dt, counts));
      const int64_t total = Sum(counts, n_), offset = Sum(counts, r_), mine = counts[r_];
      std::vector<float> full(total);
      std::vector<double> exact(total, 0.0), magnitude(total, 0.0);
      for (int64_t j = 0; j < total; ++j) {
        for (int s = 0; s < n_; ++s) {
          const float v = RoundTo(dt, std::sin(0.37f * j + 1.3f * s) * (1.0f + 0.01f * s));
          if (s == r_) full[j] = v;
          exact[j] += v;
          magnitude[j] += std::fabs(v);
        }
      }
      const std::vector<uint8_t> send = ToBytes(full, dt);
      const size_t size = DTypeSize(dt);
      std::vector<uint8_t> first(total * size, 0), second(mine * size, 0);
      for (void* recv :
           {static_cast<void*>(first.data() + offset * size), static_cast<void*>(second.data())}) {
        ReduceScatterVOptions o;
        o.send = send.data();
        o.recv = recv;
        o.counts = counts;
        o.dtype = dt;
        ASSERT_TRUE(Await(comm_->ReduceScatterV(o), kTimeout).ok());
      }
      EXPECT_EQ(std::memcmp(first.data() + offset * size, second.data(), mine * size), 0)
          << "two runs differ";
      const std::vector<float> sum = FromBytes(first.data() + offset * size, mine, dt);
      for (int64_t i = 0; i < mine; ++i) {
        EXPECT_LE(std::fabs(sum[i] - exact[offset + i]),
                  (n_ - 1) * DTypeEpsilon(dt) * magnitude[offset + i])
            << "element " << offset + i;
      }
      AllGatherVOptions g;
      g.send = first.data() + offset * size;
      g.recv = first.data();
      g.counts = counts;
      g.dtype = dt;
      ASSERT_TRUE(Await(comm_->AllGatherV(g), kTimeout).ok());
      std::vector<uint8_t> everyone(first.size() * n_);
      AllGatherOptions check;
      check.send = first.data();
      check.recv = everyone.data();
      check.count = total;
      check.dtype = dt;
      ASSERT_TRUE(Await(comm_->AllGather(check), kTimeout).ok());
      for (int s = 0; s < n_; ++s) {
        EXPECT_EQ(std::memcmp(everyone.data() + s * first.size(), first.data(), first.size()), 0)
            << "rank " << s << " holds different bits";
      }
    }
  }
}

TEST_P(MpiCollectiveTest, VariableCountTrafficIsTheFullBufferPerCall) {
  const std::vector<int64_t> counts = CountsFor({0, 5, 0, 2}, n_);
  const int64_t total = Sum(counts, n_);
  std::vector<uint8_t> a(total * 4), b(total * 4);
  ReduceScatterVOptions rs;
  rs.send = a.data();
  rs.recv = b.data();
  rs.counts = counts;
  rs.dtype = DType::kBFloat16;
  ASSERT_TRUE(Await(comm_->ReduceScatterV(rs), kTimeout).ok());
  ASSERT_TRUE(Await(comm_->ReduceScatterV(rs), kTimeout).ok());
  AllGatherVOptions ag;
  ag.send = a.data();
  ag.recv = b.data();
  ag.counts = counts;
  ASSERT_TRUE(Await(comm_->AllGatherV(ag), kTimeout).ok());
  const TrafficStats t = comm_->traffic();
  EXPECT_EQ(t[Collective::kReduceScatter].calls, 2);
  EXPECT_EQ(t[Collective::kReduceScatter].elements, 2 * total);
  EXPECT_EQ(t[Collective::kReduceScatter].bytes, 2 * 2 * total);
  EXPECT_EQ(t[Collective::kAllGather].calls, 1);
  EXPECT_EQ(t[Collective::kAllGather].elements, total);
  EXPECT_EQ(t[Collective::kAllGather].bytes, 4 * total);
  EXPECT_EQ(t.total_elements(), 3 * total);
}

TEST_P(MpiCollectiveTest, VariableCountsForAnotherWorldSizeAreInvalidArgument) {
  std::vector<float> a(8), b(8);
  AllGatherVOptions o;
  o.send = a.data();
  o.recv = b.data();
  o.counts = std::vector<int64_t>(n_ + 1, 1);
  const absl::Status s = Await(comm_->AllGatherV(o), kTimeout);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find(absl::StrCat("allgather_v (", n_ + 1, " x fp32) on rank ", r_, " of ",
                                          n_, " (", comm_->backend_name(), "): counts has ", n_ + 1,
                                          " entries, expected one per rank (", n_, ")")),
            absl::string_view::npos)
      << s;
  EXPECT_EQ(comm_->traffic()[Collective::kAllGather].calls, 0);
}

// Two collectives in flight while this rank computes: Poll() alone (no
// Wait) must carry both to completion, so communication overlaps compute.
TEST_P(MpiCollectiveTest, CollectivesInFlightCompleteThroughPollDuringCompute) {
  const int64_t count = 1 << 14;
  std::vector<float> big(count), expected_big(count, 0.0f);
  for (int64_t i = 0; i < count; ++i) {
    big[i] = Value(r_, i);
    for (int s = 0; s < n_; ++s) expected_big[i] += Value(s, i);
  }
  std::vector<float> shards(7 * n_), shard(7), expected_shard(7, 0.0f);
  for (int64_t j = 0; j < 7 * n_; ++j) shards[j] = Value(r_, j);
  for (int64_t i = 0; i < 7; ++i) {
    for (int s = 0; s < n_; ++s) expected_shard[i] += Value(s, r_ * 7 + i);
  }
  AllReduceOptions ar;
  ar.send = ar.recv = big.data();
  ar.count = count;
  auto h1 = comm_->AllReduce(ar);
  ASSERT_TRUE(h1.ok()) << h1.status();
  ReduceScatterOptions rs;
  rs.send = shards.data();
  rs.recv = shard.data();
  rs.count = 7;
  auto h2 = comm_->ReduceScatter(rs);
  ASSERT_TRUE(h2.ok()) << h2.status();

  double work = 0;
  bool done1 = false, done2 = false;
  const absl::Time deadline = absl::Now() + kTimeout;
  while (!(done1 && done2) && absl::Now() < deadline) {
    for (int i = 0; i < 20000; ++i) work += std::sqrt(static_cast<double>(i));
    if (!done1) {
      auto p = (*h1)->Poll();
      ASSERT_TRUE(p.ok()) << p.status();
      done1 = *p;
    }
    if (!done2) {
      auto p = (*h2)->Poll();
      ASSERT_TRUE(p.ok()) << p.status();
      done2 = *p;
    }
  }
  EXPECT_TRUE(done1 && done2) << "Poll did not complete the collectives";
  EXPECT_GT(work, 0);
  // Waited in the opposite order of starting.
  ASSERT_TRUE((*h2)->Wait(absl::ZeroDuration()).ok());
  ASSERT_TRUE((*h1)->Wait(absl::ZeroDuration()).ok());
  EXPECT_EQ(big, expected_big);
  EXPECT_EQ(shard, expected_shard);
}

INSTANTIATE_TEST_SUITE_P(DirectAndHostStaged, MpiCollectiveTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "HostStaged" : "Direct";
                         });

class MpiCommunicatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto c = CreateMpiCommunicator();
    ASSERT_TRUE(c.ok()) << c.status();
    comm_ = std::move(*c);
  }
  std::unique_ptr<Communicator> comm_;
};

TEST_F(MpiCommunicatorTest, BarrierWaitsForTheLastRank) {
  // A first barrier lines the ranks up, so the clock below starts within
  // the barrier's own skew of rank 0's sleep rather than of process start
  // (ranks on 2 oversubscribed cores finish SetUp far apart).
  ASSERT_TRUE(Await(comm_->Barrier(), kTimeout).ok());
  const absl::Time start = absl::Now();
  if (comm_->rank() == 0) absl::SleepFor(absl::Milliseconds(300));
  ASSERT_TRUE(Await(comm_->Barrier(), kTimeout).ok());
  if (comm_->rank() != 0) {
    EXPECT_GE(absl::Now() - start, absl::Milliseconds(200));
  }
}

// The last rank is alive but does not call the collective (a stuck peer)
// until everyone else has seen its Wait time out; then it joins, and the
// timed-out collective can still be waited for and is correct.
TEST_F(MpiCommunicatorTest, StuckPeerMakesWaitTimeOutNamingOperationAndRank) {
  const int n = comm_->world_size(), r = comm_->rank();
  if (n < 2) GTEST_SKIP() << "needs a peer";
  const int stuck = n - 1;
  std::vector<float> buf(7);
  for (int i = 0; i < 7; ++i) buf[i] = Value(r, i);
  AllReduceOptions o;
  o.send = o.recv = buf.data();
  o.count = 7;
  constexpr int kTag = 77;
  if (r != stuck) {
    auto h = comm_->AllReduce(o);
    ASSERT_TRUE(h.ok()) << h.status();
    const absl::Status s = (*h)->Wait(absl::Milliseconds(300));
    EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded) << s;
    EXPECT_NE(s.message().find(absl::StrCat("allreduce (7 x fp32) on rank ", r, " of ", n)),
              absl::string_view::npos)
        << s;
    int token = 1;
    MPI_Send(&token, 1, MPI_INT, stuck, kTag, MPI_COMM_WORLD);
    ASSERT_TRUE((*h)->Wait(kTimeout).ok());
  } else {
    for (int s = 0; s < n - 1; ++s) {
      int token = 0;
      MPI_Recv(&token, 1, MPI_INT, s, kTag, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    }
    ASSERT_TRUE(Await(comm_->AllReduce(o), kTimeout).ok());
  }
  for (int i = 0; i < 7; ++i) {
    float expected = 0;
    for (int s = 0; s < n; ++s) expected += Value(s, i);
    EXPECT_EQ(buf[i], expected);
  }
}

}  // namespace
}  // namespace zt

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  // MPI is initialized by the first communicator and finalized at exit.
  return RUN_ALL_TESTS();
}
