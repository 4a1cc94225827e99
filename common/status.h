// Status helpers that Debian 12's Abseil (20220623) lacks.
//
// FTUNE_RETURN_IF_ERROR(expr): evaluates `expr` (an absl::Status or
// absl::StatusOr<T>) once and returns its status from the enclosing function
// if it is not OK.
// FTUNE_ASSIGN_OR_RETURN(lhs, expr): evaluates `expr` (an absl::StatusOr<T>),
// returns its status if not OK, else move-assigns the value to `lhs`, which
// may be a declaration (`auto x`) or an existing lvalue.
//
// Thread-safe: these are plain macros over values.
#ifndef FTUNE_COMMON_STATUS_H_
#define FTUNE_COMMON_STATUS_H_

#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace ftune {
namespace internal {

inline const absl::Status& ToStatus(const absl::Status& s) { return s; }
template <typename T>
const absl::Status& ToStatus(const absl::StatusOr<T>& s) {
  return s.status();
}

}  // namespace internal

// Returns `status` with `context + ": "` prepended to its message; OK stays OK.
// The code is kept, so callers can still branch on it.
inline absl::Status Annotate(const absl::Status& status,
                             absl::string_view context) {
  if (status.ok()) return status;
  absl::Status out(status.code(),
                   absl::StrCat(context, ": ", status.message()));
  // Payloads (e.g. file_util's storage mark) travel with the error.
  status.ForEachPayload([&out](absl::string_view url, const absl::Cord& p) {
    out.SetPayload(url, p);
  });
  return out;
}

}  // namespace ftune

#define FTUNE_STATUS_CONCAT_INNER_(a, b) a##b
#define FTUNE_STATUS_CONCAT_(a, b) FTUNE_STATUS_CONCAT_INNER_(a, b)

#define FTUNE_RETURN_IF_ERROR(expr)                             \
  do {                                                          \
    const auto& ftune_status_ref_ = (expr);                     \
    if (!::ftune::internal::ToStatus(ftune_status_ref_).ok()) { \
      return ::ftune::internal::ToStatus(ftune_status_ref_);    \
    }                                                           \
  } while (false)

#define FTUNE_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                 \
  if (!tmp.ok()) return std::move(tmp).status();     \
  lhs = std::move(tmp).value()

#define FTUNE_ASSIGN_OR_RETURN(lhs, expr) \
  FTUNE_ASSIGN_OR_RETURN_IMPL_(           \
      FTUNE_STATUS_CONCAT_(ftune_statusor_, __LINE__), lhs, expr)

#endif  // FTUNE_COMMON_STATUS_H_
