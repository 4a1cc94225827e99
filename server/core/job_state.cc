#include "server/core/job_state.h"

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace ftune::core {

std::string JobStateName(JobState state) {
  switch (state) {
    case JobState::kQueued:
      return "QUEUED";
    case JobState::kRunning:
      return "RUNNING";
    case JobState::kCancelling:
      return "CANCELLING";
    case JobState::kPaused:
      return "PAUSED";
    case JobState::kSucceeded:
      return "SUCCEEDED";
    case JobState::kFailed:
      return "FAILED";
    case JobState::kCancelled:
      return "CANCELLED";
  }
  return absl::StrCat("UNKNOWN(", static_cast<int>(state), ")");
}

absl::StatusOr<JobState> ParseJobState(absl::string_view name) {
  const std::string upper = absl::AsciiStrToUpper(name);
  for (JobState s : kAllJobStates) {
    if (JobStateName(s) == upper) return s;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown job state '", name,
                   "' (want QUEUED, RUNNING, CANCELLING, PAUSED, SUCCEEDED, "
                   "FAILED or CANCELLED)"));
}

absl::StatusOr<JobState> JobStateFromInt(int64_t value) {
  for (JobState s : kAllJobStates) {
    if (static_cast<int64_t>(s) == value) return s;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown stored job state value ", value));
}

bool IsTerminal(JobState state) {
  return state == JobState::kSucceeded || state == JobState::kFailed ||
         state == JobState::kCancelled;
}

bool OccupiesWorker(JobState state) {
  return state == JobState::kRunning || state == JobState::kCancelling ||
         state == JobState::kPaused;
}

const std::vector<TransitionEdge>& AllTransitions() {
  using S = JobState;
  static const auto* const kEdges = new std::vector<TransitionEdge>{
      {S::kQueued, S::kRunning, "lease granted to a worker"},
      {S::kQueued, S::kPaused, "PauseJob"},
      {S::kQueued, S::kCancelled, "CancelJob while nothing runs"},
      {S::kQueued, S::kFailed, "the job can never run"},
      {S::kRunning, S::kSucceeded, "the attempt published its adapter"},
      {S::kRunning, S::kFailed, "non-retryable failure or restarts exhausted"},
      {S::kRunning, S::kQueued, "lease lost or retryable failure (attempt+1)"},
      {S::kRunning, S::kCancelling, "CancelJob; worker stops the child"},
      {S::kRunning, S::kPaused, "PauseJob; worker checkpoints and stops"},
      {S::kCancelling, S::kCancelled, "child stopped or lease expired"},
      {S::kCancelling, S::kSucceeded, "finished before the cancel arrived"},
      {S::kCancelling, S::kFailed, "failed before the cancel arrived"},
      {S::kPaused, S::kQueued, "ResumeJob (attempt+1)"},
      {S::kPaused, S::kCancelled, "CancelJob"},
      {S::kPaused, S::kSucceeded, "finished before the pause arrived"},
      {S::kPaused, S::kFailed, "failed before the pause arrived"},
  };
  return *kEdges;
}

bool IsAllowedTransition(JobState from, JobState to) {
  for (const TransitionEdge& e : AllTransitions()) {
    if (e.from == from && e.to == to) return true;
  }
  return false;
}

namespace {
absl::Status NotAllowed(absl::string_view what, JobState current) {
  return absl::FailedPreconditionError(
      absl::StrCat("cannot ", what, " a job in state ", JobStateName(current)));
}
}  // namespace

absl::StatusOr<JobState> CancelTarget(JobState current) {
  switch (current) {
    case JobState::kQueued:
    case JobState::kPaused:
      return JobState::kCancelled;
    case JobState::kRunning:
    case JobState::kCancelling:
      return JobState::kCancelling;
    default:
      return NotAllowed("cancel", current);
  }
}

absl::StatusOr<JobState> PauseTarget(JobState current) {
  if (current == JobState::kQueued || current == JobState::kRunning) {
    return JobState::kPaused;
  }
  return NotAllowed("pause", current);
}

absl::StatusOr<JobState> ResumeTarget(JobState current) {
  if (current == JobState::kPaused) return JobState::kQueued;
  return NotAllowed("resume", current);
}

}  // namespace ftune::core
