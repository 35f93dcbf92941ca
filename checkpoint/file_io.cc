#include "checkpoint/file_io.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "glog/logging.h"
#include "core/status_macros.h"

namespace zt {
namespace ckpt {
namespace {

absl::Status PosixError(absl::string_view op, absl::string_view path,
                        int err) {
  return absl::ErrnoToStatus(err, absl::StrCat(op, " ", path));
}

// The fault hook (see file_io.h). One per process.
class FaultHook {
 public:
  enum class Action { kNone, kKill, kFail };
  // What to do before the operation.
  struct Verdict {
    Action action = Action::kNone;
  };

  static FaultHook& Get() {
    static FaultHook* hook = new FaultHook();
    return *hook;
  }

  void BeginSave() {
    absl::MutexLock l(&mu_);
    ++save_;
    op_ = 0;
  }

  Verdict Before(absl::string_view op, absl::string_view path) {
    if (!enabled_) return {};
    absl::MutexLock l(&mu_);
    ++op_;
    if (!trace_.empty()) {
      if (FILE* f = std::fopen(trace_.c_str(), "a")) {
        std::fprintf(f, "%d %d %s %s\n", save_, op_, std::string(op).c_str(),
                     std::string(path).c_str());
        std::fclose(f);
      }
    }
    if (action_ != Action::kNone && save_ == fault_save_ && op_ == fault_op_)
      return {action_};
    return {};
  }

 private:
  FaultHook() {
    if (const char* t = std::getenv("ZT_CKPT_TRACE")) trace_ = t;
    if (const char* f = std::getenv("ZT_CKPT_FAULT")) Parse(f);
    if (const char* r = std::getenv("ZT_CKPT_FAULT_RANK")) {
      const char* mine = nullptr;
      for (const char* var : {"OMPI_COMM_WORLD_RANK", "PMI_RANK", "RANK"}) {
        if (mine == nullptr) mine = std::getenv(var);
      }
      if (mine == nullptr || std::string(mine) != r) action_ = Action::kNone;
    }
    enabled_ = !trace_.empty() || action_ != Action::kNone;
  }

  void Parse(absl::string_view spec) {
    // kill@S:K or fail@S:K
    std::vector<absl::string_view> at = absl::StrSplit(spec, '@');
    std::vector<absl::string_view> sk;
    if (at.size() == 2) sk = absl::StrSplit(at[1], ':');
    if (at.size() != 2 || sk.size() != 2 ||
        !absl::SimpleAtoi(sk[0], &fault_save_) ||
        !absl::SimpleAtoi(sk[1], &fault_op_) ||
        (at[0] != "kill" && at[0] != "fail")) {
      LOG(FATAL) << "ZT_CKPT_FAULT=" << spec
                 << ": expected kill@SAVE:OP or fail@SAVE:OP";
    }
    action_ = at[0] == "kill" ? Action::kKill : Action::kFail;
  }

  bool enabled_ = false;
  std::string trace_;
  Action action_ = Action::kNone;
  int fault_save_ = 0;
  int fault_op_ = 0;
  absl::Mutex mu_;
  int save_ = 0;
  int op_ = 0;
};

// Runs the hook for an operation that has no partial form.
absl::Status Hook(absl::string_view op, const std::string& path) {
  const FaultHook::Verdict v = FaultHook::Get().Before(op, path);
  if (v.action == FaultHook::Action::kKill) raise(SIGKILL);
  if (v.action == FaultHook::Action::kFail) {
    return PosixError(absl::StrCat(op, " (injected fault)"), path, ENOSPC);
  }
  return absl::OkStatus();
}

absl::Status WriteAll(int fd, const char* p, size_t n,
                      const std::string& path) {
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return PosixError("write", path, errno);
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
  return absl::OkStatus();
}

}  // namespace

void FaultHookBeginSave() { FaultHook::Get().BeginSave(); }

std::string JoinPath(absl::string_view a, absl::string_view b) {
  if (a.empty()) return std::string(b);
  if (absl::EndsWith(a, "/")) return absl::StrCat(a, b);
  return absl::StrCat(a, "/", b);
}

absl::StatusOr<WritableFile> WritableFile::Create(const std::string& path) {
  ZT_RETURN_IF_ERROR(Hook("create", path));
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
                        0644);
  if (fd < 0) return PosixError("create", path, errno);
  return WritableFile(path, fd);
}

WritableFile::WritableFile(WritableFile&& other) noexcept {
  *this = std::move(other);
}

WritableFile& WritableFile::operator=(WritableFile&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    path_ = std::move(other.path_);
    fd_ = other.fd_;
    offset_ = other.offset_;
    other.fd_ = -1;
  }
  return *this;
}

