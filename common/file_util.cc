#include "common/file_util.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "absl/strings/cord.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/fs_faults.h"
#include "common/ids.h"
#include "common/status.h"

namespace ftune {
namespace {

constexpr absl::string_view kStoragePayload = "ftune.dev/storage-error";

absl::Status ErrnoError(absl::string_view what, const std::string& path,
                        int err) {
  std::string msg = absl::StrCat(what, " ", path, ": ", std::strerror(err));
  absl::Status st;
  if (err == ENOENT) {
    st = absl::NotFoundError(msg);
  } else if (err == EEXIST || err == ENOTEMPTY) {
    st = absl::AlreadyExistsError(msg);
  } else if (err == ENOSPC || err == EDQUOT) {
    st = absl::ResourceExhaustedError(msg);
  } else {
    st = absl::InternalError(msg);
  }
  st.SetPayload(kStoragePayload, absl::Cord(what));
  return st;
}

// Runs the system call `call` (returning -1 and errno on failure) unless an
// injected fault (common/fs_faults.h) stands in for it: then -1 with that
// errno.
template <typename F>
auto Faulted(fsfault::Op op, const std::string& path, F call) {
  if (int err = fsfault::Check(op, path); err != 0) {
    errno = err;
    return decltype(call())(-1);
  }
  return call();
}

std::string Dirname(const std::string& path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

absl::Status WriteAll(int fd, absl::string_view data, const std::string& path) {
  while (!data.empty()) {
    ssize_t n = Faulted(fsfault::Op::kWrite, path,
                        [&] { return ::write(fd, data.data(), data.size()); });
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError("write", path, errno);
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

absl::Status FsyncTree(const std::string& dir) {
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(dir, ec);
       !ec && it != std::filesystem::recursive_directory_iterator();
       it.increment(ec)) {
    if (it->is_regular_file() || it->is_directory()) {
      FTUNE_RETURN_IF_ERROR(FsyncPath(it->path().string()));
    }
  }
  if (ec)
    return absl::InternalError(absl::StrCat("walk ", dir, ": ", ec.message()));
  return FsyncPath(dir);
}

}  // namespace

bool IsStorageError(const absl::Status& status) {
  return status.GetPayload(kStoragePayload).has_value();
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return ErrnoError("open", path, errno);
  std::ostringstream out;
  out << in.rdbuf();
  if (in.bad()) return absl::InternalError(absl::StrCat("read ", path));
  return out.str();
}

absl::Status MakeDirs(const std::string& path) {
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  if (ec) {
    return absl::InternalError(
        absl::StrCat("create directory ", path, ": ", ec.message()));
  }
  return absl::OkStatus();
}

absl::Status FsyncPath(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoError("open", path, errno);
  int rc = Faulted(fsfault::Op::kFsync, path, [&] { return ::fsync(fd); });
  int err = errno;
  ::close(fd);
  if (rc != 0) return ErrnoError("fsync", path, err);
  return absl::OkStatus();
}

absl::Status WriteFileAtomically(const std::string& path,
                                 absl::string_view contents) {
  const std::string tmp = absl::StrCat(path, ".tmp-", NewId("w"));
  int fd = Faulted(fsfault::Op::kCreate, tmp, [&] {
    return ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  });
  if (fd < 0) return ErrnoError("create", tmp, errno);
  absl::Status st = WriteAll(fd, contents, tmp);
  if (st.ok() &&
      Faulted(fsfault::Op::kFsync, tmp, [&] { return ::fsync(fd); }) != 0) {
    st = ErrnoError("fsync", tmp, errno);
  }
  ::close(fd);
  if (st.ok() && Faulted(fsfault::Op::kRename, path, [&] {
                   return ::rename(tmp.c_str(), path.c_str());
                 }) != 0) {
    st = ErrnoError("rename to", path, errno);
  }
  if (!st.ok()) {
    ::unlink(tmp.c_str());
    return st;
  }
  return FsyncPath(Dirname(path));
}

absl::Status PublishDirectory(const std::string& staging_dir,
                              const std::string& final_dir) {
  FTUNE_RETURN_IF_ERROR(FsyncTree(staging_dir));
  struct stat st;
  if (::stat(final_dir.c_str(), &st) == 0) {
    return absl::AlreadyExistsError(
        absl::StrCat("publish target already exists: ", final_dir));
  }
  // rename(2) onto an existing non-empty directory fails (ENOTEMPTY), so a
  // concurrent publisher that wins the race makes this one fail cleanly.
  if (Faulted(fsfault::Op::kRename, final_dir, [&] {
        return ::rename(staging_dir.c_str(), final_dir.c_str());
      }) != 0) {
    return ErrnoError("rename to", final_dir, errno);
  }
  return FsyncPath(Dirname(final_dir));
}

absl::Status RemoveAll(const std::string& path) {
  std::error_code ec;
  std::filesystem::remove_all(path, ec);
  if (ec) {
    return absl::InternalError(
        absl::StrCat("remove ", path, ": ", ec.message()));
  }
  return absl::OkStatus();
}

absl::Status RemoveStagingLeftovers(const std::string& dir,
                                    absl::string_view prefix) {
  std::error_code ec;
  std::vector<std::string> stale;
  for (auto it = std::filesystem::directory_iterator(dir, ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (absl::StartsWith(name, prefix) && absl::StrContains(name, ".tmp-")) {
      stale.push_back(it->path().string());
    }
  }
  if (ec && ec != std::errc::no_such_file_or_directory) {
    return absl::InternalError(absl::StrCat("list ", dir, ": ", ec.message()));
  }
  for (const std::string& path : stale) FTUNE_RETURN_IF_ERROR(RemoveAll(path));
  return absl::OkStatus();
}

absl::Status RemovePublishLeftovers(const std::string& final_dir) {
  const size_t slash = final_dir.find_last_of('/');
  const std::string base =
      slash == std::string::npos ? final_dir : final_dir.substr(slash + 1);
  return RemoveStagingLeftovers(Dirname(final_dir), base + ".tmp-");
}

std::string JoinPath(absl::string_view a, absl::string_view b) {
  if (a.empty()) return std::string(b);
  if (b.empty()) return std::string(a);
  const bool a_slash = a.back() == '/';
  const bool b_slash = b.front() == '/';
  if (a_slash && b_slash) return absl::StrCat(a, b.substr(1));
  if (a_slash || b_slash) return absl::StrCat(a, b);
  return absl::StrCat(a, "/", b);
}

}  // namespace ftune
