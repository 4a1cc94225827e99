#include "worker/agent/trainer_process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/logging.h"

extern char** environ;

namespace ftune::agent {

std::string TrainerExit::Describe() const {
  if (signal != 0) {
    return absl::StrCat("killed by signal ", signal, " (", strsignal(signal),
                        ")", stop_requested ? " after a stop request" : "");
  }
  return absl::StrCat("exited with code ", exit_code);
}

TrainerExit ClassifyExit(int wait_status, bool stop_requested) {
  TrainerExit out;
  out.stop_requested = stop_requested;
  if (WIFSIGNALED(wait_status)) {
    out.signal = WTERMSIG(wait_status);
    // Killed after a stop request: the grace period ran out. Any checkpoint
    // taken before is still valid, so this is a stop, not a crash.
    out.exit_class =
        stop_requested ? ExitClass::kStopped : ExitClass::kRetryable;
    return out;
  }
  out.exit_code = WEXITSTATUS(wait_status);
  switch (out.exit_code) {
    case kTrainerExitSuccess:
      out.exit_class = ExitClass::kSuccess;
      break;
    case kTrainerExitBadInput:
      out.exit_class = ExitClass::kBadInput;
      break;
    case kTrainerExitOutOfMemory:
      out.exit_class = ExitClass::kOutOfMemory;
      break;
    case kTrainerExitStopped:
      out.exit_class = ExitClass::kStopped;
      break;
    case kTrainerExitDiverged:
      out.exit_class = ExitClass::kDiverged;
      break;
    default:
      out.exit_class =
          stop_requested ? ExitClass::kStopped : ExitClass::kRetryable;
  }
  return out;
}

TrainerProcess::~TrainerProcess() {
  bool running;
  {
    absl::MutexLock lock(&mu_);
    running = pid_ > 0 && !waited_;
  }
  if (running) {
    ::kill(-pid_, SIGKILL);
    Wait();
  }
  if (killer_.joinable()) killer_.join();
}

absl::Status TrainerProcess::Start(TrainerProcessOptions options) {
  if (options.argv.empty()) return absl::InvalidArgumentError("empty argv");
  if (pid_ > 0) return absl::FailedPreconditionError("already started");
  if (::access(options.argv[0].c_str(), X_OK) != 0) {
    return absl::NotFoundError(absl::StrCat("trainer binary ", options.argv[0],
                                            ": ", std::strerror(errno)));
  }
  options_ = std::move(options);

  int out_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0) {
    return absl::InternalError(absl::StrCat("pipe: ", std::strerror(errno)));
  }
  int log_fd = ::open(
      options_.log_path.empty() ? "/dev/null" : options_.log_path.c_str(),
      O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) {
    const int err = errno;
    ::close(out_pipe[0]);
    ::close(out_pipe[1]);
    return absl::InternalError(absl::StrCat(
        "open trainer log ", options_.log_path, ": ", std::strerror(err)));
  }
  // With a prefix, stderr reaches the log through a pipe and CopyStderr.
  int err_pipe[2] = {-1, -1};
  if (!options_.stderr_prefix.empty() && ::pipe2(err_pipe, O_CLOEXEC) != 0) {
    const int err = errno;
    ::close(out_pipe[0]);
    ::close(out_pipe[1]);
    ::close(log_fd);
    return absl::InternalError(absl::StrCat("pipe: ", std::strerror(err)));
  }
  // Everything the child needs is built before fork().
  std::map<std::string, std::string> merged;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string kv = *e;
    const size_t eq = kv.find('=');
    if (eq != std::string::npos) merged[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  for (const auto& [k, v] : options_.env) merged[k] = v;
  std::vector<std::string> env_strings;
  for (const auto& [k, v] : merged) env_strings.push_back(k + "=" + v);
  std::vector<char*> envp, argv;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> args = options_.argv;
  for (auto& s : args) argv.push_back(s.data());
  argv.push_back(nullptr);

  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) {
    const int err = errno;
    ::close(out_pipe[0]);
    ::close(out_pipe[1]);
    ::close(log_fd);
    if (err_pipe[0] >= 0) {
      ::close(err_pipe[0]);
      ::close(err_pipe[1]);
    }
    return absl::InternalError(absl::StrCat("fork: ", std::strerror(err)));
  }
  if (pid == 0) {
    ::setpgid(0, 0);
    // A trainer must not outlive its agent (SIGKILLed, OOM-killed): it would
    // keep writing checkpoints while the next attempt runs elsewhere. The
    // signal follows the forking *thread*; Start() is called on the
    // attempt's thread, which waits for the trainer before it ends.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);  // The agent died already.
    ::dup2(out_pipe[1], STDOUT_FILENO);
    ::dup2(err_pipe[1] >= 0 ? err_pipe[1] : log_fd, STDERR_FILENO);
    // The agent blocks SIGTERM/SIGINT to sigwait() for them; the trainer
    // must receive them normally.
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::execve(argv[0], argv.data(), envp.data());
    const char msg[] = "ftune-worker: exec of the trainer failed\n";
    ssize_t ignored = ::write(STDERR_FILENO, msg, sizeof(msg) - 1);
    (void)ignored;
    ::_exit(127);
  }
  // Also set the group from the parent, so a Stop() that races the child's
  // own setpgid still reaches it.
  ::setpgid(pid, pid);
  ::close(out_pipe[1]);
  pid_ = pid;
  reader_ = std::thread([this, fd = out_pipe[0]] { ReadLoop(fd); });
  if (err_pipe[0] >= 0) {
    ::close(err_pipe[1]);
    stderr_reader_ = std::thread(
        [this, fd = err_pipe[0], log_fd] { CopyStderr(fd, log_fd); });
  } else {
    ::close(log_fd);
  }
  return absl::OkStatus();
}

