// AttemptRunner: one attempt of one job on this worker, from the
// AssignJobCommand to FinishAttempt (worker.proto).
//
//   1. Translates the spec (spec_translation.h); a spec ftune-train cannot
//      run fails the attempt as INVALID_INPUT without starting anything.
//   2. If adapter_dir already holds a complete published adapter (an earlier
//      attempt published it and died before FinishAttempt), reports
//      SUCCEEDED with it.
//   3. Writes the trainer spec to <work_dir>/<job>-attempt-<N>/spec.json and
//      starts the trainer with CUDA_VISIBLE_DEVICES = the assigned GPUs
//      ("" for a CPU job) and the agent's own environment; stderr is
//      appended to the attempt's log_path on shared storage. A job of N > 1
//      ranks (several GPUs, or resources.processes) starts N trainers as
//      one process group (rank_group.h): one GPU each, rank 0's stdout is
//      the progress, every rank's stderr goes to the log prefixed with its
//      rank, and any rank failing ends them all and fails the attempt
//      (retryable, naming the rank).
//   4. Streams progress (progress.h) through the AttemptReporter; a batch
//      that fails with a transient error is retried with the same number.
//   5. On exit: classifies it and calls FinishAttempt (retried until the
//      scheduler answers). Out of memory with auto_reduce_batch_on_oom
//      halves batch_size, doubles gradient_accumulation_steps and resumes
//      from the latest checkpoint in the same attempt (BATCH_SIZE_REDUCED).
//
// Fencing: FAILED_PRECONDITION or NOT_FOUND on any report -> the trainer is
// SIGKILLed at once and nothing more is reported or finished for the
// attempt. Kill() does the same on the session's behalf (stop_attempts,
// self-fencing, lost registration).
//
// Thread-safety: thread-safe. Each runner owns one thread (Start() to
// Wait()); Cancel/Pause/Shutdown/Kill may be called from any thread, any
// number of times.
#ifndef FTUNE_WORKER_AGENT_ATTEMPT_RUNNER_H_
#define FTUNE_WORKER_AGENT_ATTEMPT_RUNNER_H_

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "ftune/v1/worker.pb.h"
#include "worker/agent/progress.h"
#include "worker/agent/rank_group.h"
#include "worker/agent/spec_translation.h"
#include "worker/agent/trainer_process.h"

namespace ftune::agent {

// The scheduler side of an attempt, as the runner sees it. The gRPC
// implementation fills worker_id and adds the credential; tests record.
// Errors are the RPCs' codes: FAILED_PRECONDITION / NOT_FOUND mean fenced,
// INVALID_ARGUMENT means the request itself is wrong, anything else is
// transient (retried).
//
// Thread-safety: implementations must be thread-safe (every runner calls
// from its own thread).
class AttemptReporter {
 public:
  virtual ~AttemptReporter() = default;
  virtual absl::StatusOr<v1::ReportProgressResponse> ReportProgress(
      const v1::ReportProgressRequest& request) = 0;
  virtual absl::StatusOr<v1::FinishAttemptResponse> FinishAttempt(
      const v1::FinishAttemptRequest& request) = 0;
};

struct AttemptRunnerOptions {
  std::string storage_root;  // absolute
  std::string work_dir;      // local scratch (spec files)
  std::string trainer_path;  // ftune-train (or a stand-in)
  // Extra environment for the trainer (on top of the agent's own).
  std::map<std::string, std::string> env;
  // Grace after SIGTERM for a pause or a worker shutdown (a cancel uses the
  // command's grace_period, or this when it is unset).
  absl::Duration stop_grace = absl::Seconds(30);
  // SIGTERM -> SIGKILL for the other ranks of a multi-rank attempt when one
  // rank failed.
  absl::Duration rank_failure_grace = absl::Seconds(10);
  absl::Duration flush_interval = absl::Seconds(1);
  int max_batch_points = 50;
  // Backoff between retries of a failed report (doubles up to the max).
  absl::Duration retry_initial = absl::Milliseconds(200);
  absl::Duration retry_max = absl::Seconds(5);
  // How often the runner wakes to flush and to check the trainer.
  absl::Duration poll = absl::Milliseconds(50);
  Clock* clock = Clock::Real();
  // Called when an attempt's trainer processes (every rank) have started and
  // after they have ended (for metrics); `killed`: the agent SIGKILLed them
  // (fenced, hard shutdown).
  std::function<void()> on_trainer_start;
  std::function<void(ExitClass, bool killed)> on_trainer_exit;
};

// How the attempt ended locally.
enum class AttemptEnd {
  kRunning,
  kFinished,      // FinishAttempt was accepted
  kFenced,        // FAILED_PRECONDITION / NOT_FOUND / Kill(): not finished
  kFinishFailed,  // the scheduler refused FinishAttempt (INVALID_ARGUMENT)
};

class AttemptRunner {
 public:
  AttemptRunner(v1::AssignJobCommand command, AttemptRunnerOptions options,
                AttemptReporter* reporter);
  ~AttemptRunner();  // Kill() and Wait().
  AttemptRunner(const AttemptRunner&) = delete;
  AttemptRunner& operator=(const AttemptRunner&) = delete;

