#ifndef ZEROTRAIN_CORE_CRC32C_H_
#define ZEROTRAIN_CORE_CRC32C_H_

// CRC-32C (Castagnoli; reflected polynomial 0x82F63B78, initial value and
// final xor 0xFFFFFFFF): the checksum of checkpoint ranges and manifests and
// of TensorBoard's TFRecord framing. We carry our own because Debian 12
// packages no crc32c library. Checkpoints checksum gigabytes per save, so it
// runs on the SSE4.2 crc32 instruction when the CPU has it (every x86-64 CPU
// since 2008, ~8 GB/s) and on a byte-at-a-time table (~0.5 GB/s) otherwise;
// both give the same values.

#include <cstddef>
#include <cstdint>

#include "absl/strings/string_view.h"

namespace zt {

// Continues a CRC-32C over `n` bytes: Crc32cExtend(Crc32c(a), b) ==
// Crc32c(a + b).
uint32_t Crc32cExtend(uint32_t crc, const void* data, size_t n);

inline uint32_t Crc32cExtend(uint32_t crc, absl::string_view data) {
  return Crc32cExtend(crc, data.data(), data.size());
}
inline uint32_t Crc32c(const void* data, size_t n) { return Crc32cExtend(0, data, n); }
inline uint32_t Crc32c(absl::string_view data) { return Crc32cExtend(0, data); }

// TFRecord's masked CRC: rotating right by 15 and adding a constant keeps a
// CRC computed over data that itself contains CRCs from being degenerate.
uint32_t MaskCrc32c(uint32_t crc);

// Inverse of MaskCrc32c.
uint32_t UnmaskCrc32c(uint32_t masked);

namespace crc32c_internal {

// The table path alone, whatever the CPU: the reference the hardware path is
// tested against.
uint32_t TableExtend(uint32_t crc, const void* data, size_t n);

// Whether Crc32cExtend takes the hardware path on this CPU.
bool UsesHardware();

}  // namespace crc32c_internal
}  // namespace zt

#endif  // ZEROTRAIN_CORE_CRC32C_H_
