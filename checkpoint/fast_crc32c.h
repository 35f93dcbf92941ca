#ifndef ZEROTRAIN_CHECKPOINT_FAST_CRC32C_H_
#define ZEROTRAIN_CHECKPOINT_FAST_CRC32C_H_

// The same CRC-32C as trainer/crc32c.h, at memory speed: checkpoints checksum
// gigabytes per save, and a byte-at-a-time table (~0.5 GB/s) would cost more
// than the disk. Uses the SSE4.2 crc32 instruction when the CPU has it (every
// x86-64 CPU since 2008) and falls back to zt::Crc32cExtend otherwise.

#include <cstddef>
#include <cstdint>

namespace zt {
namespace ckpt {

// Continues a CRC-32C over `n` bytes: equal to zt::Crc32cExtend(crc, data).
uint32_t FastCrc32cExtend(uint32_t crc, const void* data, size_t n);

inline uint32_t FastCrc32c(const void* data, size_t n) {
  return FastCrc32cExtend(0, data, n);
}

}  // namespace ckpt
}  // namespace zt

#endif  // ZEROTRAIN_CHECKPOINT_FAST_CRC32C_H_
