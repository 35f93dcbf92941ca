#include "zero/partition.h"

#include <algorithm>

namespace zt {

Partition::Partition(int64_t numel, int world_size)
    : numel_(numel),
      world_size_(world_size),
      shard_size_((numel + world_size - 1) / world_size) {}

Range Partition::Shard(int rank) const { return {rank * shard_size_, (rank + 1) * shard_size_}; }

std::vector<int64_t> Partition::Counts(Range r) const {
  std::vector<int64_t> counts(world_size_);
  for (int i = 0; i < world_size_; ++i) {
    const Range s = Shard(i);
    counts[i] = std::max<int64_t>(0, std::min(r.end, s.end) - std::max(r.begin, s.begin));
  }
  return counts;
}

std::vector<Range> MakeBuckets(Range all, int64_t bucket, const std::vector<int64_t>& cuts) {
  std::vector<Range> out;
  std::vector<int64_t> c = cuts;
  c.push_back(all.end);
  std::sort(c.begin(), c.end());
  int64_t pos = all.begin;
  for (int64_t cut : c) {
    if (cut <= pos || cut > all.end) continue;
    while (pos < cut) {
      const int64_t end = bucket > 0 ? std::min(cut, pos + bucket) : cut;
      out.push_back({pos, end});
      pos = end;
    }
  }
  return out;
}

}  // namespace zt
