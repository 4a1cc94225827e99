// A real child process for tests: start one of our binaries, read what it
// prints, signal it, reap it. The child's stdout is a pipe read line by line;
// its stderr goes to a file (or the test's stderr) so logs stay visible.
//
// Not thread-safe: one test thread drives a Subprocess.
#ifndef FTUNE_TESTS_TESTING_SUBPROCESS_H_
#define FTUNE_TESTS_TESTING_SUBPROCESS_H_

#include <sys/types.h>

#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace ftune::testing {

class Subprocess {
 public:
  Subprocess() = default;
  ~Subprocess();  // SIGKILLs and reaps a child still running.
  Subprocess(const Subprocess&) = delete;
  Subprocess& operator=(const Subprocess&) = delete;

  // Starts argv[0] (a path) with argv. `env` entries are added to (or
  // override) the test's environment. `stderr_path` empty: inherit stderr.
  absl::Status Start(const std::vector<std::string>& argv,
                     const std::map<std::string, std::string>& env = {},
                     const std::string& stderr_path = "");

  // Reads stdout lines until one starts with `prefix`; returns the rest of
  // that line. DEADLINE_EXCEEDED after `timeout`, NOT_FOUND if stdout closes.
  absl::StatusOr<std::string> ReadLineWithPrefix(const std::string& prefix,
                                                 absl::Duration timeout);
  // Every stdout line read so far (including ones skipped by the above).
  const std::vector<std::string>& lines() const { return lines_; }
  // Reads stdout to EOF (bounded by `timeout`).
  absl::Status ReadAll(absl::Duration timeout);

  absl::Status Signal(int sig);
  // Waits for exit; returns the raw wait status (use WIFEXITED etc.).
  // DEADLINE_EXCEEDED if it has not exited within `timeout`.
  absl::StatusOr<int> Wait(absl::Duration timeout);
  pid_t pid() const { return pid_; }
  bool running() const { return pid_ > 0; }

 private:
  absl::StatusOr<bool> ReadMore(absl::Time deadline);

  pid_t pid_ = -1;
  int stdout_fd_ = -1;
  std::string buffer_;
  std::vector<std::string> lines_;
  size_t consumed_lines_ = 0;
};

}  // namespace ftune::testing

#endif  // FTUNE_TESTS_TESTING_SUBPROCESS_H_
