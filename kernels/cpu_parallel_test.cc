#include "kernels/cpu_parallel.h"

#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/attention.h"
#include "core/dtype.h"
#include "kernels/layernorm.h"
#include "kernels/matmul.h"
#include "kernels/matmul_testutil.h"
#include "kernels/op_context.h"
#include "kernels/testutil.h"

namespace zt::kernels {
namespace {

using ::zt::kernels::testing::FromBytes;
using ::zt::kernels::testing::RandomFloats;
using ::zt::kernels::testing::RunLinearLayerWithGelu;
using ::zt::kernels::testing::ToBytes;

// Restores the thread count a test changed.
class CpuThreadsTest : public ::testing::Test {
 protected:
  void SetUp() override { saved_ = CpuThreads(); }
  void TearDown() override { SetCpuThreads(saved_); }
  int saved_ = 1;
};

TEST_F(CpuThreadsTest, ChunksCoverTheRangeOnceAtTheGrain) {
  for (int threads : {1, 3}) {
    SetCpuThreads(threads);
    std::mutex mu;
    std::vector<std::pair<int64_t, int64_t>> chunks;
    std::vector<int> hits(103, 0);
    ParallelFor(103, 10, [&](int64_t b, int64_t e) {
      std::lock_guard<std::mutex> lock(mu);
      chunks.emplace_back(b, e);
      for (int64_t i = b; i < e; ++i) ++hits[i];
    });
    const std::set<std::pair<int64_t, int64_t>> got(chunks.begin(), chunks.end());
    std::set<std::pair<int64_t, int64_t>> want;
    for (int64_t b = 0; b < 103; b += 10) want.emplace(b, std::min<int64_t>(b + 10, 103));
    EXPECT_EQ(got, want) << threads << " threads";
    EXPECT_EQ(chunks.size(), want.size()) << threads << " threads";
    for (int64_t i = 0; i < 103; ++i) ASSERT_EQ(hits[i], 1) << "index " << i;
  }
}

// Two chunks that each wait for the other to start can only finish if two
// threads run them at once.
TEST_F(CpuThreadsTest, WorkersRunChunksAlongsideTheCaller) {
  SetCpuThreads(2);
  std::atomic<int> started{0};
  std::mutex mu;
  std::set<std::thread::id> ids;
  bool all_met = true;
  ParallelFor(2, 1, [&](int64_t, int64_t) {
    started.fetch_add(1);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (started.load() < 2 && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::yield();
    }
    std::lock_guard<std::mutex> lock(mu);
    all_met &= started.load() == 2;
    ids.insert(std::this_thread::get_id());
  });
  EXPECT_TRUE(all_met) << "the second chunk never started while the first ran";
  EXPECT_EQ(ids.size(), 2u);
}

TEST_F(CpuThreadsTest, ForkedChildGetsAWorkingPool) {
  SetCpuThreads(2);
  ParallelFor(8, 1, [](int64_t, int64_t) {});
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    std::atomic<int64_t> covered{0};
    ParallelFor(100, 7, [&](int64_t b, int64_t e) { covered.fetch_add(e - b); });
    SetCpuThreads(3);
    ParallelFor(100, 7, [&](int64_t b, int64_t e) { covered.fetch_add(e - b); });
    _exit(covered.load() == 200 && CpuThreads() == 3 ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

TEST_F(CpuThreadsTest, EmptyRangeCallsNothing) {
  int calls = 0;
  ParallelFor(0, 4, [&](int64_t, int64_t) { ++calls; });
  EXPECT_EQ(calls, 0);
}

TEST_F(CpuThreadsTest, NestedCallsRunInline) {
  SetCpuThreads(2);
  std::mutex mu;
  int inner_chunks = 0;
  ParallelFor(4, 1, [&](int64_t, int64_t) {
    ParallelFor(5, 1, [&](int64_t, int64_t) {
      std::lock_guard<std::mutex> lock(mu);
      ++inner_chunks;
    });
  });
  EXPECT_EQ(inner_chunks, 20);
}

TEST_F(CpuThreadsTest, LocalRanksShareTheCoresUnlessOmpNumThreadsIsSet) {
  const char* saved_env = std::getenv("OMP_NUM_THREADS");
  const std::string saved = saved_env != nullptr ? saved_env : "";
  unsetenv("OMP_NUM_THREADS");
  cpu_set_t all;
  ASSERT_EQ(sched_getaffinity(0, sizeof(all), &all), 0);
  const bool bound = CPU_COUNT(&all) < sysconf(_SC_NPROCESSORS_ONLN);
  SetCpuThreads(64);
  ShareCpuThreadsAmongLocalRanks(1);
  EXPECT_EQ(CpuThreads(), 64) << "one local rank keeps what it has";
  if (sysconf(_SC_NPROCESSORS_ONLN) > 1) {
    // A rank the launcher bound to one core keeps its setting.
    cpu_set_t one;
    CPU_ZERO(&one);
    for (int c = 0; c < CPU_SETSIZE; ++c) {
      if (CPU_ISSET(c, &all)) {
        CPU_SET(c, &one);
        break;
      }
    }
    ASSERT_EQ(sched_setaffinity(0, sizeof(one), &one), 0);
    ShareCpuThreadsAmongLocalRanks(2);
    EXPECT_EQ(CpuThreads(), 64) << "a bound rank is left alone";
    ASSERT_EQ(sched_setaffinity(0, sizeof(all), &all), 0);
  }
  // More ranks than cores still leaves each rank one thread.
  ShareCpuThreadsAmongLocalRanks(100000);
  EXPECT_EQ(CpuThreads(), bound ? 64 : 1);
  setenv("OMP_NUM_THREADS", "3", 1);
  SetCpuThreads(3);
  ShareCpuThreadsAmongLocalRanks(100000);
  EXPECT_EQ(CpuThreads(), 3) << "OMP_NUM_THREADS wins";
  if (saved_env != nullptr) {
    setenv("OMP_NUM_THREADS", saved.c_str(), 1);
  } else {
    unsetenv("OMP_NUM_THREADS");
  }
}

// Many short loops from two threads at once, some nested: every index is
// visited exactly once per loop, whichever thread gets the pool.
TEST_F(CpuThreadsTest, ConcurrentAndBackToBackLoopsVisitEveryIndexOnce) {
  SetCpuThreads(3);
  const auto hammer = [](int seed) {
    for (int iter = 0; iter < 2000; ++iter) {
      const int64_t n = 1 + (iter * 7919 + seed) % 300;
      std::vector<std::atomic<int>> hits(n);
      ParallelFor(n, 1 + iter % 5, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) hits[i].fetch_add(1);
        if (iter % 50 == 0) ParallelFor(4, 1, [](int64_t, int64_t) {});
      });
      for (int64_t i = 0; i < n; ++i) {
        if (hits[i].load() != 1) return false;
      }
    }
    return true;
  };
  bool other_ok = false;
  std::thread other([&] { other_ok = hammer(1); });
  const bool main_ok = hammer(2);
  other.join();
  EXPECT_TRUE(main_ok);
  EXPECT_TRUE(other_ok);
}

// More chunks than one pool job holds: the range runs as several jobs, and
// the chunks are still exactly grain-sized.
TEST_F(CpuThreadsTest, HugeRangesKeepTheirChunks) {
  SetCpuThreads(2);
  std::atomic<int64_t> covered{0}, calls{0}, misplaced{0};
  const int64_t n = (int64_t{1} << 21) - 1, grain = 1;
  ParallelFor(n, grain, [&](int64_t b, int64_t e) {
    covered.fetch_add(e - b);
    calls.fetch_add(1);
    if (e - b != grain || b % grain != 0) misplaced.fetch_add(1);
  });
  EXPECT_EQ(covered.load(), n);
  EXPECT_EQ(calls.load(), n);
  EXPECT_EQ(misplaced.load(), 0);
}

// The ops' outputs for one thread count, as raw bytes.
std::vector<std::vector<float>> RunOps() {
  const OpContext ctx = OpContext::Cpu();
  std::vector<std::vector<float>> outs;
  // A linear layer with GELU, forward and backward, M not a multiple of the
  // row grain.
  const int64_t M = 1000, N = 96, K = 80;
  const auto inp = RandomFloats(M * K, 1), weight = RandomFloats(N * K, 2),
             bias = RandomFloats(N, 3);
  const auto dout = RandomFloats(M * N, 4);
  std::vector<float> out(M * N), pre(M * N), dinp(M * K), dweight(N * K, 0.5f), dbias(N, 0.25f);
  EXPECT_TRUE(
      RunLinearLayerWithGelu(ctx, DType::kFloat32, M, N, K,
                             {inp.data(), weight.data(), bias.data(), out.data(), pre.data(),
                              dout.data(), pre.data(), dinp.data(), dweight.data(), dbias.data()})
          .ok());
  outs.insert(outs.end(), {out, pre, dinp, dweight, dbias});

  // The same layer in bf16: widened operands, fp32 staging, one rounding.
  const auto to_bf16 = [](const std::vector<float>& v) { return ToBytes(v, DType::kBFloat16); };
  const auto inp16 = to_bf16(inp), weight16 = to_bf16(weight), bias16 = to_bf16(bias),
             dout16 = to_bf16(dout);
  std::vector<uint8_t> out16(M * N * 2), pre16(M * N * 2), dinp16(M * K * 2),
      dweight16 = to_bf16(std::vector<float>(N * K, 0.5f)),
      dbias16 = to_bf16(std::vector<float>(N, 0.25f));
  EXPECT_TRUE(RunLinearLayerWithGelu(
                  ctx, DType::kBFloat16, M, N, K,
                  {inp16.data(), weight16.data(), bias16.data(), out16.data(), pre16.data(),
                   dout16.data(), pre16.data(), dinp16.data(), dweight16.data(), dbias16.data()})
                  .ok());
  for (const auto* v : {&out16, &pre16, &dinp16, &dweight16, &dbias16}) {
    outs.push_back(FromBytes(v->data(), static_cast<int64_t>(v->size() / 2), DType::kBFloat16));
  }

  // Attention over several query blocks and heads.
  AttentionParams ap;
  ap.B = 3;
  ap.T = 130;
  ap.C = 64;
  ap.NH = 2;
  const auto qkv = RandomFloats(ap.B * ap.T * 3 * ap.C, 5);
  const auto adout = RandomFloats(ap.B * ap.T * ap.C, 6);
  std::vector<float> aout(ap.B * ap.T * ap.C), lse(ap.B * ap.NH * ap.T), dqkv(qkv.size());
  EXPECT_TRUE(AttentionForward(ctx, ap, qkv.data(), aout.data(), lse.data()).ok());
  EXPECT_TRUE(
      AttentionBackward(ctx, ap, adout.data(), qkv.data(), aout.data(), lse.data(), dqkv.data())
          .ok());
  outs.insert(outs.end(), {aout, lse, dqkv});

  // LayerNorm, whose backward sums parameter gradients over rows.
  const int64_t rows = 777, C = 48;
  const auto x = RandomFloats(rows * C, 7), g = RandomFloats(C, 8), beta = RandomFloats(C, 9);
  const auto ldout = RandomFloats(rows * C, 10);
  std::vector<float> y(rows * C), mean(rows), rstd(rows), dx(rows * C, 0.0f), dg(C, 0.0f),
      db(C, 0.0f);
  EXPECT_TRUE(LayerNormForward(ctx, DType::kFloat32, rows, C, x.data(), g.data(), beta.data(),
                               y.data(), mean.data(), rstd.data())
                  .ok());
  EXPECT_TRUE(LayerNormBackward(ctx, DType::kFloat32, rows, C, ldout.data(), x.data(), g.data(),
                                mean.data(), rstd.data(), dx.data(), dg.data(), db.data())
                  .ok());
  outs.insert(outs.end(), {y, mean, rstd, dx, dg, db});
  return outs;
}

// A run resumed with another thread count (OMP_NUM_THREADS, ranks sharing
// the machine) must continue with the same bits.
TEST_F(CpuThreadsTest, OpsGiveTheSameBitsOnOneAndManyThreads) {
  SetCpuThreads(1);
  const auto one = RunOps();
  for (int threads : {2, 5}) {
    SetCpuThreads(threads);
    const auto many = RunOps();
    ASSERT_EQ(one.size(), many.size());
    for (size_t i = 0; i < one.size(); ++i) {
      ASSERT_EQ(one[i].size(), many[i].size());
      EXPECT_EQ(std::memcmp(one[i].data(), many[i].data(), one[i].size() * sizeof(float)), 0)
          << "output " << i << " differs on " << threads << " threads";
    }
  }
}

}  // namespace
}  // namespace zt::kernels
