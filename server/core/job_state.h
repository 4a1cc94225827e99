// The job state machine: states, the table of allowed edges, and the pure
// decisions (cancel / pause / resume / end of an attempt / lost lease) that
// the store applies as compare-and-set transactions.
//
// Edges (every one is recorded as an event row by the store):
//   QUEUED     -> RUNNING     lease granted to a worker (same attempt)
//   QUEUED     -> PAUSED      PauseJob
//   QUEUED     -> CANCELLED   CancelJob (nothing is running, so no CANCELLING)
//   QUEUED     -> FAILED      the scheduler finds the job can never run
//   RUNNING    -> SUCCEEDED   the attempt's worker reports the adapter
//   published RUNNING    -> FAILED      non-retryable failure, or restarts
//   exhausted RUNNING    -> QUEUED      lease lost / retryable failure: attempt
//   + 1 RUNNING    -> CANCELLING  CancelJob; the worker is told to SIGTERM the
//   child RUNNING    -> PAUSED      PauseJob; the worker checkpoints and stops
//   the
//                             child, keeping the attempt until it reports back
//   CANCELLING -> CANCELLED   the worker confirms the child stopped, or its
//                             lease expired (nothing left to stop)
//   CANCELLING -> SUCCEEDED   the job finished before the cancel reached it
//   CANCELLING -> FAILED      the job failed before the cancel reached it
//   PAUSED     -> QUEUED      ResumeJob: attempt + 1 (resumes from checkpoint)
//   PAUSED     -> CANCELLED   CancelJob
//   PAUSED     -> SUCCEEDED   the job finished before the pause reached it
//   PAUSED     -> FAILED      the job failed before the pause reached it
// SUCCEEDED, FAILED and CANCELLED are terminal: no edge leaves them.
//
// Thread-safe: pure functions over values.
#ifndef FTUNE_SERVER_CORE_JOB_STATE_H_
#define FTUNE_SERVER_CORE_JOB_STATE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace ftune::core {

// Numeric values are stored in the database: never renumber.
enum class JobState : int {
  kQueued = 1,
  kRunning = 2,
  kCancelling = 3,
  kPaused = 4,
  kSucceeded = 5,
  kFailed = 6,
  kCancelled = 7,
};

inline constexpr JobState kAllJobStates[] = {
    JobState::kQueued,   JobState::kRunning,   JobState::kCancelling,
    JobState::kPaused,   JobState::kSucceeded, JobState::kFailed,
    JobState::kCancelled};

// "QUEUED", "RUNNING", ... ("UNKNOWN(n)" for a value outside the enum).
std::string JobStateName(JobState state);
// Parses the names above (case-insensitive); INVALID_ARGUMENT otherwise.
absl::StatusOr<JobState> ParseJobState(absl::string_view name);
// Maps a stored integer back; INVALID_ARGUMENT (DATA_LOSS-worthy) if unknown.
absl::StatusOr<JobState> JobStateFromInt(int64_t value);

bool IsTerminal(JobState state);
// True while a worker may be executing the job's current attempt
// (RUNNING, CANCELLING; PAUSED only while the job still has a worker).
bool OccupiesWorker(JobState state);

// True if `from -> to` is an edge of the table above.
bool IsAllowedTransition(JobState from, JobState to);

struct TransitionEdge {
  JobState from;
  JobState to;
  const char* why;  // One line, as in the table above.
};
// Every edge of the table, for documentation and exhaustive tests.
const std::vector<TransitionEdge>& AllTransitions();

// What a user request does to a job in `current`. FAILED_PRECONDITION naming
// the current state when the request is not allowed there.
//   Cancel: QUEUED/PAUSED -> CANCELLED, RUNNING -> CANCELLING,
//           CANCELLING -> CANCELLING (already on its way: no change).
//   Pause:  QUEUED/RUNNING -> PAUSED.
//   Resume: PAUSED -> QUEUED.
absl::StatusOr<JobState> CancelTarget(JobState current);
absl::StatusOr<JobState> PauseTarget(JobState current);
absl::StatusOr<JobState> ResumeTarget(JobState current);

}  // namespace ftune::core

#endif  // FTUNE_SERVER_CORE_JOB_STATE_H_
