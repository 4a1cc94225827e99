// Injected filesystem faults, for tests of what a full disk, an I/O error or
// a crash in the middle of a write leaves behind (docs/operations.md,
// "Faults injected into the trainer's writes"). The durable-write helpers of
// common/file_util.h ask Check() before each system call that can fail on a
// real disk; with no rule installed (always, outside tests) it returns 0.
//
// A plan is a comma-separated list of rules OP:SUBSTRING:N=ACTION:
//   OP         create | write | fsync | rename (the system call about to run)
//   SUBSTRING  the rule counts only calls on paths containing it ("" = all;
//              ending in '$': paths ending with it)
//   N          it fires on the N-th counted call (1-based), once
//   ACTION     ENOSPC | EIO | EDQUOT: the call fails with that errno
//              crash: the process is killed (SIGKILL) before the call, as a
//              power cut or an OOM kill would leave it
// e.g. "write:optimizer.safetensors:1=ENOSPC,rename:/adapter$:1=crash".
// `ftune-train` installs the plan in $FTUNE_FS_FAULTS (a bad plan is bad
// input, exit 2).
//
// Thread-safe.
#ifndef FTUNE_COMMON_FS_FAULTS_H_
#define FTUNE_COMMON_FS_FAULTS_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace ftune::fsfault {

enum class Op { kCreate, kWrite, kFsync, kRename };

// Replaces the installed plan. INVALID_ARGUMENT naming the rule and why;
// the plan in place is then left unchanged.
absl::Status Install(absl::string_view plan);
// Removes every rule.
void Clear();
// 0: go on with the call. Otherwise the errno the call must fail with. Does
// not return for a crash rule.
int Check(Op op, absl::string_view path);

}  // namespace ftune::fsfault

#endif  // FTUNE_COMMON_FS_FAULTS_H_
