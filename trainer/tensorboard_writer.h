#ifndef ZEROTRAIN_TRAINER_TENSORBOARD_WRITER_H_
#define ZEROTRAIN_TRAINER_TENSORBOARD_WRITER_H_

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace zt {

// Wraps `data` in TFRecord framing: uint64 length (little-endian), uint32
// masked CRC-32C of those 8 bytes, the data, uint32 masked CRC-32C of the
// data.
std::string FrameTfRecord(absl::string_view data);

// Writes TensorBoard scalar summaries to one event file,
// `<dir>/events.out.tfevents.<unix seconds>.<hostname>.<pid>.<n>`, where n
// counts writers opened by this process so two writers never share a file.
// Every write is flushed, so a crashed run keeps all steps written so far and
// a live TensorBoard sees them at once. Not thread-safe.
class TensorBoardWriter {
 public:
  // Creates `dir` (and its parents) if needed, opens a new event file and
  // writes the file_version record. Errors name the path; their code follows
  // errno (kPermissionDenied, kNotFound, kInvalidArgument when a path
  // component is a file, ...).
  static absl::StatusOr<std::unique_ptr<TensorBoardWriter>> Open(
      absl::string_view dir);

  ~TensorBoardWriter();
  TensorBoardWriter(const TensorBoardWriter&) = delete;
  TensorBoardWriter& operator=(const TensorBoardWriter&) = delete;

  // Writes one event at `step` holding a scalar per (tag, value), then
  // flushes. Values are stored as float32, as TensorBoard's simple_value is.
  absl::Status WriteScalars(
      int64_t step,
      absl::Span<const std::pair<std::string, double>> tag_values);
  absl::Status WriteScalar(int64_t step, absl::string_view tag, double value);

  const std::string& path() const { return path_; }

 private:
  TensorBoardWriter(std::string path, std::FILE* file)
      : path_(std::move(path)), file_(file) {}
  absl::Status WriteRecord(absl::string_view data);

  std::string path_;
  std::FILE* file_;
};

// File helpers shared with the metrics logger.

// A Status for a failed file operation: errno decides the code as in
// absl::ErrnoToStatus, except that a path whose components are of the wrong
// kind (EISDIR, ENOTDIR) is a bad configured path, so kInvalidArgument.
absl::Status PathErrorStatus(int error_number, absl::string_view message);

// Creates `dir` and its missing parents; a Status naming `dir` on failure.
absl::Status CreateDirectories(absl::string_view dir);

}  // namespace zt

#endif  // ZEROTRAIN_TRAINER_TENSORBOARD_WRITER_H_
