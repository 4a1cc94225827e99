#include "common/confined_path.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace ftune {

absl::Status CheckConfinedPath(absl::string_view path) {
  if (path.empty()) return absl::InvalidArgumentError("is empty");
  if (path.size() > kMaxConfinedPathBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("is longer than ", kMaxConfinedPathBytes, " bytes"));
  }
  if (path.find('\0') != absl::string_view::npos) {
    return absl::InvalidArgumentError("contains a NUL byte");
  }
  if (path.front() == '/') {
    return absl::InvalidArgumentError(
        "is absolute; it must be relative to its directory");
  }
  for (absl::string_view part : absl::StrSplit(path, '/')) {
    if (part.empty()) {
      return absl::InvalidArgumentError(
          "has an empty component (\"//\" or a trailing \"/\")");
    }
    if (part == "." || part == "..") {
      return absl::InvalidArgumentError(
          absl::StrCat("has a \"", part,
                       "\" component; it must be a normalised path inside "
                       "its directory"));
    }
    if (part.size() > kMaxPathComponentBytes) {
      return absl::InvalidArgumentError(absl::StrCat(
          "has a component longer than ", kMaxPathComponentBytes, " bytes"));
    }
  }
  return absl::OkStatus();
}

UniqueFd& UniqueFd::operator=(UniqueFd&& o) noexcept {
  if (this != &o) {
    Reset();
    fd_ = std::exchange(o.fd_, -1);
  }
  return *this;
}

void UniqueFd::Reset() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

absl::Status StorageError(absl::string_view what, absl::string_view relative,
                          int err) {
  std::string msg = absl::StrCat(what, " ", relative, ": ", std::strerror(err));
  switch (err) {
    case ENOENT:
      return absl::NotFoundError(msg);
    case ENOSPC:
    case EDQUOT:
      return absl::ResourceExhaustedError(msg);
    case ELOOP:
    case ENOTDIR:
    case EISDIR:
      return absl::DataLossError(absl::StrCat(
          msg,
          " (a symbolic link or another kind of file where ftune wrote "
          "a file or directory)"));
    case EACCES:
    case EPERM:
    case EROFS:
      return absl::FailedPreconditionError(msg);
    default:
      return absl::UnavailableError(msg);
  }
}

absl::StatusOr<UniqueFd> OpenBeneath(const std::string& root,
                                     absl::string_view relative) {
  if (absl::Status s = CheckConfinedPath(relative); !s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("path ", relative.substr(0, 256), " ", s.message()));
  }
  UniqueFd dir(::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir.valid()) {
    return absl::UnavailableError(
        absl::StrCat("cannot open the storage root: ", std::strerror(errno)));
  }
  const std::vector<absl::string_view> parts = absl::StrSplit(relative, '/');
  for (size_t i = 0; i < parts.size(); ++i) {
    const bool last = i + 1 == parts.size();
    // O_NONBLOCK: opening a FIFO planted at the end must not hang the call
    // (it is refused below as not a regular file).
    const int flags =
        O_RDONLY | O_NOFOLLOW | O_CLOEXEC | (last ? O_NONBLOCK : O_DIRECTORY);
    UniqueFd next(::openat(dir.get(), std::string(parts[i]).c_str(), flags));
    if (!next.valid()) return StorageError("cannot open", relative, errno);
    dir = std::move(next);
  }
  struct stat st;
  if (::fstat(dir.get(), &st) != 0) {
    return StorageError("cannot stat", relative, errno);
  }
  if (!S_ISREG(st.st_mode)) {
    return absl::DataLossError(absl::StrCat(
        "refusing to read ", relative,
        ": not a regular file (storage holds something other than what "
        "ftune wrote there)"));
  }
  // Reads should block as usual.
  const int fl = ::fcntl(dir.get(), F_GETFL);
  if (fl >= 0) ::fcntl(dir.get(), F_SETFL, fl & ~O_NONBLOCK);
  return dir;
}

}  // namespace ftune
