#ifndef ZEROTRAIN_TRAINER_CRC32C_H_
#define ZEROTRAIN_TRAINER_CRC32C_H_

#include <cstdint>

#include "absl/strings/string_view.h"

namespace zt {

// CRC-32C (Castagnoli; reflected polynomial 0x82F63B78, initial value and
// final xor 0xFFFFFFFF), the checksum TFRecord framing uses. We carry our own
// because Debian 12 packages no crc32c library; the event files it guards are
// a few hundred bytes per step, so a byte-at-a-time table is plenty.
uint32_t Crc32c(absl::string_view data);

// Continues a CRC-32C: Crc32cExtend(Crc32c(a), b) == Crc32c(a + b).
uint32_t Crc32cExtend(uint32_t crc, absl::string_view data);

// TFRecord's masked CRC: rotating right by 15 and adding a constant keeps a
// CRC computed over data that itself contains CRCs from being degenerate.
uint32_t MaskCrc32c(uint32_t crc);

// Inverse of MaskCrc32c.
uint32_t UnmaskCrc32c(uint32_t masked);

}  // namespace zt

#endif  // ZEROTRAIN_TRAINER_CRC32C_H_
