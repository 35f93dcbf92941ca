#include "trainer/tensorboard_writer.h"

#include <dirent.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "core/crc32c.h"
#include "trainer/tensorboard_event.pb.h"

namespace zt {
namespace {

uint64_t ReadLittleEndian(const std::string& s, size_t pos, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) {
    v |= static_cast<uint64_t>(static_cast<unsigned char>(s[pos + i]))
         << (8 * i);
  }
  return v;
}

// Splits TFRecord framing, checking both CRCs of every record.
std::vector<std::string> ParseRecords(const std::string& bytes) {
  std::vector<std::string> records;
  size_t pos = 0;
  while (pos < bytes.size()) {
    EXPECT_LE(pos + 12, bytes.size()) << "truncated header";
    const uint64_t len = ReadLittleEndian(bytes, pos, 8);
    EXPECT_EQ(ReadLittleEndian(bytes, pos + 8, 4),
              MaskCrc32c(Crc32c(bytes.substr(pos, 8))));
    EXPECT_LE(pos + 12 + len + 4, bytes.size()) << "truncated record";
    const std::string data = bytes.substr(pos + 12, len);
    EXPECT_EQ(ReadLittleEndian(bytes, pos + 12 + len, 4),
              MaskCrc32c(Crc32c(data)));
    records.push_back(data);
    pos += 12 + len + 4;
  }
  return records;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::string> ListDir(const std::string& dir) {
  std::vector<std::string> names;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return names;
  while (dirent* e = readdir(d)) {
    const std::string name = e->d_name;
    if (name != "." && name != "..") names.push_back(name);
  }
  closedir(d);
  return names;
}

std::string TestDir(const std::string& name) {
  return absl::StrCat(testing::TempDir(), "/tb_", name, "_", getpid());
}

TEST(FrameTfRecordTest, LengthAndCrcsFramePayload) {
  const std::string data = "abc";
  const std::string framed = FrameTfRecord(data);
  ASSERT_EQ(framed.size(), 8 + 4 + 3 + 4);
  EXPECT_EQ(framed.substr(0, 8), std::string("\x03\0\0\0\0\0\0\0", 8));
  EXPECT_EQ(ReadLittleEndian(framed, 8, 4),
            MaskCrc32c(Crc32c(framed.substr(0, 8))));
  EXPECT_EQ(framed.substr(12, 3), data);
  EXPECT_EQ(ReadLittleEndian(framed, 15, 4), MaskCrc32c(Crc32c(data)));
}

TEST(TensorBoardWriterTest, CreatesDirsAndNamesFileLikeTensorFlow) {
  const std::string dir = TestDir("names") + "/a/b";
  auto writer = TensorBoardWriter::Open(dir);
  ASSERT_TRUE(writer.ok()) << writer.status();
  const std::vector<std::string> files = ListDir(dir);
  ASSERT_EQ(files.size(), 1u);
  EXPECT_EQ((*writer)->path(), dir + "/" + files[0]);
  EXPECT_TRUE(absl::StartsWith(files[0], "events.out.tfevents.")) << files[0];
  char host[256] = {};
  gethostname(host, sizeof(host) - 1);
  EXPECT_TRUE(absl::StrContains(files[0], absl::StrCat(".", host, ".")))
      << files[0];
}

TEST(TensorBoardWriterTest, FirstRecordIsFileVersionThenScalarsPerStep) {
  const std::string dir = TestDir("records");
  auto writer = TensorBoardWriter::Open(dir);
  ASSERT_TRUE(writer.ok()) << writer.status();
  ASSERT_TRUE((*writer)
                  ->WriteScalars(7, {{"train/loss", 2.5}, {"train/lr", 1e-3}})
                  .ok());
  ASSERT_TRUE((*writer)->WriteScalar(8, "eval/loss", 0.0).ok());

  // Flushed per write: readable while the writer is still open.
  const std::vector<std::string> records =
      ParseRecords(ReadFile((*writer)->path()));
  ASSERT_EQ(records.size(), 3u);
  tensorboard::Event first, second, third;
  ASSERT_TRUE(first.ParseFromString(records[0]));
  EXPECT_EQ(first.file_version(), "brain.Event:2");
  EXPECT_GT(first.wall_time(), 1.6e9);

  ASSERT_TRUE(second.ParseFromString(records[1]));
  EXPECT_EQ(second.step(), 7);
  ASSERT_EQ(second.summary().value_size(), 2);
  EXPECT_EQ(second.summary().value(0).tag(), "train/loss");
  EXPECT_EQ(second.summary().value(0).simple_value(), 2.5f);
  EXPECT_EQ(second.summary().value(1).tag(), "train/lr");
  EXPECT_EQ(second.summary().value(1).simple_value(), 1e-3f);

  ASSERT_TRUE(third.ParseFromString(records[2]));
  EXPECT_EQ(third.step(), 8);
  ASSERT_EQ(third.summary().value_size(), 1);
  EXPECT_EQ(third.summary().value(0).tag(), "eval/loss");
  // A zero still has to be on the wire, or the reader sees no value.
  EXPECT_EQ(third.summary().value(0).value_case(),
            tensorboard::Summary::Value::kSimpleValue);
}

TEST(TensorBoardWriterTest, TwoWritersInOneDirGetDistinctFiles) {
  const std::string dir = TestDir("two");
  auto a = TensorBoardWriter::Open(dir);
  auto b = TensorBoardWriter::Open(dir);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE((*a)->path(), (*b)->path());
  EXPECT_EQ(ListDir(dir).size(), 2u);
}

TEST(TensorBoardWriterTest, FileInPlaceOfDirIsInvalidArgumentNamingPath) {
  const std::string base = TestDir("file");
  ASSERT_TRUE(CreateDirectories(base).ok());
  const std::string file = base + "/not_a_dir";
  std::ofstream(file) << "x";

  auto as_dir = TensorBoardWriter::Open(file);
  EXPECT_EQ(as_dir.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(as_dir.status().message(), file))
      << as_dir.status();

  auto below = TensorBoardWriter::Open(file + "/sub");
  EXPECT_EQ(below.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(below.status().message(), file + "/sub"))
      << below.status();
}

TEST(PathErrorStatusTest, CodesFollowErrno) {
  EXPECT_EQ(PathErrorStatus(EACCES, "p").code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(PathErrorStatus(EROFS, "p").code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(PathErrorStatus(ENOENT, "p").code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(PathErrorStatus(EISDIR, "p").code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(PathErrorStatus(ENOTDIR, "p").code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(PathErrorStatus(0, "p").code(), absl::StatusCode::kUnknown);
  EXPECT_TRUE(absl::StrContains(
      PathErrorStatus(EACCES, "open '/x/y'").message(), "/x/y"));
}

}  // namespace
}  // namespace zt
