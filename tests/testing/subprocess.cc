#include "tests/testing/subprocess.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

extern char** environ;

namespace ftune::testing {

Subprocess::~Subprocess() {
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    int status;
    ::waitpid(pid_, &status, 0);
  }
  if (stdout_fd_ >= 0) ::close(stdout_fd_);
}

absl::Status Subprocess::Start(const std::vector<std::string>& argv,
                               const std::map<std::string, std::string>& env,
                               const std::string& stderr_path) {
  if (argv.empty()) return absl::InvalidArgumentError("empty argv");
  if (pid_ > 0) return absl::FailedPreconditionError("already started");
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    return absl::InternalError(absl::StrCat("pipe: ", std::strerror(errno)));
  }
  // Build everything the child needs before fork (no allocation after).
  std::map<std::string, std::string> merged;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string kv = *e;
    size_t eq = kv.find('=');
    if (eq != std::string::npos) merged[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  for (const auto& [k, v] : env) merged[k] = v;
  std::vector<std::string> env_strings;
  for (const auto& [k, v] : merged) env_strings.push_back(k + "=" + v);
  std::vector<char*> envp, args;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> argv_copy = argv;
  for (auto& s : argv_copy) args.push_back(s.data());
  args.push_back(nullptr);
  int err_fd = -1;
  if (!stderr_path.empty()) {
    err_fd = ::open(stderr_path.c_str(),
                    O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (err_fd < 0) {
      return absl::InternalError(
          absl::StrCat("open ", stderr_path, ": ", std::strerror(errno)));
    }
  }

  pid_t pid = ::fork();
  if (pid < 0) {
    return absl::InternalError(absl::StrCat("fork: ", std::strerror(errno)));
  }
  if (pid == 0) {
    ::dup2(fds[1], STDOUT_FILENO);
    if (err_fd >= 0) ::dup2(err_fd, STDERR_FILENO);
    // New process group, so a test can signal the child's whole tree.
    ::setpgid(0, 0);
    ::execve(args[0], args.data(), envp.data());
    const char msg[] = "subprocess: exec failed\n";
    ssize_t ignored = ::write(STDERR_FILENO, msg, sizeof(msg) - 1);
    (void)ignored;
    ::_exit(127);
  }
  ::close(fds[1]);
  if (err_fd >= 0) ::close(err_fd);
  stdout_fd_ = fds[0];
  pid_ = pid;
  return absl::OkStatus();
}

absl::StatusOr<bool> Subprocess::ReadMore(absl::Time deadline) {
  if (stdout_fd_ < 0) return false;
  const absl::Duration left = deadline - absl::Now();
  if (left <= absl::ZeroDuration()) {
    return absl::DeadlineExceededError("timed out reading child stdout");
  }
  pollfd p{stdout_fd_, POLLIN, 0};
  int rc = ::poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(left)) + 1);
  if (rc < 0) {
    if (errno == EINTR) return true;
    return absl::InternalError(absl::StrCat("poll: ", std::strerror(errno)));
  }
  if (rc == 0)
    return absl::DeadlineExceededError("timed out reading child stdout");
  char buf[4096];
  ssize_t n = ::read(stdout_fd_, buf, sizeof(buf));
  if (n < 0) {
    if (errno == EINTR) return true;
    return absl::InternalError(absl::StrCat("read: ", std::strerror(errno)));
  }
  if (n == 0) {
    if (!buffer_.empty()) lines_.push_back(std::move(buffer_));
    buffer_.clear();
    ::close(stdout_fd_);
    stdout_fd_ = -1;
    return false;
  }
  buffer_.append(buf, static_cast<size_t>(n));
  size_t nl;
  while ((nl = buffer_.find('\n')) != std::string::npos) {
    lines_.push_back(buffer_.substr(0, nl));
    buffer_.erase(0, nl + 1);
  }
  return true;
}

absl::StatusOr<std::string> Subprocess::ReadLineWithPrefix(
    const std::string& prefix, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    for (; consumed_lines_ < lines_.size(); ++consumed_lines_) {
      if (absl::StartsWith(lines_[consumed_lines_], prefix)) {
        return lines_[consumed_lines_++].substr(prefix.size());
      }
    }
    absl::StatusOr<bool> more = ReadMore(deadline);
    if (!more.ok()) return more.status();
    if (!*more && consumed_lines_ >= lines_.size()) {
      return absl::NotFoundError(absl::StrCat(
          "child stdout closed before a line starting with \"", prefix, "\""));
    }
  }
}

absl::Status Subprocess::ReadAll(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    absl::StatusOr<bool> more = ReadMore(deadline);
    if (!more.ok()) return more.status();
    if (!*more) return absl::OkStatus();
  }
}

absl::Status Subprocess::Signal(int sig) {
  if (pid_ <= 0) return absl::FailedPreconditionError("not running");
  if (::kill(pid_, sig) != 0) {
    return absl::InternalError(absl::StrCat("kill: ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

absl::StatusOr<int> Subprocess::Wait(absl::Duration timeout) {
  if (pid_ <= 0) return absl::FailedPreconditionError("not running");
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    int status = 0;
    pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      pid_ = -1;
      return status;
    }
    if (r < 0 && errno != EINTR) {
      return absl::InternalError(
          absl::StrCat("waitpid: ", std::strerror(errno)));
    }
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError("child did not exit in time");
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
}

}  // namespace ftune::testing