WritableFile::~WritableFile() {
  if (fd_ >= 0) ::close(fd_);
}

absl::Status WritableFile::Append(const void* data, size_t n) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const size_t chunk = std::min(n, kMaxWriteBytes);
    const FaultHook::Verdict v = FaultHook::Get().Before("write", path_);
    if (v.action == FaultHook::Action::kKill) {
      // A crash in the middle of a write leaves part of it on disk.
      WriteAll(fd_, p, chunk / 2, path_).IgnoreError();
      raise(SIGKILL);
    }
    if (v.action == FaultHook::Action::kFail) {
      return PosixError("write (injected fault)", path_, ENOSPC);
    }
    ZT_RETURN_IF_ERROR(WriteAll(fd_, p, chunk, path_));
    p += chunk;
    n -= chunk;
    offset_ += static_cast<int64_t>(chunk);
  }
  return absl::OkStatus();
}

absl::Status WritableFile::Sync() {
  ZT_RETURN_IF_ERROR(Hook("fsync", path_));
  if (::fsync(fd_) != 0) return PosixError("fsync", path_, errno);
  return absl::OkStatus();
}

absl::Status WritableFile::Close() {
  if (fd_ < 0) return absl::OkStatus();
  const int fd = fd_;
  fd_ = -1;
  // close() can report a deferred write error (NFS); never ignore it.
  if (::close(fd) != 0) return PosixError("close", path_, errno);
  return absl::OkStatus();
}

absl::Status WriteFileDurably(const std::string& path, absl::string_view data) {
  ZT_ASSIGN_OR_RETURN(WritableFile f, WritableFile::Create(path));
  ZT_RETURN_IF_ERROR(f.Append(data.data(), data.size()));
  ZT_RETURN_IF_ERROR(f.Sync());
  return f.Close();
}

absl::StatusOr<RandomAccessFile> RandomAccessFile::Open(
    const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return PosixError("open", path, errno);
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return PosixError("stat", path, err);
  }
  return RandomAccessFile(path, fd, static_cast<int64_t>(st.st_size));
}

RandomAccessFile::RandomAccessFile(RandomAccessFile&& other) noexcept {
  *this = std::move(other);
}

RandomAccessFile& RandomAccessFile::operator=(
    RandomAccessFile&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    path_ = std::move(other.path_);
    fd_ = other.fd_;
    size_ = other.size_;
    other.fd_ = -1;
  }
  return *this;
}

RandomAccessFile::~RandomAccessFile() {
  if (fd_ >= 0) ::close(fd_);
}

