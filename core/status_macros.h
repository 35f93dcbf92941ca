#ifndef ZEROTRAIN_CORE_STATUS_MACROS_H_
#define ZEROTRAIN_CORE_STATUS_MACROS_H_

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define ZT_STATUS_CONCAT_INNER_(a, b) a##b
#define ZT_STATUS_CONCAT_(a, b) ZT_STATUS_CONCAT_INNER_(a, b)

// Returns from the enclosing function when `expr` (an absl::Status) is not OK.
#define ZT_RETURN_IF_ERROR(expr)                     \
  do {                                               \
    ::absl::Status zt_status_ = (expr);              \
    if (!zt_status_.ok()) return zt_status_;         \
  } while (false)

// `ZT_ASSIGN_OR_RETURN(auto x, MakeX());` declares/assigns x from a StatusOr
// or returns its error.
#define ZT_ASSIGN_OR_RETURN(lhs, expr) \
  ZT_ASSIGN_OR_RETURN_IMPL_(ZT_STATUS_CONCAT_(zt_statusor_, __LINE__), lhs, expr)

#define ZT_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                              \
  if (!statusor.ok()) return statusor.status();        \
  lhs = std::move(statusor).value()

namespace zt {

// Prefixes an error's message with context, keeping its code.
inline absl::Status Annotate(const absl::Status& s, absl::string_view context) {
  if (s.ok()) return s;
  return absl::Status(s.code(), std::string(context) + ": " + std::string(s.message()));
}

}  // namespace zt

#endif  // ZEROTRAIN_CORE_STATUS_MACROS_H_
