// SqliteStore: the per-attempt side of the worker protocol (WorkerService):
// the attempts a worker holds, progress batches applied exactly once,
// recorded outcomes for idempotent retries, and the ways a lease is lost
// early (an attempt the worker no longer runs, a worker known to be gone).
#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "server/store/job_ops.h"
#include "server/store/rows.h"
#include "server/store/sqlite_store.h"

namespace ftune::store {

using core::Job;
using core::JobState;
using internal::ApplyPlan;
using internal::Finish;
using internal::LoadFenced;
using internal::LoadJob;
using internal::WorkerStates;
using WriteContext = SqliteStore::WriteContext;

namespace {

// Worker-reportable event types (ProgressReport.events).
bool WorkerMayReport(core::JobEventType type) {
  switch (type) {
    case core::JobEventType::kMessage:
    case core::JobEventType::kWarning:
    case core::JobEventType::kEval:
    case core::JobEventType::kBatchSizeReduced:
    case core::JobEventType::kEarlyStopped:
    case core::JobEventType::kEvalImproved:
      return true;
    default:
      return false;
  }
}

// Applies PlanLeaseLoss to `job` (fenced by the caller) and records it.
absl::Status LoseLease(WriteContext& ctx, Job& job, LeaseExpiryResult* out) {
  FTUNE_ASSIGN_OR_RETURN(core::AttemptPlan plan, core::PlanLeaseLoss(job));
  FTUNE_RETURN_IF_ERROR(
      internal::RecordAttemptEnd(ctx, job.id, job.attempt, 0));
  const JobState before = job.state;
  FTUNE_RETURN_IF_ERROR(ApplyPlan(ctx, job, plan));
  if (out == nullptr) return absl::OkStatus();
  if (before == JobState::kRunning && job.state == JobState::kQueued) {
    out->requeued.push_back(job);
  } else if (job.state == JobState::kFailed) {
    out->failed.push_back(job);
  } else {
    out->other.push_back(job);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> HeldJobIds(
    Connection& conn, absl::string_view worker_id) {
  std::vector<std::string> ids;
  FTUNE_ASSIGN_OR_RETURN(
      Statement st,
      conn.Prepare(absl::StrCat("SELECT id FROM jobs WHERE worker_id = ? AND "
                                "state IN (",
                                WorkerStates(), ") ORDER BY seq")));
  st.Bind(1, worker_id);
  while (true) {
    FTUNE_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    ids.push_back(st.ColumnText(0));
  }
  return ids;
}

}  // namespace

absl::StatusOr<std::vector<HeldAttempt>> SqliteStore::ListHeldAttempts(
    absl::string_view worker_id) {
  std::vector<HeldAttempt> out;
  FTUNE_RETURN_IF_ERROR(Read([&](Connection& conn) -> absl::Status {
    out.clear();
    FTUNE_ASSIGN_OR_RETURN(std::vector<std::string> ids,
                           HeldJobIds(conn, worker_id));
    FTUNE_ASSIGN_OR_RETURN(
        Statement rec,
        conn.Prepare("SELECT gpu_indices, cpu_threads, grant_time FROM "
                     "attempts WHERE job_id = ? AND attempt = ?"));
    for (const std::string& id : ids) {
      HeldAttempt held;
      FTUNE_ASSIGN_OR_RETURN(held.job, LoadJob(conn, id, /*with_spec=*/true));
      rec.Reset();
      rec.Bind(1, id).Bind(2, held.job.attempt);
      FTUNE_ASSIGN_OR_RETURN(bool row, rec.Step());
      if (row) {
        FTUNE_ASSIGN_OR_RETURN(held.resources.gpu_indices,
                               internal::DecodeIntList(rec.ColumnText(0)));
        held.resources.cpu_threads = static_cast<int32_t>(rec.ColumnInt(1));
        held.grant_time = rec.ColumnTime(2);
      }
      out.push_back(std::move(held));
    }
    std::stable_sort(out.begin(), out.end(),
                     [](const HeldAttempt& a, const HeldAttempt& b) {
                       return a.grant_time < b.grant_time;
                     });
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<ProgressResult> SqliteStore::ApplyProgress(
    const ProgressReport& report) {
  if (report.worker_id.empty()) {
    return absl::InvalidArgumentError("worker_id is empty");
  }
  if (report.batch_number < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("batch_number: must be >= 1, got ", report.batch_number));
  }
  for (const core::JobEvent& e : report.events) {
    if (!WorkerMayReport(e.type)) {
      return absl::InvalidArgumentError(
          absl::StrCat("events: a worker may not report an event of type ",
                       core::JobEventTypeName(e.type)));
    }
  }
  ProgressResult result;
  FTUNE_RETURN_IF_ERROR(Write([&](WriteContext& ctx) -> absl::Status {
    result = ProgressResult{};
    FTUNE_ASSIGN_OR_RETURN(
        Job job,
        LoadFenced(ctx.conn, report.job_id, report.attempt, report.worker_id));
    FTUNE_ASSIGN_OR_RETURN(
        Statement last,
        ctx.conn.Prepare("SELECT last_batch FROM attempts WHERE job_id = ? "
                         "AND attempt = ?"));
    last.Bind(1, job.id).Bind(2, report.attempt);
    FTUNE_ASSIGN_OR_RETURN(bool has_row, last.Step());
    const int64_t last_batch = has_row ? last.ColumnInt(0) : 0;
    if (report.batch_number <= last_batch) {  // A retry: already applied.
      result.job = job;
      return absl::OkStatus();
    }
    if (report.batch_number > last_batch + 1) {
      return absl::InvalidArgumentError(absl::StrCat(
          "batch_number: got ", report.batch_number, " after ", last_batch,
          " (a batch is missing; batches must be sent in order)"));
    }
    JobChange change;
    std::vector<core::MetricPoint> points = report.metrics;
    FTUNE_RETURN_IF_ERROR(
        internal::InsertMetrics(ctx, job, report.attempt, points));
    change.metrics = std::move(points);
    for (const core::JobEvent& in : report.events) {
      FTUNE_ASSIGN_OR_RETURN(
          core::JobEvent e,
          internal::AddEvent(ctx, job, in.type, std::nullopt, std::nullopt,
                             in.message, in.step));
      change.events.push_back(std::move(e));
    }
    for (const std::string& path : report.deleted_checkpoint_paths) {
      FTUNE_ASSIGN_OR_RETURN(Statement del,
                             ctx.conn.Prepare("DELETE FROM checkpoints WHERE "
                                              "job_id = ? AND path = ?"));
      del.Bind(1, job.id).Bind(2, path);
      FTUNE_RETURN_IF_ERROR(del.Run());
    }
    for (core::Checkpoint c : report.checkpoints) {
      FTUNE_RETURN_IF_ERROR(
          internal::InsertCheckpoint(ctx, job, report.attempt, c, change));
    }
    if (!report.samples.empty()) {
      FTUNE_RETURN_IF_ERROR(internal::InsertSamples(ctx, job, report.attempt,
                                                    report.samples, change));
    }
    if (report.progress) {
      const int64_t step = job.progress.step;
      job.progress = *report.progress;
      // Step/epoch come from the newest point when the summary lags.
      job.progress.step = std::max(job.progress.step, step);
    }
    if (report.lease_expiry != absl::InfinitePast()) {
      job.lease_expiry = report.lease_expiry;
    }
    if (has_row) {
      FTUNE_ASSIGN_OR_RETURN(
          Statement up,
          ctx.conn.Prepare("UPDATE attempts SET last_batch = ? WHERE "
                           "job_id = ? AND attempt = ?"));
      up.Bind(1, report.batch_number).Bind(2, job.id).Bind(3, report.attempt);
      FTUNE_RETURN_IF_ERROR(up.Run());
    }
    FTUNE_RETURN_IF_ERROR(Finish(ctx, job, std::move(change)));
    result.job = job;
    result.applied = true;
    return absl::OkStatus();
  }));
  return result;
}

absl::StatusOr<AttemptRecord> SqliteStore::GetAttempt(absl::string_view job_id,
                                                      int64_t attempt) {
  AttemptRecord out;
  FTUNE_RETURN_IF_ERROR(Read([&](Connection& conn) -> absl::Status {
    FTUNE_ASSIGN_OR_RETURN(
        Statement st,
        conn.Prepare("SELECT worker_id, outcome, end_time FROM attempts "
                     "WHERE job_id = ? AND attempt = ?"));
    st.Bind(1, job_id).Bind(2, attempt);
    FTUNE_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) {
      return absl::NotFoundError(absl::StrCat("attempt ", attempt, " of job ",
                                              job_id, " was never granted"));
    }
    out.job_id = std::string(job_id);
    out.attempt = attempt;
    out.worker_id = st.ColumnText(0);
    const int64_t outcome = st.ColumnInt(1);
    if (!st.ColumnIsNull(2) && outcome > 0) {
      out.outcome = static_cast<core::AttemptOutcome>(outcome - 1);
    }
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<Job> SqliteStore::AbandonAttempt(absl::string_view job_id,
                                                int64_t attempt,
                                                absl::string_view worker_id) {
  if (worker_id.empty()) {
    return absl::InvalidArgumentError("worker_id is empty");
  }
  Job job;
  FTUNE_RETURN_IF_ERROR(Write([&](WriteContext& ctx) -> absl::Status {
    FTUNE_ASSIGN_OR_RETURN(job,
                           LoadFenced(ctx.conn, job_id, attempt, worker_id));
    return LoseLease(ctx, job, nullptr);
  }));
  return job;
}

absl::StatusOr<LeaseExpiryResult> SqliteStore::MarkWorkerLost(
    absl::string_view worker_id) {
  LeaseExpiryResult result;
  FTUNE_RETURN_IF_ERROR(Write([&](WriteContext& ctx) -> absl::Status {
    result = LeaseExpiryResult{};
    FTUNE_ASSIGN_OR_RETURN(core::Worker w,
                           internal::LoadWorkerById(ctx.conn, worker_id));
    if (w.state == core::WorkerState::kLost) return absl::OkStatus();
    FTUNE_ASSIGN_OR_RETURN(std::vector<std::string> ids,
                           HeldJobIds(ctx.conn, worker_id));
    for (const std::string& id : ids) {
      FTUNE_ASSIGN_OR_RETURN(Job job, LoadJob(ctx.conn, id, false));
      FTUNE_RETURN_IF_ERROR(LoseLease(ctx, job, &result));
    }
    FTUNE_ASSIGN_OR_RETURN(Statement st,
                           ctx.conn.Prepare("UPDATE workers SET state = ?, "
                                            "lease_expiry = ? WHERE id = ?"));
    st.Bind(1, static_cast<int>(core::WorkerState::kLost))
        .BindTime(2, ctx.now)
        .Bind(3, worker_id);
    FTUNE_RETURN_IF_ERROR(st.Run());
    result.lost_workers.push_back(std::string(worker_id));
    return absl::OkStatus();
  }));
  return result;
}

absl::StatusOr<int64_t> SqliteStore::ExtendLeases(absl::Time until) {
  int64_t extended = 0;
  FTUNE_RETURN_IF_ERROR(Write([&](WriteContext& ctx) -> absl::Status {
    FTUNE_ASSIGN_OR_RETURN(
        Statement w,
        ctx.conn.Prepare(absl::StrCat(
            "UPDATE workers SET lease_expiry = MAX(lease_expiry, ?) WHERE "
            "state != ",
            static_cast<int>(core::WorkerState::kLost))));
    w.BindTime(1, until);
    FTUNE_RETURN_IF_ERROR(w.Run());
    extended = ctx.conn.Changes();
    FTUNE_ASSIGN_OR_RETURN(
        Statement j,
        ctx.conn.Prepare(absl::StrCat(
            "UPDATE jobs SET lease_expiry = MAX(lease_expiry, ?) WHERE "
            "worker_id != '' AND lease_expiry IS NOT NULL AND state IN (",
            WorkerStates(), ")")));
    j.BindTime(1, until);
    return j.Run();
  }));
  return extended;
}

absl::StatusOr<core::Worker> SqliteStore::UndrainWorker(absl::string_view id) {
  core::Worker out;
  FTUNE_RETURN_IF_ERROR(Write([&](WriteContext& ctx) -> absl::Status {
    FTUNE_ASSIGN_OR_RETURN(out, internal::LoadWorkerById(ctx.conn, id));
    if (out.state == core::WorkerState::kLost) {
      return absl::FailedPreconditionError(absl::StrCat(
          "worker ", id, " is LOST; it must register again, as a new worker"));
    }
    if (out.state == core::WorkerState::kDraining) {
      FTUNE_ASSIGN_OR_RETURN(
          Statement st,
          ctx.conn.Prepare("UPDATE workers SET state = ? WHERE id = ?"));
      st.Bind(1, static_cast<int>(core::WorkerState::kActive)).Bind(2, id);
      FTUNE_RETURN_IF_ERROR(st.Run());
      out.state = core::WorkerState::kActive;
    }
    return absl::OkStatus();
  }));
  return out;
}

}  // namespace ftune::store
