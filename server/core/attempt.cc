#include "server/core/attempt.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace ftune::core {
namespace {

AttemptPlan Keep(const Job& job, JobState state) {
  AttemptPlan plan;
  plan.new_state = state;
  plan.new_attempt = job.attempt;
  plan.new_restart_count = job.restart_count;
  return plan;
}

// A retryable failure (or lost lease) of a RUNNING job: re-queue or give up.
AttemptPlan Retry(const Job& job, JobError error) {
  if (job.restart_count >= job.max_restarts) {
    AttemptPlan plan = Keep(job, JobState::kFailed);
    plan.message =
        absl::StrCat("attempt ", job.attempt, " failed (", error.message,
                     "); max_restarts=", job.max_restarts, " exhausted");
    error.retryable = false;
    error.message = plan.message;
    plan.error = std::move(error);
    return plan;
  }
  AttemptPlan plan = Keep(job, JobState::kQueued);
  plan.new_attempt = job.attempt + 1;
  plan.new_restart_count = job.restart_count + 1;
  plan.message =
      absl::StrCat("attempt ", job.attempt, " failed (", error.message,
                   "); re-queued as attempt ", plan.new_attempt, " (restart ",
                   plan.new_restart_count, " of ", job.max_restarts, ")");
  error.retryable = true;
  plan.error = std::move(error);
  return plan;
}

absl::Status Refuse(const Job& job, absl::string_view what) {
  return absl::FailedPreconditionError(
      absl::StrCat("job ", job.id, " is ", JobStateName(job.state),
                   " (attempt ", job.attempt, "); cannot ", what));
}

}  // namespace

absl::StatusOr<AttemptPlan> PlanAttemptEnd(const Job& job,
                                           const AttemptEnd& end) {
  if (!OccupiesWorker(job.state)) return Refuse(job, "end an attempt");
  switch (end.outcome) {
    case AttemptOutcome::kSucceeded: {
      AttemptPlan plan = Keep(job, JobState::kSucceeded);
      plan.adapter = end.adapter;
      plan.error = JobError{};
      plan.message = absl::StrCat("attempt ", job.attempt, " succeeded");
      return plan;
    }
    case AttemptOutcome::kFailed: {
      AttemptPlan plan = Keep(job, JobState::kFailed);
      JobError error = end.error;
      error.retryable = false;
      plan.message = absl::StrCat("attempt ", job.attempt,
                                  " failed: ", JobErrorReasonName(error.reason),
                                  ": ", error.message);
      plan.error = std::move(error);
      return plan;
    }
    case AttemptOutcome::kRetryableFailure:
      if (job.state == JobState::kCancelling) {
        AttemptPlan plan = Keep(job, JobState::kCancelled);
        plan.message = "stopped while cancelling";
        return plan;
      }
      if (job.state == JobState::kPaused) {
        AttemptPlan plan = Keep(job, JobState::kPaused);
        plan.message = "attempt ended while paused";
        return plan;
      }
      return Retry(job, end.error);
    case AttemptOutcome::kStopped:
      if (job.state == JobState::kCancelling) {
        AttemptPlan plan = Keep(job, JobState::kCancelled);
        plan.message = "child stopped; cancelled";
        return plan;
      }
      if (job.state == JobState::kPaused) {
        AttemptPlan plan = Keep(job, JobState::kPaused);
        plan.message = "child stopped; paused";
        return plan;
      }
      return Refuse(job, "report a stop that was never requested");
  }
  return absl::InvalidArgumentError("unknown attempt outcome");
}

absl::StatusOr<AttemptPlan> PlanLeaseLoss(const Job& job) {
  switch (job.state) {
    case JobState::kRunning:
      return Retry(job, JobError{JobErrorReason::kWorkerLost,
                                 absl::StrCat("lease of worker ", job.worker_id,
                                              " expired"),
                                 /*retryable=*/true});
    case JobState::kCancelling: {
      AttemptPlan plan = Keep(job, JobState::kCancelled);
      plan.message = "lease expired while cancelling; cancelled";
      return plan;
    }
    case JobState::kPaused: {
      AttemptPlan plan = Keep(job, JobState::kPaused);
      plan.message = "lease expired while paused";
      return plan;
    }
    default:
      return Refuse(job, "lose a lease it does not hold");
  }
}

}  // namespace ftune::core
