// Internal to ftune_store: job-row writes shared by the SqliteStore source
// files. All run on a connection inside the caller's transaction; the write
// helpers take the write request's context.
#ifndef FTUNE_SERVER_STORE_JOB_OPS_H_
#define FTUNE_SERVER_STORE_JOB_OPS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/core/attempt.h"
#include "server/core/types.h"
#include "server/store/sqlite_db.h"
#include "server/store/sqlite_store.h"

namespace ftune::store::internal {

using WriteContext = SqliteStore::WriteContext;

// "1,4": SQL lists of states counting against max_queued_jobs (QUEUED,
// PAUSED), the running quotas (RUNNING, CANCELLING), and holding a worker.
const std::string& QueuedStates();

const std::string& RunningStates();

const std::string& WorkerStates();

// NOT_FOUND "job <id> not found".
absl::Status NotFound(absl::string_view job_id);

// The job as `tenant_id` may see it (foreign = NOT_FOUND).
absl::StatusOr<core::Job> LoadJobFor(Connection& conn,
                                     absl::string_view tenant_id,
                                     absl::string_view job_id, bool with_spec);

// "job X is RUNNING (attempt 2)".
std::string Describe(const core::Job& job);

absl::Status InsertEvent(Connection& conn, const core::JobEvent& e);

// Appends an event with the job's next sequence (job.last_sequence grows).
absl::StatusOr<core::JobEvent> AddEvent(WriteContext& ctx, core::Job& job,
                                        core::JobEventType type,
                                        std::optional<core::JobState> from,
                                        std::optional<core::JobState> to,
                                        std::string message, int64_t step = 0);

// Writes every mutable column of `job`.
absl::Status SaveJob(Connection& conn, const core::Job& job);

// Stamps update_time, saves `job` and reports `change` for on_commit.
absl::Status Finish(WriteContext& ctx, core::Job& job, JobChange change);

// Moves `job` to `to` (FAILED_PRECONDITION unless an edge of core's table),
// sets start/end times, clears the worker on QUEUED/terminal, records the
// STATE_CHANGED event in `change`. Does not save.
absl::Status ApplyStateChange(WriteContext& ctx, core::Job& job,
                              core::JobState to, std::string message,
                              JobChange& change);

absl::StatusOr<int64_t> CountJobs(Connection& conn, absl::string_view tenant_id,
                                  const std::string& states,
                                  absl::string_view what);

// The job a worker report is about, after checking the fencing token:
// current attempt, a held lease, and (if non-empty) the reporting worker.
absl::StatusOr<core::Job> LoadFenced(Connection& conn, absl::string_view job_id,
                                     int64_t attempt,
                                     absl::string_view worker_id);

// Inserts metric points reported by `attempt`: sets job_id, sequence (the
// job's next), attempt and time (if unset); folds them into job.metrics and
// job.progress step/epoch. Does not save.
absl::Status InsertMetrics(WriteContext& ctx, core::Job& job, int64_t attempt,
                           std::vector<core::MetricPoint>& points);

// Records a checkpoint of `attempt` (same step again replaces it), sets
// job.last_checkpoint when it is the latest step, and adds a CHECKPOINT
// event to `change`. Does not save.
absl::Status InsertCheckpoint(WriteContext& ctx, core::Job& job,
                              int64_t attempt, core::Checkpoint& checkpoint,
                              JobChange& change);

// Records sample completions of `attempt` (ProgressReport::samples): a
// step's samples replace those stored for it, texts are cut to the per-text
// and per-job limits (contract::defaults) with the truncation marker, and
// one kSamples event per step goes to `change`. Does not save.
absl::Status InsertSamples(WriteContext& ctx, core::Job& job, int64_t attempt,
                           std::vector<core::JobSample> samples,
                           JobChange& change);

// Marks the attempts row of (job_id, attempt) ended with `outcome`
// (core::AttemptOutcome + 1; 0 = its lease was lost). No row: nothing.
absl::Status RecordAttemptEnd(WriteContext& ctx, absl::string_view job_id,
                              int64_t attempt, int outcome);

// Applies a core::AttemptPlan (end of an attempt, lost lease) and saves.
absl::Status ApplyPlan(WriteContext& ctx, core::Job& job,
                       const core::AttemptPlan& plan);

absl::Status ValidateNewJob(const core::Job& job);

absl::Status CheckJobFile(Connection& conn, const core::Job& job,
                          absl::string_view field, absl::string_view file_id);

absl::Status InsertJob(Connection& conn, const core::Job& job);

}  // namespace ftune::store::internal

#endif  // FTUNE_SERVER_STORE_JOB_OPS_H_
