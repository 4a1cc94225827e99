// Filesystem helpers with explicit durability. Everything that other hosts
// read from shared storage is published with these, so a reader sees either
// nothing or the complete, fsynced object.
//
// All functions are thread-safe (they touch only the paths they are given).
// Errors: NOT_FOUND for a missing path, ALREADY_EXISTS where a target must not
// exist, RESOURCE_EXHAUSTED for a full disk or quota (ENOSPC, EDQUOT),
// INTERNAL with the path and strerror otherwise. Every error from a system
// call carries IsStorageError's mark, so a caller that maps
// RESOURCE_EXHAUSTED to "out of memory" can tell a full disk apart.
//
// Tests inject faults into these calls (common/fs_faults.h).
#ifndef FTUNE_COMMON_FILE_UTIL_H_
#define FTUNE_COMMON_FILE_UTIL_H_

#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace ftune {

absl::StatusOr<std::string> ReadFile(const std::string& path);

// True for an error of a file system call made by these helpers (kept
// through common/status.h's Annotate).
bool IsStorageError(const absl::Status& status);

// Creates `path` and missing parents (mode 0755). OK if it already exists.
absl::Status MakeDirs(const std::string& path);

// Writes `contents` to a temp file beside `path`, fsyncs it, renames it over
// `path` and fsyncs the directory. Readers see the old or the new file.
absl::Status WriteFileAtomically(const std::string& path,
                                 absl::string_view contents);

// fsyncs a file or directory.
absl::Status FsyncPath(const std::string& path);

// Publishes a fully written directory: fsyncs every file in `staging_dir`
// and the directory itself, renames it to `final_dir` (which must not exist:
// ALREADY_EXISTS otherwise, so a result is published at most once), then
// fsyncs the parent of `final_dir`. Both must be on the same filesystem.
absl::Status PublishDirectory(const std::string& staging_dir,
                              const std::string& final_dir);

// Removes `path` and everything below it. OK if it does not exist.
absl::Status RemoveAll(const std::string& path);

// Removes what crashed writers left in `dir`: the entries whose names start
// with `prefix` and contain ".tmp-" (the staging names of
// WriteFileAtomically and of the trainer's publishers). OK if `dir` does not
// exist. Only for a directory that one writer owns at a time.
absl::Status RemoveStagingLeftovers(const std::string& dir,
                                    absl::string_view prefix);
// The same for the staging directories of PublishDirectory(..., final_dir)
// by that naming: "<final_dir>.tmp-*".
absl::Status RemovePublishLeftovers(const std::string& final_dir);

// Joins path components with single '/'.
std::string JoinPath(absl::string_view a, absl::string_view b);

}  // namespace ftune

#endif  // FTUNE_COMMON_FILE_UTIL_H_
