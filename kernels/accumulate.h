#ifndef ZEROTRAIN_KERNELS_ACCUMULATE_H_
#define ZEROTRAIN_KERNELS_ACCUMULATE_H_

// dst[i] = round(dst[i] + src[i]): adds a reduced gradient shard into the
// shard kept across micro-batches (ZeRO-2/3), in the storage dtype.

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/op_context.h"

namespace zt::kernels {

absl::Status Accumulate(const OpContext& ctx, DType dtype, void* dst, const void* src, int64_t n);

#if ZT_WITH_CUDA
absl::Status AccumulateCuda(const OpContext& ctx, DType dtype, void* dst, const void* src,
                            int64_t n);
#endif

}  // namespace zt::kernels

#endif  // ZEROTRAIN_KERNELS_ACCUMULATE_H_
