// Paths that a less trusted party names below a directory (a worker's
// adapter file list, checkpoint directories, a stored record), and how to
// read them without ever leaving that directory.
//
// Two checks, used together (docs/operations.md "What a worker cannot make
// the scheduler read"):
//  - CheckConfinedPath is the syntax rule, applied when a path is reported
//    and again before it is used: a normalised relative path.
//  - OpenBeneath opens the path one component at a time with O_NOFOLLOW, so
//    a symbolic link anywhere below the root, or a directory swapped for
//    one after the check, is refused instead of followed.
//
// Thread-safety: pure functions and a move-only fd owner; safe from any
// thread.
#ifndef FTUNE_COMMON_CONFINED_PATH_H_
#define FTUNE_COMMON_CONFINED_PATH_H_

#include <cstddef>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace ftune {

// Longest confined path and path component accepted (bytes), as Linux's
// PATH_MAX and NAME_MAX.
inline constexpr size_t kMaxConfinedPathBytes = 4096;
inline constexpr size_t kMaxPathComponentBytes = 255;

// OK when `path` is a normalised relative path: 1-4096 bytes, components
// separated by single '/', none of them empty, "." or ".." or longer than
// 255 bytes, no NUL byte, no leading or trailing '/'. Otherwise
// INVALID_ARGUMENT whose message says what is wrong (without the path: the
// caller names the field and quotes the value, see QuoteValue).
absl::Status CheckConfinedPath(absl::string_view path);

// Owns a file descriptor; closes it on destruction. Move-only.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept;
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { Reset(); }

  void Reset();
  // Gives up ownership: the caller closes the returned fd.
  int Release() { return std::exchange(fd_, -1); }
  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

// Opens `root`/`relative` read-only (O_CLOEXEC) as a regular file, walking
// from `root` one component at a time with O_NOFOLLOW. `root` itself may be
// reached through symbolic links (it is the operator's mount); nothing
// below it is. Errors (messages name `relative`, never `root`):
//  - INVALID_ARGUMENT: `relative` fails CheckConfinedPath;
//  - UNAVAILABLE: `root` cannot be opened (storage not mounted or failing);
//  - NOT_FOUND: a component does not exist;
//  - DATA_LOSS: a component is a symbolic link, a directory component is
//    not a directory, or the last one is not a regular file: storage holds
//    something other than what ftune wrote there;
//  - FAILED_PRECONDITION: permission denied (the server's storage set-up);
//  - UNAVAILABLE: any other error (EIO, ESTALE, out of descriptors, ...).
absl::StatusOr<UniqueFd> OpenBeneath(const std::string& root,
                                     absl::string_view relative);

// The typed status of a failed storage call (`err` is its errno), worded
// "<what> <relative>: <strerror>": NOT_FOUND (ENOENT), RESOURCE_EXHAUSTED
// (ENOSPC, EDQUOT), DATA_LOSS (ELOOP, ENOTDIR, EISDIR: not what ftune
// wrote), FAILED_PRECONDITION (EACCES, EPERM, EROFS), UNAVAILABLE otherwise.
absl::Status StorageError(absl::string_view what, absl::string_view relative,
                          int err);

}  // namespace ftune

#endif  // FTUNE_COMMON_CONFINED_PATH_H_