absl::Status RandomAccessFile::ReadAt(int64_t offset, size_t n,
                                      void* dst) const {
  char* p = static_cast<char*>(dst);
  const size_t total = n;
  int64_t at = offset;
  while (n > 0) {
    const ssize_t r = ::pread(fd_, p, n, at);
    if (r < 0) {
      if (errno == EINTR) continue;
      return PosixError("read", path_, errno);
    }
    if (r == 0) {
      return absl::DataLossError(absl::StrCat(
          path_, ": truncated: needs bytes up to ",
          offset + static_cast<int64_t>(total), " but the file ends at ", at));
    }
    p += r;
    at += r;
    n -= static_cast<size_t>(r);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadFileToString(const std::string& path) {
  ZT_ASSIGN_OR_RETURN(RandomAccessFile f, RandomAccessFile::Open(path));
  std::string s(static_cast<size_t>(f.size()), '\0');
  ZT_RETURN_IF_ERROR(f.ReadAt(0, s.size(), s.data()));
  return s;
}

bool PathExists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

bool IsDirectory(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

absl::StatusOr<std::vector<std::string>> ListDirectory(
    const std::string& path) {
  DIR* d = ::opendir(path.c_str());
  if (d == nullptr) return PosixError("opendir", path, errno);
  std::vector<std::string> names;
  while (struct dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name != "." && name != "..") names.push_back(name);
  }
  ::closedir(d);
  return names;
}

absl::Status MakeDirectory(const std::string& path) {
  ZT_RETURN_IF_ERROR(Hook("mkdir", path));
  if (::mkdir(path.c_str(), 0755) != 0) return PosixError("mkdir", path, errno);
  return absl::OkStatus();
}

absl::Status MakeDirectories(const std::string& path) {
  if (path.empty() || IsDirectory(path)) return absl::OkStatus();
  const size_t slash = path.find_last_of('/');
  if (slash != std::string::npos && slash > 0) {
    ZT_RETURN_IF_ERROR(MakeDirectories(path.substr(0, slash)));
  }
  ZT_RETURN_IF_ERROR(Hook("mkdir", path));
  if (::mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) {
    return PosixError("mkdir", path, errno);
  }
  return absl::OkStatus();
}

absl::Status SyncDirectory(const std::string& path) {
  ZT_RETURN_IF_ERROR(Hook("fsync_dir", path));
  const int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return PosixError("open", path, errno);
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) return PosixError("fsync", path, err);
  return absl::OkStatus();
}

absl::Status Rename(const std::string& from, const std::string& to) {
  ZT_RETURN_IF_ERROR(Hook("rename", to));
  if (::rename(from.c_str(), to.c_str()) != 0) {
    return PosixError(absl::StrCat("rename ", from, " to"), to, errno);
  }
  return absl::OkStatus();
}

absl::Status RenameDirectoryReplacing(const std::string& from,
                                      const std::string& to, bool* exchanged) {
  *exchanged = false;
  if (!PathExists(to)) return Rename(from, to);
  // A directory of that name exists (a step saved before a crash, or by a
  // run that was later resumed from an earlier step): swap the two in one
  // atomic step so `to` is never missing.
  ZT_RETURN_IF_ERROR(Hook("rename_exchange", to));
  if (::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(),
                  RENAME_EXCHANGE) == 0) {
    *exchanged = true;
    return absl::OkStatus();
  }
  if (errno != EINVAL && errno != ENOSYS && errno != ENOTSUP) {
    return PosixError(absl::StrCat("exchange ", from, " with"), to, errno);
  }
  // A filesystem without RENAME_EXCHANGE (some network filesystems): move
  // the old directory aside first. `to` is briefly missing; a crash right
  // then leaves it at `from` + ".old".
  const std::string aside = from + ".old";
  ZT_RETURN_IF_ERROR(RemoveRecursively(aside));
  ZT_RETURN_IF_ERROR(Rename(to, aside));
  ZT_RETURN_IF_ERROR(Rename(from, to));
  ZT_RETURN_IF_ERROR(Rename(aside, from));
  *exchanged = true;
  return absl::OkStatus();
}

absl::Status Unlink(const std::string& path) {
  ZT_RETURN_IF_ERROR(Hook("unlink", path));
  if (::unlink(path.c_str()) != 0) return PosixError("unlink", path, errno);
  return absl::OkStatus();
}

absl::Status RemoveRecursively(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return absl::OkStatus();
    return PosixError("stat", path, errno);
  }
  ZT_RETURN_IF_ERROR(Hook("remove", path));
  if (!S_ISDIR(st.st_mode)) {
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
      return PosixError("unlink", path, errno);
    }
    return absl::OkStatus();
  }
  std::vector<std::string> stack = {path}, dirs;
  while (!stack.empty()) {
    const std::string dir = stack.back();
    stack.pop_back();
    dirs.push_back(dir);
    ZT_ASSIGN_OR_RETURN(std::vector<std::string> names, ListDirectory(dir));
    for (const std::string& n : names) {
      const std::string p = JoinPath(dir, n);
      if (::lstat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
        stack.push_back(p);
      } else if (::unlink(p.c_str()) != 0 && errno != ENOENT) {
        return PosixError("unlink", p, errno);
      }
    }
  }
  for (auto it = dirs.rbegin(); it != dirs.rend(); ++it) {
    if (::rmdir(it->c_str()) != 0 && errno != ENOENT) {
      return PosixError("rmdir", *it, errno);
    }
  }
  return absl::OkStatus();
}

}  // namespace ckpt
}  // namespace zt
