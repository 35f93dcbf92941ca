#include "checkpoint/fast_crc32c.h"

#include <chrono>
#include <cstdio>
#include <random>
#include <string>

#include "gtest/gtest.h"
#include "trainer/crc32c.h"

namespace zt {
namespace ckpt {
namespace {

TEST(FastCrc32cTest, MatchesKnownVector) {
  // RFC 3720 B.4: 32 bytes of zeros.
  const std::string zeros(32, '\0');
  EXPECT_EQ(FastCrc32c(zeros.data(), zeros.size()), 0x8A9136AAu);
  EXPECT_EQ(FastCrc32c("123456789", 9), 0xE3069283u);
}

TEST(FastCrc32cTest, MatchesTableImplementationAtEveryAlignmentAndLength) {
  std::mt19937 rng(7);
  std::string data(4096 + 64, '\0');
  for (char& c : data) c = static_cast<char>(rng());
  for (size_t start = 0; start < 16; ++start) {
    for (size_t len : {0, 1, 7, 8, 9, 15, 16, 17, 63, 64, 1000, 4096}) {
      const absl::string_view piece(data.data() + start, len);
      EXPECT_EQ(FastCrc32c(piece.data(), piece.size()), Crc32c(piece))
          << "start " << start << " len " << len;
    }
  }
}

TEST(FastCrc32cTest, ExtendsLikeTheTableImplementation) {
  const std::string a = "sharded checkpoints ", b = "crash-safe";
  EXPECT_EQ(FastCrc32cExtend(FastCrc32c(a.data(), a.size()), b.data(), b.size()),
            Crc32c(a + b));
}

}  // namespace
}  // namespace ckpt
}  // namespace zt
