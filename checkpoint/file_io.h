#ifndef ZEROTRAIN_CHECKPOINT_FILE_IO_H_
#define ZEROTRAIN_CHECKPOINT_FILE_IO_H_

// POSIX file operations for checkpoints, returning absl::Status that names
// the path (kNotFound for a missing file, kResourceExhausted for a full disk,
// kDataLoss for a short read).
//
// Every operation that changes the filesystem (mkdir, create, each write
// call, fsync, rename, unlink, remove) first passes the fault hook, so tests
// can stop a save at any one of them. The hook is configured once per
// process from the environment:
//
//   ZT_CKPT_FAULT=kill@S:K   SIGKILL the process at the K-th operation of
//                            its S-th save (both 1-based); a write is cut in
//                            half first, as a crash mid-write would leave it.
//   ZT_CKPT_FAULT=fail@S:K   that operation fails with ENOSPC instead.
//   ZT_CKPT_FAULT_RANK=R     only in the process the launcher made rank R
//                            (OMPI_COMM_WORLD_RANK, PMI_RANK or RANK).
//   ZT_CKPT_TRACE=FILE       append "S K op path" for every operation.
//
// Unset, the hook costs one relaxed atomic load per operation.

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace zt {
namespace ckpt {

// Marks the start of a save: operations after it count toward save
// `previous + 1`. Called by the checkpoint writer.
void FaultHookBeginSave();

// Largest single write() call: big enough for full disk bandwidth, small
// enough that a kill test has points inside a large section.
inline constexpr size_t kMaxWriteBytes = size_t{64} << 20;

class WritableFile {
 public:
  // Creates (or truncates) `path` for writing.
  static absl::StatusOr<WritableFile> Create(const std::string& path);
  WritableFile(WritableFile&& other) noexcept;
  WritableFile& operator=(WritableFile&& other) noexcept;
  ~WritableFile();

  absl::Status Append(const void* data, size_t n);
  // fsync: the bytes are on disk when it returns.
  absl::Status Sync();
  absl::Status Close();
  int64_t offset() const { return offset_; }
  const std::string& path() const { return path_; }

 private:
  WritableFile(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  std::string path_;
  int fd_ = -1;
  int64_t offset_ = 0;
};

// Create, write, fsync, close.
absl::Status WriteFileDurably(const std::string& path, absl::string_view data);

class RandomAccessFile {
 public:
  // kNotFound naming `path` when it does not exist.
  static absl::StatusOr<RandomAccessFile> Open(const std::string& path);
  RandomAccessFile(RandomAccessFile&& other) noexcept;
  RandomAccessFile& operator=(RandomAccessFile&& other) noexcept;
  ~RandomAccessFile();

  int64_t size() const { return size_; }
  // Exactly `n` bytes at `offset`; kDataLoss naming the file if it ends
  // first.
  absl::Status ReadAt(int64_t offset, size_t n, void* dst) const;
  const std::string& path() const { return path_; }

 private:
  RandomAccessFile(std::string path, int fd, int64_t size)
      : path_(std::move(path)), fd_(fd), size_(size) {}
  std::string path_;
  int fd_ = -1;
  int64_t size_ = 0;
};

absl::StatusOr<std::string> ReadFileToString(const std::string& path);

bool PathExists(const std::string& path);
bool IsDirectory(const std::string& path);
// Entry names of a directory (no "." or ".."), unsorted.
absl::StatusOr<std::vector<std::string>> ListDirectory(const std::string& path);

absl::Status MakeDirectory(const std::string& path);
// mkdir -p (not a hooked operation when everything exists already).
absl::Status MakeDirectories(const std::string& path);
// fsync of a directory: entries created, renamed or removed in it are durable.
absl::Status SyncDirectory(const std::string& path);
absl::Status Rename(const std::string& from, const std::string& to);
// Moves directory `from` to `to` atomically, also when `to` exists (then the
// two are exchanged and the old `to` ends up at `from`; *exchanged tells).
absl::Status RenameDirectoryReplacing(const std::string& from,
                                      const std::string& to, bool* exchanged);
absl::Status Unlink(const std::string& path);
// rm -rf; OK when `path` does not exist.
absl::Status RemoveRecursively(const std::string& path);

std::string JoinPath(absl::string_view a, absl::string_view b);

}  // namespace ckpt
}  // namespace zt

#endif  // ZEROTRAIN_CHECKPOINT_FILE_IO_H_
