// Pure decisions about the end of a job's attempt: what a worker's final
// report or a lost lease does to the job. The store applies the returned plan
// in one compare-and-set transaction; the policy lives here so it can be
// tested on plain values.
//
// Thread-safe: pure functions.
#ifndef FTUNE_SERVER_CORE_ATTEMPT_H_
#define FTUNE_SERVER_CORE_ATTEMPT_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "server/core/types.h"

namespace ftune::core {

// How an attempt ended, as the worker saw it.
enum class AttemptOutcome {
  kSucceeded,         // Adapter published.
  kFailed,            // Non-retryable (bad input, OOM, ...): FAILED now.
  kRetryableFailure,  // Re-queue with attempt+1 unless restarts exhausted.
  kStopped,           // The child stopped on request (cancel or pause).
};

struct AttemptEnd {
  AttemptOutcome outcome = AttemptOutcome::kSucceeded;
  JobError error;   // For kFailed / kRetryableFailure.
  Adapter adapter;  // For kSucceeded.
  // For kSucceeded of a full fine-tuning job: the model its published
  // directory becomes (name, directory, tenant_id, job_id and what
  // InspectModelDirectory read), stored with the SUCCEEDED transition.
  std::optional<Model> output_model;
};

// What to write. The store keeps every other field.
struct AttemptPlan {
  JobState new_state = JobState::kQueued;
  int64_t new_attempt = 0;
  int64_t new_restart_count = 0;
  bool clear_worker = true;        // Drop worker_id and lease_expiry.
  std::optional<JobError> error;   // Replaces job.error when set.
  std::optional<Adapter> adapter;  // Replaces job.adapter when set.
  std::string message;             // For the event row.
};

// The worker holding `job`'s current attempt reports `end`. Requires the
// caller to have fenced the attempt already. FAILED_PRECONDITION when the
// job's state cannot take that outcome (e.g. a terminal job, or kStopped for
// a RUNNING job that was never asked to stop).
absl::StatusOr<AttemptPlan> PlanAttemptEnd(const Job& job,
                                           const AttemptEnd& end);

// The lease on `job`'s current attempt expired at `now` (worker dead,
// partitioned, or stopped). RUNNING: re-queue with attempt+1, or FAIL with
// kWorkerLost once restart_count == max_restarts. CANCELLING: CANCELLED.
// PAUSED: stays PAUSED without a worker. FAILED_PRECONDITION for states that
// hold no lease.
absl::StatusOr<AttemptPlan> PlanLeaseLoss(const Job& job);

}  // namespace ftune::core

#endif  // FTUNE_SERVER_CORE_ATTEMPT_H_
