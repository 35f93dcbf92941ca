#ifndef ZEROTRAIN_CORE_LIBRARY_ERRORS_INTERNAL_H_
#define ZEROTRAIN_CORE_LIBRARY_ERRORS_INTERNAL_H_

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace zt::internal {

inline absl::Status LibraryError(absl::StatusCode code, const char* library, int error,
                                 const char* message, const char* expr, const char* file,
                                 int line) {
  return absl::Status(code, absl::StrCat(library, " error ", error, " (", message, ") in `",
                                         expr, "` at ", file, ":", line));
}

}  // namespace zt::internal

#endif  // ZEROTRAIN_CORE_LIBRARY_ERRORS_INTERNAL_H_
