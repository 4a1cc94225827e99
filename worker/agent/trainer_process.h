// TrainerProcess: one `ftune-train` child process run by the worker agent.
//
// The child gets its own process group (so a stop reaches anything it
// spawned), its stdout is read line by line on a reader thread and handed to
// a callback (the trainer's JSON progress lines, DESIGN.md), its stderr is
// appended to a log file (on shared storage, so the API can stream it),
// optionally line by line with a prefix (one rank of several).
//
// Stop(grace) sends SIGTERM to the group (the trainer checkpoints and exits),
// then SIGKILL once `grace` has passed.
//
// Thread-safety: Start/Stop/Wait may be called from different threads; the
// line callback runs on the reader thread and must not call Wait().
#ifndef FTUNE_WORKER_AGENT_TRAINER_PROCESS_H_
#define FTUNE_WORKER_AGENT_TRAINER_PROCESS_H_

#include <sys/types.h>

#include <functional>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "worker/train/exit_codes.h"

namespace ftune::agent {

// How a trainer exit is treated (DESIGN.md: exit codes distinguish success,
// bad input, out of memory and retryable failure).
enum class ExitClass {
  kSuccess,      // exit 0
  kBadInput,     // the spec or data is wrong: retrying cannot help
  kOutOfMemory,  // retry only with a smaller batch or a bigger device
  kDiverged,     // the loss became NaN/Inf: deterministic, not retried
  kStopped,      // exited after our SIGTERM (cancel/pause), checkpoint taken
  kRetryable,    // anything else: crash, signal, unexpected code
};

// Exit codes of ftune-train: the trainer's worker/train/exit_codes.h is the
// one definition (it is plain C++, no LibTorch); these are the agent's names.
inline constexpr int kTrainerExitSuccess = train::kExitOk;
inline constexpr int kTrainerExitRetryable = train::kExitRetryable;
inline constexpr int kTrainerExitBadInput = train::kExitBadInput;
inline constexpr int kTrainerExitOutOfMemory = train::kExitOutOfMemory;
inline constexpr int kTrainerExitStopped = train::kExitInterrupted;
inline constexpr int kTrainerExitDiverged = train::kExitDiverged;

struct TrainerExit {
  int exit_code = -1;  // -1 when killed by a signal
  int signal = 0;      // the signal, when killed by one
  bool stop_requested = false;
  ExitClass exit_class = ExitClass::kRetryable;
  std::string Describe() const;
};

// Classifies a raw waitpid() status.
TrainerExit ClassifyExit(int wait_status, bool stop_requested);

struct TrainerProcessOptions {
  std::vector<std::string> argv;           // argv[0] is the binary path
  std::map<std::string, std::string> env;  // added to the agent's env
  std::string log_path;                    // child's stderr, appended
  // Non-empty: the child's stderr goes through a pipe and each line is
  // appended to log_path with this prefix (one write per line, so several
  // processes sharing the log interleave whole lines). Empty: the child
  // writes to the log file itself.
  std::string stderr_prefix;
  std::function<void(const std::string& line)> on_stdout_line;
};

class TrainerProcess {
 public:
  TrainerProcess() = default;
  ~TrainerProcess();  // Kills a child still running and joins the reader.
  TrainerProcess(const TrainerProcess&) = delete;
  TrainerProcess& operator=(const TrainerProcess&) = delete;

  // INVALID_ARGUMENT for an empty argv, NOT_FOUND if the binary is missing
  // or not executable, INTERNAL for pipe/fork/log-file failures.
  absl::Status Start(TrainerProcessOptions options);

  // SIGTERM to the process group now, SIGKILL after `grace` if it has not
  // exited. Returns at once; Wait() observes the exit. Idempotent.
  void Stop(absl::Duration grace);

  // Blocks until the child has exited and all its stdout was delivered.
  TrainerExit Wait();

  pid_t pid() const { return pid_; }

 private:
  void ReadLoop(int fd);
  // Copies the child's stderr (pipe `fd`) to `log_fd` line by line with
  // options_.stderr_prefix; closes both.
  void CopyStderr(int fd, int log_fd);

  TrainerProcessOptions options_;
  pid_t pid_ = -1;
  std::thread reader_;
  std::thread stderr_reader_;  // only with stderr_prefix
  std::thread killer_;
  absl::Mutex mu_;
  bool exited_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_requested_ ABSL_GUARDED_BY(mu_) = false;
  bool waited_ ABSL_GUARDED_BY(mu_) = false;
  TrainerExit exit_ ABSL_GUARDED_BY(mu_);
};

}  // namespace ftune::agent

#endif  // FTUNE_WORKER_AGENT_TRAINER_PROCESS_H_