void TrainerProcess::CopyStderr(int fd, int log_fd) {
  std::string buffer;
  char chunk[8192];
  auto write_line = [&](absl::string_view line) {
    const std::string out = absl::StrCat(options_.stderr_prefix, line, "\n");
    ssize_t ignored = ::write(log_fd, out.data(), out.size());
    (void)ignored;
  };
  while (true) {
    const ssize_t n = ::read(fd, chunk, sizeof(chunk));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    buffer.append(chunk, static_cast<size_t>(n));
    size_t start = 0, nl;
    while ((nl = buffer.find('\n', start)) != std::string::npos) {
      write_line(absl::string_view(buffer).substr(start, nl - start));
      start = nl + 1;
    }
    buffer.erase(0, start);
  }
  if (!buffer.empty()) write_line(buffer);
  ::close(fd);
  ::close(log_fd);
}

void TrainerProcess::ReadLoop(int fd) {
  std::string buffer;
  char chunk[8192];
  while (true) {
    const ssize_t n = ::read(fd, chunk, sizeof(chunk));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    buffer.append(chunk, static_cast<size_t>(n));
    size_t start = 0, nl;
    while ((nl = buffer.find('\n', start)) != std::string::npos) {
      if (options_.on_stdout_line) {
        options_.on_stdout_line(buffer.substr(start, nl - start));
      }
      start = nl + 1;
    }
    buffer.erase(0, start);
  }
  if (!buffer.empty() && options_.on_stdout_line) {
    options_.on_stdout_line(buffer);
  }
  ::close(fd);
}

void TrainerProcess::Stop(absl::Duration grace) {
  {
    absl::MutexLock lock(&mu_);
    if (pid_ <= 0 || exited_ || stop_requested_) return;
    stop_requested_ = true;
  }
  ::kill(-pid_, SIGTERM);
  killer_ = std::thread([this, grace] {
    absl::MutexLock lock(&mu_);
    auto done = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return exited_; };
    if (!mu_.AwaitWithTimeout(absl::Condition(&done), grace)) {
      FTUNE_LOG(WARNING) << "trainer pid " << pid_ << " still running "
                         << absl::FormatDuration(grace)
                         << " after SIGTERM; sending SIGKILL";
      ::kill(-pid_, SIGKILL);
    }
  });
}

TrainerExit TrainerProcess::Wait() {
  {
    absl::MutexLock lock(&mu_);
    if (waited_) return exit_;
  }
  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  // The child is gone; whatever it left in the pipe is still delivered.
  // (A grandchild holding the pipes open would keep them: the trainer
  // spawns none, and a stop signals the whole process group.)
  if (reader_.joinable()) reader_.join();
  if (stderr_reader_.joinable()) stderr_reader_.join();
  absl::MutexLock lock(&mu_);
  exited_ = true;
  waited_ = true;
  exit_ = ClassifyExit(status, stop_requested_);
  return exit_;
}

}  // namespace ftune::agent
