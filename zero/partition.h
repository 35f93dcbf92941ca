#ifndef ZEROTRAIN_ZERO_PARTITION_H_
#define ZEROTRAIN_ZERO_PARTITION_H_

// How the flat parameter space [0, numel) is split across ranks. The buffer
// is padded at its end to a multiple of world_size, and rank r owns the
// contiguous shard [r * S, (r + 1) * S), S = padded / world_size. Any range
// (a bucket, a ZeRO-3 unit) therefore meets the shards in consecutive,
// rank-ordered pieces, so one variable-count reduce-scatter or all-gather
// moves it: no per-bucket padding and no alignment rules for bucket sizes.

#include <cstdint>
#include <vector>

namespace zt {

struct Range {
  int64_t begin = 0;
  int64_t end = 0;
  int64_t size() const { return end > begin ? end - begin : 0; }
};

class Partition {
 public:
  Partition(int64_t numel, int world_size);

  int64_t numel() const { return numel_; }
  int64_t padded_numel() const { return shard_size_ * world_size_; }
  int64_t shard_size() const { return shard_size_; }
  int world_size() const { return world_size_; }
  // The shard's range in padded space (may extend past numel on the last
  // ranks: that tail is padding).
  Range Shard(int rank) const;
  // Elements of `r` owned by each rank, in rank order (they sum to r.size()).
  std::vector<int64_t> Counts(Range r) const;

 private:
  int64_t numel_;
  int world_size_;
  int64_t shard_size_;
};

// Splits [0, numel) into consecutive buckets of at most `bucket` elements,
// never crossing a boundary listed in `cuts` (e.g. ZeRO-3 unit starts).
std::vector<Range> MakeBuckets(Range all, int64_t bucket, const std::vector<int64_t>& cuts);

}  // namespace zt

#endif  // ZEROTRAIN_ZERO_PARTITION_H_
