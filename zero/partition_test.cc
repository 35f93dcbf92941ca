#include "zero/partition.h"

#include <numeric>

#include "gtest/gtest.h"

namespace zt {
namespace {

TEST(PartitionTest, PadsToWorldSizeAndShardsContiguously) {
  Partition p(10, 3);  // 10 -> 12, shards of 4.
  EXPECT_EQ(p.shard_size(), 4);
  EXPECT_EQ(p.padded_numel(), 12);
  EXPECT_EQ(p.Shard(2).begin, 8);
  EXPECT_EQ(p.Shard(2).end, 12);
}

TEST(PartitionTest, CountsSplitAnyRangeInRankOrder) {
  Partition p(10, 3);
  EXPECT_EQ(p.Counts({3, 9}), (std::vector<int64_t>{1, 4, 1}));
  EXPECT_EQ(p.Counts({0, 4}), (std::vector<int64_t>{4, 0, 0}));
  EXPECT_EQ(p.Counts({5, 5}), (std::vector<int64_t>{0, 0, 0}));
  for (int w = 1; w <= 5; ++w) {
    Partition q(97, w);
    for (int64_t a = 0; a < 97; a += 7) {
      auto c = q.Counts({a, 97});
      EXPECT_EQ(std::accumulate(c.begin(), c.end(), int64_t{0}), 97 - a);
    }
  }
}

TEST(PartitionTest, BucketsRespectSizeAndCuts) {
  const auto b = MakeBuckets({0, 25}, 10, {7, 20});
  ASSERT_EQ(b.size(), 4u);
  EXPECT_EQ(b[0].end, 7);
  EXPECT_EQ(b[1].end, 17);
  EXPECT_EQ(b[2].end, 20);
  EXPECT_EQ(b[3].end, 25);
  EXPECT_EQ(MakeBuckets({0, 25}, 0, {}).size(), 1u);
}

}  // namespace
}  // namespace zt
