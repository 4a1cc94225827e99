// ProgressTracker: turns ftune-train's stdout lines (docs/trainer.md,
// "Progress lines") into the records of WorkerService.ReportProgress and
// batches them.
//
//   metrics     -> MetricPoint every log_every_steps steps (train_loss and
//                  tokens_per_second are the means over the interval)
//   eval        -> eval_loss on the step's MetricPoint + an EVAL event
//   checkpoint  -> Checkpoint (path relative to the storage root, size,
//                  eval_loss/is_best when it follows an evaluation)
//   data/start/resumed -> LOG events (+ WARNING for truncated/dropped data)
//   early_stop  -> EARLY_STOPPED event
//   samples     -> JobSample records (ReportProgressRequest.samples), each
//                  text cut to kSampleTextBytes; flushed at once
//   interrupted/done/error -> remembered in outcome() for FinishAttempt
//   anything else -> a WARNING event quoting the line (JSON of an unknown
//                  type: a LOG event); never an error.
//
// Batches: TakeBatch() seals what is pending into the next batch, numbered
// 1, 2, 3, ... per attempt. FlushDue() says when to: at once after a
// checkpoint, evaluation, end line or agent event; when max_batch_points
// points are pending; or flush_interval after the last batch.
//
// Not thread-safe: the owner serializes calls (the attempt runner holds a
// mutex).
#ifndef FTUNE_WORKER_AGENT_PROGRESS_H_
#define FTUNE_WORKER_AGENT_PROGRESS_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/contract/progress.h"
#include "ftune/v1/worker.pb.h"

namespace ftune::agent {

struct ProgressOptions {
  std::string job_id;
  int32_t attempt = 0;
  // Absolute checkpoint paths printed by the trainer are reported relative
  // to this root.
  std::string storage_root;
  int64_t log_every_steps = 1;
  int max_batch_points = 50;
  absl::Duration flush_interval = absl::Seconds(1);
  // Unparseable lines reported as WARNING events before the rest are only
  // counted (a trainer printing garbage must not flood the job's events).
  int max_unparsed_warnings = 20;
  // Bytes under a checkpoint directory; default walks the filesystem.
  std::function<int64_t(const std::string& dir)> dir_size;
};

// How the trainer said it ended (its last lines).
struct TrainerOutcome {
  bool done = false;
  int64_t done_step = 0;
  std::string output_dir;
  bool interrupted = false;
  int64_t interrupted_step = 0;
  std::string interrupted_path;  // absolute, as printed
  bool early_stopped = false;
  bool has_error = false;
  std::string error_reason;  // bad_input, out_of_memory, diverged, retryable
  std::string error_message;
};

class ProgressTracker {
 public:
  explicit ProgressTracker(ProgressOptions options);

  // Consumes one stdout line measured at `now`.
  void OnLine(absl::string_view line, absl::Time now);

  // Records made by the agent itself (LOG, WARNING, BATCH_SIZE_REDUCED).
  void AddEvent(v1::JobEventType type, std::string message, int64_t step,
                absl::Time now);
  void AddDeletedCheckpoint(std::string relative_path);
  void SetLogSize(int64_t bytes) { log_size_bytes_ = bytes; }
  void SetPeakMemory(int64_t bytes);

  bool HasPending() const;
  bool FlushDue(absl::Time now) const;
  // Seals the pending records into the next batch (worker_id left empty for
  // the reporter to fill) and starts the next flush interval.
  v1::ReportProgressRequest TakeBatch(absl::Time now);
  int64_t batches_taken() const { return next_batch_ - 1; }

  const TrainerOutcome& outcome() const { return outcome_; }
  // Checkpoints reported in this attempt, oldest first.
  const std::vector<v1::Checkpoint>& checkpoints() const {
    return checkpoints_;
  }
  const v1::JobProgress& progress() const { return progress_; }
  v1::JobMetrics FinalMetrics() const;
  int64_t best_step() const { return best_step_; }

  // A new trainer process of the same attempt (after an out-of-memory
  // retry): forgets how the previous one ended.
  void ResetOutcome() { outcome_ = TrainerOutcome(); }

 private:
  // One handler per progress event (common/contract/progress.h).
  void On(const contract::MetricsEvent& e, absl::string_view line,
          absl::Time now);
  void On(const contract::EvalEvent& e, absl::string_view line, absl::Time now);
  void On(const contract::CheckpointEvent& e, absl::string_view line,
          absl::Time now);
  void On(const contract::InterruptedEvent& e, absl::string_view line,
          absl::Time now);
  void On(const contract::DoneEvent& e, absl::string_view line, absl::Time now);
  void On(const contract::ErrorEvent& e, absl::string_view line,
          absl::Time now);
  void On(const contract::EarlyStopEvent& e, absl::string_view line,
          absl::Time now);
  void On(const contract::OomRetryEvent& e, absl::string_view line,
          absl::Time now);
  void On(const contract::StartEvent& e, absl::string_view line,
          absl::Time now);
  void On(const contract::ResumedEvent& e, absl::string_view line,
          absl::Time now);
  void On(const contract::DataEvent& e, absl::string_view line, absl::Time now);
  void On(const contract::SamplesEvent& e, absl::string_view line,
          absl::Time now);
  void On(const contract::UnknownEvent& e, absl::string_view line,
          absl::Time now);
  // `path` below the storage root, relative; nullopt when it is outside.
  std::optional<std::string> UnderStorageRoot(const std::string& path) const;
  void FlushInterval(absl::Time now);
  void AddPoint(v1::MetricPoint point);
  void Warn(absl::string_view line, absl::string_view why, absl::Time now);

  ProgressOptions options_;
  int64_t next_batch_ = 1;
  absl::Time last_flush_ = absl::InfinitePast();
  bool urgent_ = false;
  int unparsed_ = 0;

  // Pending records of the next batch.
  std::vector<v1::MetricPoint> metrics_;
  std::vector<v1::JobEvent> events_;
  std::vector<v1::Checkpoint> new_checkpoints_;
  std::vector<std::string> deleted_;
  std::vector<v1::JobSample> samples_;
  bool progress_changed_ = false;

  // The current logging interval.
  int64_t interval_steps_ = 0;
  double interval_loss_ = 0;
  double interval_rate_ = 0;
  // Preference objectives: the sum of the interval's steps' statistics and
  // how many steps reported them.
  contract::PreferenceMetrics interval_preference_;
  int64_t interval_preference_steps_ = 0;
  int64_t last_step_ = 0;
  double last_epoch_ = 0;
  double last_lr_ = 0;
  double last_grad_norm_ = 0;
  absl::Time last_time_;

  // Running state.
  v1::JobProgress progress_;
  v1::JobMetrics metrics_state_;
  int64_t last_eval_step_ = -1;
  double last_eval_loss_ = 0;
  int64_t best_step_ = 0;
  int64_t log_size_bytes_ = 0;
  int64_t peak_memory_ = 0;
  // The trainer's planner prediction and measured tensor peak (latest).
  int64_t predicted_peak_memory_ = 0;
  int64_t tensor_peak_memory_ = 0;
  std::vector<v1::Checkpoint> checkpoints_;
  TrainerOutcome outcome_;
};

// Total size in bytes of the regular files under `dir` (0 if missing).
int64_t DirectorySize(const std::string& dir);

// Sets a protobuf Timestamp from an absl::Time.
void SetTime(absl::Time t, google::protobuf::Timestamp* out);

}  // namespace ftune::agent

#endif  // FTUNE_WORKER_AGENT_PROGRESS_H_