  // Starts the attempt's thread. When `predecessor` is given (an older
  // attempt of the same job on this worker, already Kill()ed), waits for it
  // to end first so two attempts never write the same directories.
  void Start(std::shared_ptr<AttemptRunner> predecessor = nullptr);

  // CancelJobCommand: SIGTERM, SIGKILL after `grace` (stop_grace when
  // zero), then FinishAttempt(CANCELLED) (SUCCEEDED if training finished
  // first).
  void Cancel(absl::Duration grace);
  // PauseJobCommand: SIGTERM; the trainer checkpoints and exits ->
  // FinishAttempt(PAUSED, checkpoint).
  void Pause();
  // Worker shutdown: SIGTERM (the trainer checkpoints), report, then
  // FinishAttempt(FAILED, WORKER_LOST, retryable) so the job is re-queued at
  // once and resumes from the checkpoint elsewhere.
  void Shutdown();
  // Fenced: SIGKILL now; report and finish nothing more.
  void Kill();

  // Blocks until the attempt's thread has ended.
  AttemptEnd Wait();
  bool done() const;
  const std::string& job_id() const { return command_.job_id(); }
  int32_t attempt() const { return command_.attempt(); }
  // The FinishAttempt request that was accepted (tests, logs).
  std::optional<v1::FinishAttemptRequest> finished_request() const;

 private:
  enum class StopKind { kNone, kCancel, kPause, kShutdown };

  void Run(std::shared_ptr<AttemptRunner> predecessor);
  // Returns the request for FinishAttempt, or nullopt when fenced.
  std::optional<v1::FinishAttemptRequest> Execute();
  std::optional<v1::FinishAttemptRequest> RunTrainer(TrainerSpec& spec);
  // Sends what is pending (all of it when `drain`); false once fenced.
  bool Flush(bool drain);
  void Finish(v1::FinishAttemptRequest request);
  void DeleteOldCheckpoints(const TrainerSpec& spec);
  void AppendToLog(const std::string& text);
  bool Sleep(absl::Duration d);  // false when killed meanwhile
  bool killed() const;
  v1::FinishAttemptRequest Failed(v1::ErrorReason reason, std::string message,
                                  bool retryable);

  const v1::AssignJobCommand command_;
  const AttemptRunnerOptions options_;
  AttemptReporter* const reporter_;
  std::string log_path_;  // absolute; set once translated

  mutable absl::Mutex mu_;
  StopKind stop_ ABSL_GUARDED_BY(mu_) = StopKind::kNone;
  absl::Duration cancel_grace_ ABSL_GUARDED_BY(mu_);
  bool killed_ ABSL_GUARDED_BY(mu_) = false;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  AttemptEnd end_ ABSL_GUARDED_BY(mu_) = AttemptEnd::kRunning;
  RankGroup* trainer_ ABSL_GUARDED_BY(mu_) = nullptr;
  // Per group of a multi-rank attempt: the "ranks started" event was
  // added; rank 0 has printed a line (the process group formed), which is
  // reported once, after the start.
  bool ranks_started_reported_ ABSL_GUARDED_BY(mu_) = false;
  bool rendezvous_seen_ ABSL_GUARDED_BY(mu_) = false;
  bool rendezvous_reported_ ABSL_GUARDED_BY(mu_) = false;
  void ReportRendezvous(int ranks) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::optional<ProgressTracker> tracker_ ABSL_GUARDED_BY(mu_);
  std::optional<v1::FinishAttemptRequest> finished_ ABSL_GUARDED_BY(mu_);
  // The batch being sent (kept with its number until accepted).
  std::optional<v1::ReportProgressRequest> in_flight_;
  // The newest checkpoint step the scheduler has acknowledged (it may
  // resume a later attempt from it): never deleted, nor anything newer.
  // -1 = none yet.
  std::atomic<int64_t> acked_checkpoint_step_{-1};
  absl::Time retry_at_ = absl::InfinitePast();
  absl::Duration backoff_ = options_.retry_initial;
  absl::Mutex join_mu_;
  std::thread thread_ ABSL_GUARDED_BY(join_mu_);
};

// The files of a published adapter directory as an Adapter message: every
// file (sorted, relative paths) with size and sha256, manifest_sha256, step
// (from ftune_manifest.json: metrics.best_step, else metrics.steps) and the
// directory's mtime as publish_time. FAILED_PRECONDITION when
// ftune_manifest.json is missing or a file's sha256 differs from the one the
// manifest lists; NOT_FOUND when the directory does not exist.
absl::StatusOr<v1::Adapter> DescribeAdapter(const std::string& absolute_dir,
                                            const std::string& relative_dir,
                                            const std::string& name);

}  // namespace ftune::agent

#endif  // FTUNE_WORKER_AGENT_ATTEMPT_RUNNER_H_
