#include "checkpoint/file_io.h"

#include <cstdlib>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace zt {
namespace ckpt {
namespace {

std::string TempDir(const std::string& name) {
  const std::string d = JoinPath(std::getenv("TEST_TMPDIR"), name);
  EXPECT_TRUE(RemoveRecursively(d).ok());
  EXPECT_TRUE(MakeDirectories(d).ok());
  return d;
}

TEST(FileIoTest, WritesDurablyAndReadsBack) {
  const std::string d = TempDir("rw");
  const std::string p = JoinPath(d, "f");
  ASSERT_TRUE(WriteFileDurably(p, "hello world").ok());
  auto s = ReadFileToString(p);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(*s, "hello world");
  auto f = RandomAccessFile::Open(p);
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->size(), 11);
  char buf[5];
  ASSERT_TRUE(f->ReadAt(6, 5, buf).ok());
  EXPECT_EQ(std::string(buf, 5), "world");
}

TEST(FileIoTest, ReadPastTheEndIsDataLossNamingTheFile) {
  const std::string d = TempDir("short");
  const std::string p = JoinPath(d, "f");
  ASSERT_TRUE(WriteFileDurably(p, "abc").ok());
  auto f = RandomAccessFile::Open(p);
  ASSERT_TRUE(f.ok());
  char buf[8];
  const absl::Status s = f->ReadAt(1, 8, buf);
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), p)) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "truncated")) << s;
}

TEST(FileIoTest, OpeningAMissingFileIsNotFoundNamingIt) {
  const std::string p = JoinPath(TempDir("missing"), "nope");
  auto f = RandomAccessFile::Open(p);
  EXPECT_EQ(f.status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(absl::StrContains(f.status().message(), p)) << f.status();
}

TEST(FileIoTest, WritingToAFullDeviceIsAnErrorNamingIt) {
  // /dev/full accepts the open and fails every write with ENOSPC.
  auto f = WritableFile::Create("/dev/full");
  ASSERT_TRUE(f.ok()) << f.status();
  const std::string data(1 << 16, 'x');
  absl::Status s = f->Append(data.data(), data.size());
  if (s.ok()) s = f->Sync();
  if (s.ok()) s = f->Close();
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "/dev/full")) << s;
}

TEST(FileIoTest, RenameDirectoryReplacingSwapsAnExistingTarget) {
  const std::string d = TempDir("swap");
  const std::string a = JoinPath(d, "a"), b = JoinPath(d, "b");
  ASSERT_TRUE(MakeDirectory(a).ok());
  ASSERT_TRUE(WriteFileDurably(JoinPath(a, "new"), "1").ok());
  bool exchanged = true;
  ASSERT_TRUE(RenameDirectoryReplacing(a, b, &exchanged).ok());
  EXPECT_FALSE(exchanged);
  EXPECT_TRUE(PathExists(JoinPath(b, "new")));
  EXPECT_FALSE(PathExists(a));

  ASSERT_TRUE(MakeDirectory(a).ok());
  ASSERT_TRUE(WriteFileDurably(JoinPath(a, "newer"), "2").ok());
  ASSERT_TRUE(RenameDirectoryReplacing(a, b, &exchanged).ok());
  EXPECT_TRUE(exchanged);
  EXPECT_TRUE(PathExists(JoinPath(b, "newer")));
  EXPECT_TRUE(PathExists(JoinPath(a, "new")));  // the old one, to delete
}

TEST(FileIoTest, RemoveRecursivelyRemovesTreesAndToleratesMissingPaths) {
  const std::string d = TempDir("rm");
  ASSERT_TRUE(MakeDirectories(JoinPath(d, "x/y/z")).ok());
  ASSERT_TRUE(WriteFileDurably(JoinPath(d, "x/y/f"), "f").ok());
  ASSERT_TRUE(WriteFileDurably(JoinPath(d, "x/y/z/g"), "g").ok());
  ASSERT_TRUE(RemoveRecursively(JoinPath(d, "x")).ok());
  EXPECT_FALSE(PathExists(JoinPath(d, "x")));
  EXPECT_TRUE(RemoveRecursively(JoinPath(d, "x")).ok());
}

}  // namespace
}  // namespace ckpt
}  // namespace zt
