#include "trainer/crc32c.h"

#include <string>

#include "gtest/gtest.h"

namespace zt {
namespace {

TEST(Crc32cTest, MatchesStandardCheckValue) {
  // The "check" value of CRC-32C in the catalogue of parametrised CRCs.
  EXPECT_EQ(Crc32c("123456789"), 0xE3069283u);
}

TEST(Crc32cTest, MatchesRfc3720Vectors) {
  // iSCSI (RFC 3720, B.4) test patterns: 32 bytes of zeros, of 0xFF, and
  // an ascending sequence.
  EXPECT_EQ(Crc32c(std::string(32, '\0')), 0x8A9136AAu);
  EXPECT_EQ(Crc32c(std::string(32, '\xff')), 0x62A8AB43u);
  std::string ascending;
  for (int i = 0; i < 32; ++i) ascending.push_back(static_cast<char>(i));
  EXPECT_EQ(Crc32c(ascending), 0x46DD794Eu);
}

TEST(Crc32cTest, EmptyInputIsZero) { EXPECT_EQ(Crc32c(""), 0u); }

TEST(Crc32cTest, ExtendEqualsWholeBuffer) {
  const std::string a = "hello, ";
  const std::string b = "tensorboard";
  EXPECT_EQ(Crc32cExtend(Crc32c(a), b), Crc32c(a + b));
}

TEST(Crc32cTest, MaskFollowsTfRecordFormula) {
  const uint32_t crc = Crc32c("123456789");
  EXPECT_EQ(MaskCrc32c(crc), ((crc >> 15) | (crc << 17)) + 0xa282ead8u);
  EXPECT_NE(MaskCrc32c(crc), crc);
  EXPECT_EQ(UnmaskCrc32c(MaskCrc32c(crc)), crc);
}

}  // namespace
}  // namespace zt
