#include "trainer/tensorboard_writer.h"

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <climits>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "core/status_macros.h"
#include "core/crc32c.h"
#include "trainer/tensorboard_event.pb.h"

namespace zt {
namespace {

void AppendLittleEndian(std::string* out, uint64_t value, int bytes) {
  for (int i = 0; i < bytes; ++i) {
    out->push_back(static_cast<char>((value >> (8 * i)) & 0xFF));
  }
}

std::string HostName() {
  char name[HOST_NAME_MAX + 1] = {};
  if (gethostname(name, sizeof(name)) != 0 || name[0] == '\0') {
    return "localhost";
  }
  name[HOST_NAME_MAX] = '\0';
  return name;
}

double WallTimeSeconds() { return absl::ToUnixMicros(absl::Now()) * 1e-6; }

}  // namespace

std::string FrameTfRecord(absl::string_view data) {
  std::string out;
  out.reserve(data.size() + 16);
  AppendLittleEndian(&out, data.size(), 8);
  AppendLittleEndian(&out, MaskCrc32c(Crc32c(out)), 4);
  out.append(data.data(), data.size());
  AppendLittleEndian(&out, MaskCrc32c(Crc32c(data)), 4);
  return out;
}

absl::Status PathErrorStatus(int error_number, absl::string_view message) {
  if (error_number == 0) {
    // Some stdio failures leave errno unset; never turn one into OK.
    return absl::UnknownError(absl::StrCat(message, ": unknown I/O error"));
  }
  if (error_number == EISDIR || error_number == ENOTDIR) {
    return absl::InvalidArgumentError(
        absl::StrCat(message, ": ", std::strerror(error_number)));
  }
  return absl::ErrnoToStatus(error_number, message);
}

absl::Status CreateDirectories(absl::string_view dir) {
  if (dir.empty()) return absl::InvalidArgumentError("empty directory path");
  std::string path(dir);
  // mkdir each prefix in turn: unlike std::filesystem this keeps errno, so the
  // status code says why (permission, a file in the way, ...).
  for (size_t pos = 1; pos <= path.size(); ++pos) {
    if (pos != path.size() && path[pos] != '/') continue;
    const std::string prefix = path.substr(0, pos);
    if (mkdir(prefix.c_str(), 0777) == 0 || errno == EEXIST) continue;
    return PathErrorStatus(errno, absl::StrCat("cannot create directory '",
                                               prefix, "' for '", path, "'"));
  }
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    return PathErrorStatus(errno, absl::StrCat("cannot stat '", path, "'"));
  }
  if (!S_ISDIR(st.st_mode)) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", path, "' exists and is not a directory"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<TensorBoardWriter>> TensorBoardWriter::Open(
    absl::string_view dir) {
  ZT_RETURN_IF_ERROR(
      Annotate(CreateDirectories(dir), "TensorBoard log directory"));
  static std::atomic<int> counter{0};
  const std::string path = absl::StrCat(
      dir, "/events.out.tfevents.", absl::ToUnixSeconds(absl::Now()), ".",
      HostName(), ".", getpid(), ".", counter.fetch_add(1));
  // "x": never append to (or clobber) another writer's file.
  std::FILE* file = std::fopen(path.c_str(), "wbx");
  if (file == nullptr) {
    return PathErrorStatus(
        errno,
        absl::StrCat("cannot create TensorBoard event file '", path, "'"));
  }
  std::unique_ptr<TensorBoardWriter> writer(new TensorBoardWriter(path, file));
  tensorboard::Event event;
  event.set_wall_time(WallTimeSeconds());
  event.set_file_version("brain.Event:2");
  ZT_RETURN_IF_ERROR(writer->WriteRecord(event.SerializeAsString()));
  return writer;
}

TensorBoardWriter::~TensorBoardWriter() { std::fclose(file_); }

absl::Status TensorBoardWriter::WriteScalars(
    int64_t step, absl::Span<const std::pair<std::string, double>> tag_values) {
  tensorboard::Event event;
  event.set_wall_time(WallTimeSeconds());
  event.set_step(step);
  tensorboard::Summary* summary = event.mutable_summary();
  for (const auto& [tag, value] : tag_values) {
    tensorboard::Summary::Value* v = summary->add_value();
    v->set_tag(tag);
    v->set_simple_value(static_cast<float>(value));
  }
  return WriteRecord(event.SerializeAsString());
}

absl::Status TensorBoardWriter::WriteScalar(int64_t step, absl::string_view tag,
                                            double value) {
  const std::pair<std::string, double> one(std::string(tag), value);
  return WriteScalars(step, absl::MakeConstSpan(&one, 1));
}

absl::Status TensorBoardWriter::WriteRecord(absl::string_view data) {
  const std::string record = FrameTfRecord(data);
  if (std::fwrite(record.data(), 1, record.size(), file_) != record.size() ||
      std::fflush(file_) != 0) {
    return PathErrorStatus(
        errno,
        absl::StrCat("cannot write TensorBoard event file '", path_, "'"));
  }
  return absl::OkStatus();
}

}  // namespace zt
