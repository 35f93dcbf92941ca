#include "core/crc32c.h"

#include <random>
#include <string>

#include "gtest/gtest.h"

namespace zt {
namespace {

using crc32c_internal::TableExtend;

TEST(Crc32cTest, MatchesStandardCheckValue) {
  // The "check" value of CRC-32C in the catalogue of parametrised CRCs.
  EXPECT_EQ(Crc32c("123456789"), 0xE3069283u);
  EXPECT_EQ(TableExtend(0, "123456789", 9), 0xE3069283u);
}

TEST(Crc32cTest, MatchesRfc3720Vectors) {
  // iSCSI (RFC 3720, B.4) test patterns: 32 bytes of zeros, of 0xFF, and
  // an ascending sequence; on both paths.
  std::string ascending;
  for (int i = 0; i < 32; ++i) ascending.push_back(static_cast<char>(i));
  for (const auto& [data, want] : {std::pair<std::string, uint32_t>{std::string(32, '\0'), 0x8A9136AAu},
                                   {std::string(32, '\xff'), 0x62A8AB43u},
                                   {ascending, 0x46DD794Eu}}) {
    EXPECT_EQ(Crc32c(data), want);
    EXPECT_EQ(TableExtend(0, data.data(), data.size()), want);
  }
}

TEST(Crc32cTest, EmptyInputIsZero) { EXPECT_EQ(Crc32c(""), 0u); }

TEST(Crc32cTest, ExtendEqualsWholeBuffer) {
  const std::string a = "sharded checkpoints ", b = "crash-safe";
  EXPECT_EQ(Crc32cExtend(Crc32c(a), b), Crc32c(a + b));
  EXPECT_EQ(Crc32cExtend(Crc32c(a.data(), a.size()), b.data(), b.size()), Crc32c(a + b));
}

// The hardware path aligns to 8 bytes first and finishes byte by byte:
// every start alignment and length around those boundaries.
TEST(Crc32cTest, HardwareMatchesTableAtEveryAlignmentAndLength) {
  std::mt19937 rng(7);
  std::string data(4096 + 64, '\0');
  for (char& c : data) c = static_cast<char>(rng());
  for (size_t start = 0; start < 16; ++start) {
    for (size_t len : {0, 1, 7, 8, 9, 15, 16, 17, 63, 64, 1000, 4096}) {
      const absl::string_view piece(data.data() + start, len);
      EXPECT_EQ(Crc32c(piece), TableExtend(0, piece.data(), piece.size()))
          << "start " << start << " len " << len;
    }
  }
#if defined(__x86_64__)
  // Every machine this builds on has SSE4.2; without it the comparison above
  // would test the table against itself.
  EXPECT_TRUE(crc32c_internal::UsesHardware());
#endif
}

TEST(Crc32cTest, MaskFollowsTfRecordFormula) {
  const uint32_t crc = Crc32c("123456789");
  EXPECT_EQ(MaskCrc32c(crc), ((crc >> 15) | (crc << 17)) + 0xa282ead8u);
  EXPECT_NE(MaskCrc32c(crc), crc);
  EXPECT_EQ(UnmaskCrc32c(MaskCrc32c(crc)), crc);
}

}  // namespace
}  // namespace zt
