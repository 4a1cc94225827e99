// SqliteStore: jobs, their events/metrics/checkpoints (one sequence per job),
// leases and attempts. Every state change goes through ApplyStateChange(),
// which checks core's transition table and writes the job row and an event
// row inside the caller's write request (one transaction).
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/ids.h"
#include "common/status.h"
#include "server/store/rows.h"
#include "server/store/sqlite_store.h"

namespace ftune::store {

using core::Job;
using core::JobEvent;
using core::JobState;
using internal::CheckTenantArg;
using internal::LoadJob;
using internal::TenantSees;
using WriteContext = SqliteStore::WriteContext;

namespace {

std::string StateList(std::initializer_list<JobState> states) {
  std::vector<std::string> parts;
  for (JobState s : states) parts.push_back(absl::StrCat(static_cast<int>(s)));
  return absl::StrJoin(parts, ",");
}

const std::string& QueuedStates() {  // Count against max_queued_jobs.
  static const auto* s =
      new std::string(StateList({JobState::kQueued, JobState::kPaused}));
  return *s;
}
const std::string& RunningStates() {  // Count against running quotas.
  static const auto* s =
      new std::string(StateList({JobState::kRunning, JobState::kCancelling}));
  return *s;
}
const std::string& WorkerStates() {
  static const auto* s = new std::string(StateList(
      {JobState::kRunning, JobState::kCancelling, JobState::kPaused}));
  return *s;
}

absl::Status NotFound(absl::string_view job_id) {
  return absl::NotFoundError(absl::StrCat("job ", job_id, " not found"));
}

// The job as `tenant_id` may see it.
absl::StatusOr<Job> LoadJobFor(Connection& conn, absl::string_view tenant_id,
                               absl::string_view job_id, bool with_spec) {
  absl::StatusOr<Job> job = LoadJob(conn, job_id, with_spec);
  if (absl::IsNotFound(job.status()) ||
      (job.ok() && !TenantSees(tenant_id, job->tenant_id))) {
    return NotFound(job_id);
  }
  return job;
}

std::string Describe(const Job& job) {
  return absl::StrCat("job ", job.id, " is ", core::JobStateName(job.state),
                      " (attempt ", job.attempt, ")");
}

absl::Status InsertEvent(Connection& conn, const JobEvent& e) {
  FTUNE_ASSIGN_OR_RETURN(
      Statement st,
      conn.Prepare("INSERT INTO job_events(job_id, sequence, time, attempt, "
                   "type, from_state, to_state, message) "
                   "VALUES(?,?,?,?,?,?,?,?)"));
  st.Bind(1, e.job_id)
      .Bind(2, e.sequence)
      .BindTime(3, e.time)
      .Bind(4, e.attempt)
      .Bind(5, static_cast<int>(e.type));
  if (e.from_state) {
    st.Bind(6, static_cast<int>(*e.from_state));
  } else {
    st.BindNull(6);
  }
  if (e.to_state) {
    st.Bind(7, static_cast<int>(*e.to_state));
  } else {
    st.BindNull(7);
  }
  st.Bind(8, e.message);
  return st.Run();
}

// Appends an event with the job's next sequence (job.last_sequence grows).
absl::StatusOr<JobEvent> AddEvent(WriteContext& ctx, Job& job,
                                  core::JobEventType type,
                                  std::optional<JobState> from,
                                  std::optional<JobState> to,
                                  std::string message) {
  JobEvent e;
  e.job_id = job.id;
  e.sequence = ++job.last_sequence;
  e.time = ctx.now;
  e.attempt = job.attempt;
  e.type = type;
  e.from_state = from;
  e.to_state = to;
  e.message = std::move(message);
  FTUNE_RETURN_IF_ERROR(InsertEvent(ctx.conn, e));
  return e;
}

// Writes every mutable column of `job` (the caller holds the write lock).
absl::Status SaveJob(Connection& conn, const Job& job) {
  FTUNE_ASSIGN_OR_RETURN(
      Statement st,
      conn.Prepare(
          "UPDATE jobs SET state = ?, attempt = ?, restart_count = ?, "
          "update_time = ?, start_time = ?, end_time = ?, error_reason = ?, "
          "error_message = ?, error_retryable = ?, progress_step = ?, "
          "progress_total_steps = ?, progress_epoch = ?, progress_tokens = ?, "
          "latest_metrics = ?, worker_id = ?, lease_expiry = ?, "
          "checkpoint_step = ?, checkpoint_attempt = ?, checkpoint_path = ?, "
          "checkpoint_time = ?, adapter_path = ?, adapter_manifest_sha256 = ?, "
          "last_sequence = ? WHERE id = ?"));
  st.Bind(1, static_cast<int>(job.state))
      .Bind(2, job.attempt)
      .Bind(3, job.restart_count)
      .BindTime(4, job.update_time)
      .BindTime(5, job.start_time)
      .BindTime(6, job.end_time)
      .Bind(7, static_cast<int>(job.error.reason))
      .Bind(8, job.error.message)
      .Bind(9, job.error.retryable ? 1 : 0)
      .Bind(10, job.progress.step)
      .Bind(11, job.progress.total_steps)
      .Bind(12, job.progress.epoch)
      .Bind(13, job.progress.tokens);
  if (job.latest_metrics) {
    st.Bind(14, internal::EncodeMetricPoint(*job.latest_metrics));
  } else {
    st.BindNull(14);
  }
  st.Bind(15, job.worker_id).BindTime(16, job.lease_expiry);
  if (job.last_checkpoint) {
    st.Bind(17, job.last_checkpoint->step)
        .Bind(18, job.last_checkpoint->attempt)
        .Bind(19, job.last_checkpoint->path)
        .BindTime(20, job.last_checkpoint->create_time);
  } else {
    st.BindNull(17).BindNull(18).BindNull(19).BindNull(20);
  }
  st.Bind(21, job.adapter.path)
      .Bind(22, job.adapter.manifest_sha256)
      .Bind(23, job.last_sequence)
      .Bind(24, job.id);
  return st.Run();
}

// Saves `job` and reports the change for on_commit.
absl::Status Finish(WriteContext& ctx, Job& job, JobChange change) {
  job.update_time = ctx.now;
  FTUNE_RETURN_IF_ERROR(SaveJob(ctx.conn, job));
  change.job = job;
  change.job.spec.clear();
  ctx.changes.push_back(std::move(change));
  return absl::OkStatus();
}

// Moves `job` to `to` (must be an edge of core's table) and records the
// STATE_CHANGED event in `change`. Does not save.
absl::Status ApplyStateChange(WriteContext& ctx, Job& job, JobState to,
                              std::string message, JobChange& change) {
  if (!core::IsAllowedTransition(job.state, to)) {
    return absl::FailedPreconditionError(
        absl::StrCat(Describe(job), "; cannot go ",
                     core::JobStateName(job.state), " -> ",
                     core::JobStateName(to)));
  }
  const JobState from = job.state;
  job.state = to;
  if (to == JobState::kRunning && job.start_time == absl::InfinitePast()) {
    job.start_time = ctx.now;
  }
  if (core::IsTerminal(to)) job.end_time = ctx.now;
  if (core::IsTerminal(to) || to == JobState::kQueued) {
    job.worker_id.clear();
    job.lease_expiry = absl::InfinitePast();
  }
  FTUNE_ASSIGN_OR_RETURN(JobEvent e,
                         AddEvent(ctx, job, core::JobEventType::kStateChanged,
                                  from, to, std::move(message)));
  change.events.push_back(std::move(e));
  return absl::OkStatus();
}

absl::StatusOr<int64_t> CountJobs(Connection& conn, absl::string_view tenant_id,
                                  const std::string& states,
                                  absl::string_view what) {
  FTUNE_ASSIGN_OR_RETURN(
      Statement st,
      conn.Prepare(absl::StrCat("SELECT ", what,
                                " FROM jobs WHERE tenant_id = ? AND state IN (",
                                states, ")")));
  st.Bind(1, tenant_id);
  FTUNE_ASSIGN_OR_RETURN(bool row, st.Step());
  return row ? st.ColumnInt(0) : 0;
}

// Loads the job a worker report is about and checks the fencing token:
// the report's attempt must be the current one, the job must hold a worker,
// and (if given) that worker must be the reporter.
absl::StatusOr<Job> LoadFenced(Connection& conn, absl::string_view job_id,
                               int64_t attempt, absl::string_view worker_id) {
  FTUNE_ASSIGN_OR_RETURN(Job job, LoadJob(conn, job_id, /*with_spec=*/false));
  if (job.attempt != attempt) {
    return absl::FailedPreconditionError(absl::StrCat(
        "stale attempt ", attempt, ": ", Describe(job), "; stop this attempt"));
  }
  if (!core::OccupiesWorker(job.state) || job.worker_id.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        Describe(job), " and holds no lease; stop this attempt"));
  }
  if (!worker_id.empty() && job.worker_id != worker_id) {
    return absl::FailedPreconditionError(
        absl::StrCat(Describe(job), " and its lease belongs to worker ",
                     job.worker_id, ", not ", worker_id));
  }
  return job;
}

// Applies a core plan (end of an attempt or lost lease).
absl::Status ApplyPlan(WriteContext& ctx, Job& job,
                       const core::AttemptPlan& plan) {
  JobChange change;
  if (plan.error) job.error = *plan.error;
  if (plan.adapter) job.adapter = *plan.adapter;
  if (plan.new_state != job.state) {
    // The event carries the attempt that ended; the new one starts after.
    FTUNE_RETURN_IF_ERROR(
        ApplyStateChange(ctx, job, plan.new_state, plan.message, change));
  } else {
    FTUNE_ASSIGN_OR_RETURN(
        JobEvent e, AddEvent(ctx, job, core::JobEventType::kMessage,
                             std::nullopt, std::nullopt, plan.message));
    change.events.push_back(std::move(e));
  }
  job.attempt = plan.new_attempt;
  job.restart_count = plan.new_restart_count;
  if (plan.clear_worker) {
    job.worker_id.clear();
    job.lease_expiry = absl::InfinitePast();
  }
  return Finish(ctx, job, std::move(change));
}

absl::Status ValidateNewJob(const Job& job) {
  if (job.tenant_id.empty() || job.tenant_id == kAnyTenant) {
    return absl::InvalidArgumentError("job tenant_id is required");
  }
  if (job.model.empty()) return absl::InvalidArgumentError("model is required");
  if (job.training_file_id.empty()) {
    return absl::InvalidArgumentError("training_file_id is required");
  }
  if (job.resources.gpus < 0 || job.resources.memory_bytes < 0 ||
      job.resources.cpu_threads < 0) {
    return absl::InvalidArgumentError(
        "resources.gpus, memory_bytes and cpu_threads must be >= 0");
  }
  if (job.max_restarts < 0) {
    return absl::InvalidArgumentError("max_restarts must be >= 0");
  }
  return absl::OkStatus();
}

absl::Status CheckJobFile(Connection& conn, const Job& job,
                          absl::string_view field, absl::string_view file_id) {
  absl::StatusOr<core::FileRecord> f =
      internal::LoadVisibleFile(conn, job.tenant_id, file_id);
  if (absl::IsNotFound(f.status())) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": file ", file_id, " not found"));
  }
  FTUNE_RETURN_IF_ERROR(f.status());
  if (f->status != core::FileStatus::kReady) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": file ", file_id, " is ",
                     core::FileStatusName(f->status), ", not READY"));
  }
  return absl::OkStatus();
}

absl::Status InsertJob(Connection& conn, const Job& job) {
  FTUNE_ASSIGN_OR_RETURN(
      Statement st,
      conn.Prepare(
          "INSERT INTO jobs(id, tenant_id, state, attempt, restart_count, "
          "request_id, spec, priority, gpus, memory_bytes, gpu_type, "
          "cpu_threads, max_restarts, labels, model, training_file_id, "
          "validation_file_id, create_time, update_time, last_sequence) "
          "VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"));
  st.Bind(1, job.id)
      .Bind(2, job.tenant_id)
      .Bind(3, static_cast<int>(job.state))
      .Bind(4, job.attempt)
      .Bind(5, job.restart_count);
  if (job.request_id.empty()) {
    st.BindNull(6);
  } else {
    st.Bind(6, job.request_id);
  }
  st.BindBlob(7, job.spec)
      .Bind(8, job.priority)
      .Bind(9, job.resources.gpus)
      .Bind(10, job.resources.memory_bytes)
      .Bind(11, job.resources.gpu_type)
      .Bind(12, job.resources.cpu_threads)
      .Bind(13, job.max_restarts)
      .Bind(14, internal::EncodeStringMap(job.labels))
      .Bind(15, job.model)
      .Bind(16, job.training_file_id)
      .Bind(17, job.validation_file_id)
      .BindTime(18, job.create_time)
      .BindTime(19, job.update_time)
      .Bind(20, job.last_sequence);
  absl::Status s = st.Run();
  if (absl::IsAlreadyExists(s)) {
    return absl::AlreadyExistsError(absl::StrCat("job ", job.id, " already exists"));
  }
  FTUNE_RETURN_IF_ERROR(s);
  const int64_t seq = conn.LastInsertRowId();
  for (const auto& [key, value] : job.labels) {
    FTUNE_ASSIGN_OR_RETURN(
        Statement l, conn.Prepare("INSERT INTO job_labels(job_seq, key, value) "
                                  "VALUES(?,?,?)"));
    l.Bind(1, seq).Bind(2, key).Bind(3, value);
    FTUNE_RETURN_IF_ERROR(l.Run());
  }
  return absl::OkStatus();
}

}  // namespace

// ------------------------------------------------------------- create ----

absl::StatusOr<CreateJobResult> SqliteStore::CreateJob(Job job) {
  FTUNE_RETURN_IF_ERROR(ValidateNewJob(job));
  if (job.id.empty()) job.id = NewId(kJobIdPrefix);
  CreateJobResult result;
  FTUNE_RETURN_IF_ERROR(Write([&](WriteContext& ctx) -> absl::Status {
    Connection& conn = ctx.conn;
    if (!job.request_id.empty()) {
      FTUNE_ASSIGN_OR_RETURN(
          Statement st, conn.Prepare("SELECT id FROM jobs WHERE tenant_id = ? "
                                     "AND request_id = ?"));
      st.Bind(1, job.tenant_id).Bind(2, job.request_id);
      FTUNE_ASSIGN_OR_RETURN(bool seen, st.Step());
      if (seen) {
        const std::string original = st.ColumnText(0);
        FTUNE_ASSIGN_OR_RETURN(result.job,
                               LoadJob(conn, original, /*with_spec=*/true));
        result.created = false;
        return absl::OkStatus();
      }
    }
    absl::StatusOr<core::Tenant> tenant =
        internal::LoadTenantById(conn, job.tenant_id);
    if (absl::IsNotFound(tenant.status())) {
      return absl::NotFoundError(
          absl::StrCat("tenant ", job.tenant_id, " not found"));
    }
    FTUNE_RETURN_IF_ERROR(tenant.status());
    {
      FTUNE_ASSIGN_OR_RETURN(Statement st,
                             conn.Prepare("SELECT 1 FROM models WHERE name = ?"));
      st.Bind(1, job.model);
      FTUNE_ASSIGN_OR_RETURN(bool known, st.Step());
      if (!known) {
        return absl::InvalidArgumentError(
            absl::StrCat("model: no registered model named '", job.model, "'"));
      }
    }
    FTUNE_RETURN_IF_ERROR(
        CheckJobFile(conn, job, "training_file_id", job.training_file_id));
    if (!job.validation_file_id.empty()) {
      FTUNE_RETURN_IF_ERROR(CheckJobFile(conn, job, "validation_file_id",
                                         job.validation_file_id));
    }
    const core::Quota& q = tenant->quota;
    if (q.max_gpus > 0 && job.resources.gpus > q.max_gpus) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "quota max_gpus=", q.max_gpus, " is below the job's ",
          job.resources.gpus, " GPUs; it could never run"));
    }
    if (q.max_queued_jobs > 0) {
      FTUNE_ASSIGN_OR_RETURN(
          int64_t queued, CountJobs(conn, job.tenant_id, QueuedStates(), "COUNT(*)"));
      if (queued >= q.max_queued_jobs) {
        return absl::ResourceExhaustedError(absl::StrCat(
            "quota max_queued_jobs=", q.max_queued_jobs, " reached (", queued,
            " jobs queued or paused)"));
      }
    }
    job.state = JobState::kQueued;
    job.attempt = 1;
    job.restart_count = 0;
    job.create_time = job.update_time = ctx.now;
    job.start_time = job.end_time = absl::InfinitePast();
    job.error = core::JobError{};
    job.progress = core::JobProgress{};
    job.latest_metrics.reset();
    job.worker_id.clear();
    job.lease_expiry = absl::InfinitePast();
    job.last_checkpoint.reset();
    job.adapter = core::Adapter{};
    job.last_sequence = 0;
    // The event first, so the job row is inserted complete (last_sequence
    // = 1) and needs no second UPDATE: creates are the hot write path.
    JobChange change;
    FTUNE_ASSIGN_OR_RETURN(
        JobEvent e, AddEvent(ctx, job, core::JobEventType::kCreated,
                             std::nullopt, JobState::kQueued, "job created"));
    change.events.push_back(std::move(e));
    FTUNE_RETURN_IF_ERROR(InsertJob(conn, job));
    change.job = job;
    change.job.spec.clear();
    ctx.changes.push_back(std::move(change));
    result.job = job;
    result.created = true;
    return absl::OkStatus();
  }));
  return result;
}

absl::StatusOr<Job> SqliteStore::GetJob(absl::string_view tenant_id,
                                        absl::string_view job_id) {
  FTUNE_RETURN_IF_ERROR(CheckTenantArg(tenant_id));
  Job out;
  FTUNE_RETURN_IF_ERROR(Read([&](Connection& conn) -> absl::Status {
    FTUNE_ASSIGN_OR_RETURN(out, LoadJobFor(conn, tenant_id, job_id, true));
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<Page<Job>> SqliteStore::ListJobs(absl::string_view tenant_id,
                                                 const JobFilter& filter,
                                                 int page_size,
                                                 absl::string_view page_token) {
  FTUNE_RETURN_IF_ERROR(CheckTenantArg(tenant_id));
  FTUNE_ASSIGN_OR_RETURN(int64_t before,
                         internal::DecodePageToken("jobs", page_token));
  const int limit = internal::ClampPageSize(page_size);
  // The SQL's shape depends only on the number of states/labels, so the
  // statement cache holds a few variants.
  std::string sql = absl::StrCat("SELECT ", internal::JobColumns(true),
                                 ", seq FROM jobs WHERE (?1 = 0 OR seq < ?1)");
  const bool all = tenant_id == kAnyTenant;
  if (!all) absl::StrAppend(&sql, " AND tenant_id = ?2");
  if (!filter.states.empty()) {
    std::vector<std::string> states;
    for (JobState s : filter.states) {
      states.push_back(absl::StrCat(static_cast<int>(s)));
    }
    absl::StrAppend(&sql, " AND state IN (", absl::StrJoin(states, ","), ")");
  }
  for (size_t i = 0; i < filter.labels.size(); ++i) {
    absl::StrAppend(&sql,
                    " AND EXISTS(SELECT 1 FROM job_labels l WHERE "
                    "l.job_seq = jobs.seq AND l.key = ?",
                    4 + 2 * i, " AND l.value = ?", 5 + 2 * i, ")");
  }
  absl::StrAppend(&sql, " ORDER BY seq DESC LIMIT ?3");
  Page<Job> page;
  FTUNE_RETURN_IF_ERROR(Read([&](Connection& conn) -> absl::Status {
    FTUNE_ASSIGN_OR_RETURN(Statement st, conn.Prepare(sql));
    st.Bind(1, before).Bind(3, limit + 1);
    if (!all) st.Bind(2, tenant_id);
    int index = 4;
    for (const auto& [key, value] : filter.labels) {
      st.Bind(index, key).Bind(index + 1, value);
      index += 2;
    }
    int64_t last_seq = 0;
    const int seq_col = 38;
    while (true) {
      FTUNE_ASSIGN_OR_RETURN(bool row, st.Step());
      if (!row) break;
      if (static_cast<int>(page.items.size()) == limit) {
        page.next_page_token = internal::EncodePageToken("jobs", last_seq);
        break;
      }
      FTUNE_ASSIGN_OR_RETURN(Job job, internal::ReadJobRow(st, true));
      page.items.push_back(std::move(job));
      last_seq = st.ColumnInt(seq_col);
    }
    return absl::OkStatus();
  }));
  return page;
}

// -------------------------------------------------------- transitions ----

absl::StatusOr<Job> SqliteStore::TransitionJob(const JobTransition& t) {
  FTUNE_RETURN_IF_ERROR(CheckTenantArg(t.tenant_id));
  Job job;
  FTUNE_RETURN_IF_ERROR(Write([&](WriteContext& ctx) -> absl::Status {
    FTUNE_ASSIGN_OR_RETURN(job, LoadJobFor(ctx.conn, t.tenant_id, t.job_id, true));
    if (job.state != t.expected_state ||
        (t.expected_attempt >= 0 && job.attempt != t.expected_attempt)) {
      return absl::FailedPreconditionError(absl::StrCat(
          Describe(job), ", expected ", core::JobStateName(t.expected_state),
          t.expected_attempt >= 0
              ? absl::StrCat(" (attempt ", t.expected_attempt, ")")
              : std::string()));
    }
    JobChange change;
    if (t.error) job.error = *t.error;
    if (t.adapter) job.adapter = *t.adapter;
    FTUNE_RETURN_IF_ERROR(
        ApplyStateChange(ctx, job, t.new_state, t.message, change));
    if (t.increment_attempt) ++job.attempt;
    if (t.clear_worker) {
      job.worker_id.clear();
      job.lease_expiry = absl::InfinitePast();
    }
    return Finish(ctx, job, std::move(change));
  }));
  return job;
}

absl::StatusOr<Job> SqliteStore::CancelJob(absl::string_view tenant_id,
                                           absl::string_view job_id,
                                           absl::string_view reason) {
  FTUNE_RETURN_IF_ERROR(CheckTenantArg(tenant_id));
  Job job;
  FTUNE_RETURN_IF_ERROR(Write([&](WriteContext& ctx) -> absl::Status {
    FTUNE_ASSIGN_OR_RETURN(job, LoadJobFor(ctx.conn, tenant_id, job_id, true));
    absl::StatusOr<JobState> target = core::CancelTarget(job.state);
    if (!target.ok()) return Annotate(target.status(), Describe(job));
    if (*target == job.state) return absl::OkStatus();  // Already cancelling.
    JobChange change;
    FTUNE_RETURN_IF_ERROR(ApplyStateChange(
        ctx, job, *target,
        reason.empty() ? "cancel requested"
                       : absl::StrCat("cancel requested: ", reason),
        change));
    return Finish(ctx, job, std::move(change));
  }));
  return job;
}

absl::StatusOr<Job> SqliteStore::PauseJob(absl::string_view tenant_id,
                                          absl::string_view job_id) {
  FTUNE_RETURN_IF_ERROR(CheckTenantArg(tenant_id));
  Job job;
  FTUNE_RETURN_IF_ERROR(Write([&](WriteContext& ctx) -> absl::Status {
    FTUNE_ASSIGN_OR_RETURN(job, LoadJobFor(ctx.conn, tenant_id, job_id, true));
    absl::StatusOr<JobState> target = core::PauseTarget(job.state);
    if (!target.ok()) return Annotate(target.status(), Describe(job));
    JobChange change;
    FTUNE_RETURN_IF_ERROR(
        ApplyStateChange(ctx, job, *target, "pause requested", change));
    return Finish(ctx, job, std::move(change));
  }));
  return job;
}

absl::StatusOr<Job> SqliteStore::ResumeJob(absl::string_view tenant_id,
                                           absl::string_view job_id) {
  FTUNE_RETURN_IF_ERROR(CheckTenantArg(tenant_id));
  Job job;
  FTUNE_RETURN_IF_ERROR(Write([&](WriteContext& ctx) -> absl::Status {
    FTUNE_ASSIGN_OR_RETURN(job, LoadJobFor(ctx.conn, tenant_id, job_id, true));
    absl::StatusOr<JobState> target = core::ResumeTarget(job.state);
    if (!target.ok()) return Annotate(target.status(), Describe(job));
    JobChange change;
    FTUNE_RETURN_IF_ERROR(ApplyStateChange(
        ctx, job, *target,
        absl::StrCat("resumed as attempt ", job.attempt + 1), change));
    // A new attempt: whatever the paused worker still reports is stale.
    ++job.attempt;
    return Finish(ctx, job, std::move(change));
  }));
  return job;
}

// -------------------------------------------- events, metrics, checkpoints --

absl::StatusOr<std::vector<core::MetricPoint>> SqliteStore::AppendMetrics(
    absl::string_view job_id, int64_t attempt,
    std::vector<core::MetricPoint> points,
    const std::optional<core::JobProgress>& progress) {
  FTUNE_RETURN_IF_ERROR(Write([&](WriteContext& ctx) -> absl::Status {
    FTUNE_ASSIGN_OR_RETURN(Job job, LoadFenced(ctx.conn, job_id, attempt, ""));
    FTUNE_ASSIGN_OR_RETURN(
        Statement st,
        ctx.conn.Prepare(
            "INSERT INTO job_metrics(job_id, sequence, time, attempt, step, "
            "epoch, train_loss, eval_loss, lr, grad_norm, tokens_per_s, "
            "peak_memory_bytes) VALUES(?,?,?,?,?,?,?,?,?,?,?,?)"));
    for (core::MetricPoint& p : points) {
      p.job_id = job.id;
      p.sequence = ++job.last_sequence;
      p.attempt = attempt;
      if (p.time == absl::InfinitePast()) p.time = ctx.now;
      st.Bind(1, p.job_id)
          .Bind(2, p.sequence)
          .BindTime(3, p.time)
          .Bind(4, p.attempt)
          .Bind(5, p.step)
          .Bind(6, p.epoch)
          .Bind(7, p.train_loss)
          .BindOptional(8, p.eval_loss)
          .Bind(9, p.lr)
          .Bind(10, p.grad_norm)
          .Bind(11, p.tokens_per_s)
          .Bind(12, p.peak_memory_bytes);
      FTUNE_RETURN_IF_ERROR(st.Run());
      st.Reset();  // Same statement for the next point.
    }
    if (!points.empty()) {
      job.latest_metrics = points.back();
      job.progress.step = points.back().step;
      job.progress.epoch = points.back().epoch;
    }
    if (progress) job.progress = *progress;
    JobChange change;
    change.metrics = points;
    return Finish(ctx, job, std::move(change));
  }));
  return points;
}

absl::StatusOr<JobEvent> SqliteStore::AppendJobMessage(
    absl::string_view job_id, int64_t attempt, absl::string_view message) {
  JobEvent out;
  FTUNE_RETURN_IF_ERROR(Write([&](WriteContext& ctx) -> absl::Status {
    FTUNE_ASSIGN_OR_RETURN(Job job, LoadFenced(ctx.conn, job_id, attempt, ""));
    FTUNE_ASSIGN_OR_RETURN(
        out, AddEvent(ctx, job, core::JobEventType::kMessage, std::nullopt,
                      std::nullopt, std::string(message)));
    JobChange change;
    change.events.push_back(out);
    return Finish(ctx, job, std::move(change));
  }));
  return out;
}

namespace {
int ClampLimit(int limit) { return limit <= 0 || limit > 1000 ? 1000 : limit; }
}  // namespace

absl::StatusOr<std::vector<JobEvent>> SqliteStore::ListJobEvents(
    absl::string_view tenant_id, absl::string_view job_id,
    int64_t after_sequence, int limit) {
  FTUNE_RETURN_IF_ERROR(CheckTenantArg(tenant_id));
  std::vector<JobEvent> out;
  FTUNE_RETURN_IF_ERROR(Read([&](Connection& conn) -> absl::Status {
    FTUNE_RETURN_IF_ERROR(LoadJobFor(conn, tenant_id, job_id, false).status());
    FTUNE_ASSIGN_OR_RETURN(
        Statement st,
        conn.Prepare("SELECT sequence, time, attempt, type, from_state, "
                     "to_state, message FROM job_events WHERE job_id = ? AND "
                     "sequence > ? ORDER BY sequence LIMIT ?"));
    st.Bind(1, job_id).Bind(2, after_sequence).Bind(3, ClampLimit(limit));
    while (true) {
      FTUNE_ASSIGN_OR_RETURN(bool row, st.Step());
      if (!row) break;
      JobEvent e;
      e.job_id = std::string(job_id);
      e.sequence = st.ColumnInt(0);
      e.time = st.ColumnTime(1);
      e.attempt = st.ColumnInt(2);
      e.type = static_cast<core::JobEventType>(st.ColumnInt(3));
      if (!st.ColumnIsNull(4)) {
        FTUNE_ASSIGN_OR_RETURN(e.from_state,
                               core::JobStateFromInt(st.ColumnInt(4)));
      }
      if (!st.ColumnIsNull(5)) {
        FTUNE_ASSIGN_OR_RETURN(e.to_state,
                               core::JobStateFromInt(st.ColumnInt(5)));
      }
      e.message = st.ColumnText(6);
      out.push_back(std::move(e));
    }
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<std::vector<core::MetricPoint>> SqliteStore::ListJobMetrics(
    absl::string_view tenant_id, absl::string_view job_id,
    int64_t after_sequence, int limit) {
  FTUNE_RETURN_IF_ERROR(CheckTenantArg(tenant_id));
  std::vector<core::MetricPoint> out;
  FTUNE_RETURN_IF_ERROR(Read([&](Connection& conn) -> absl::Status {
    FTUNE_RETURN_IF_ERROR(LoadJobFor(conn, tenant_id, job_id, false).status());
    FTUNE_ASSIGN_OR_RETURN(
        Statement st,
        conn.Prepare("SELECT sequence, time, attempt, step, epoch, train_loss, "
                     "eval_loss, lr, grad_norm, tokens_per_s, "
                     "peak_memory_bytes FROM job_metrics WHERE job_id = ? AND "
                     "sequence > ? ORDER BY sequence LIMIT ?"));
    st.Bind(1, job_id).Bind(2, after_sequence).Bind(3, ClampLimit(limit));
    while (true) {
      FTUNE_ASSIGN_OR_RETURN(bool row, st.Step());
      if (!row) break;
      core::MetricPoint p;
      p.job_id = std::string(job_id);
      p.sequence = st.ColumnInt(0);
      p.time = st.ColumnTime(1);
      p.attempt = st.ColumnInt(2);
      p.step = st.ColumnInt(3);
      p.epoch = st.ColumnDouble(4);
      p.train_loss = st.ColumnDouble(5);
      p.eval_loss = st.ColumnOptionalDouble(6);
      p.lr = st.ColumnDouble(7);
      p.grad_norm = st.ColumnDouble(8);
      p.tokens_per_s = st.ColumnDouble(9);
      p.peak_memory_bytes = st.ColumnInt(10);
      out.push_back(std::move(p));
    }
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<core::Checkpoint> SqliteStore::AddCheckpoint(
    absl::string_view job_id, int64_t attempt, core::Checkpoint checkpoint) {
  if (checkpoint.path.empty() || checkpoint.step < 0) {
    return absl::InvalidArgumentError(
        "checkpoint needs a path and a step >= 0");
  }
  FTUNE_RETURN_IF_ERROR(Write([&](WriteContext& ctx) -> absl::Status {
    FTUNE_ASSIGN_OR_RETURN(Job job, LoadFenced(ctx.conn, job_id, attempt, ""));
    checkpoint.job_id = job.id;
    checkpoint.attempt = attempt;
    checkpoint.create_time = ctx.now;
    FTUNE_ASSIGN_OR_RETURN(
        Statement st,
        ctx.conn.Prepare("INSERT OR REPLACE INTO checkpoints(job_id, step, "
                         "attempt, path, create_time) VALUES(?,?,?,?,?)"));
    st.Bind(1, checkpoint.job_id)
        .Bind(2, checkpoint.step)
        .Bind(3, checkpoint.attempt)
        .Bind(4, checkpoint.path)
        .BindTime(5, checkpoint.create_time);
    FTUNE_RETURN_IF_ERROR(st.Run());
    job.last_checkpoint = checkpoint;
    JobChange change;
    FTUNE_ASSIGN_OR_RETURN(
        JobEvent e,
        AddEvent(ctx, job, core::JobEventType::kCheckpoint, std::nullopt,
                 std::nullopt,
                 absl::StrCat("checkpoint at step ", checkpoint.step, ": ",
                              checkpoint.path)));
    change.events.push_back(std::move(e));
    return Finish(ctx, job, std::move(change));
  }));
  return checkpoint;
}

absl::StatusOr<std::vector<core::Checkpoint>> SqliteStore::ListCheckpoints(
    absl::string_view tenant_id, absl::string_view job_id) {
  FTUNE_RETURN_IF_ERROR(CheckTenantArg(tenant_id));
  std::vector<core::Checkpoint> out;
  FTUNE_RETURN_IF_ERROR(Read([&](Connection& conn) -> absl::Status {
    FTUNE_RETURN_IF_ERROR(LoadJobFor(conn, tenant_id, job_id, false).status());
    FTUNE_ASSIGN_OR_RETURN(
        Statement st,
        conn.Prepare("SELECT step, attempt, path, create_time FROM checkpoints "
                     "WHERE job_id = ? ORDER BY step"));
    st.Bind(1, job_id);
    while (true) {
      FTUNE_ASSIGN_OR_RETURN(bool row, st.Step());
      if (!row) break;
      core::Checkpoint c;
      c.job_id = std::string(job_id);
      c.step = st.ColumnInt(0);
      c.attempt = st.ColumnInt(1);
      c.path = st.ColumnText(2);
      c.create_time = st.ColumnTime(3);
      out.push_back(std::move(c));
    }
    return absl::OkStatus();
  }));
  return out;
}

// ------------------------------------------------------------- leases ----

absl::StatusOr<std::vector<JobAttemptRef>> SqliteStore::HeartbeatWorker(
    absl::string_view worker_id, absl::Time lease_expiry) {
  std::vector<JobAttemptRef> held;
  FTUNE_RETURN_IF_ERROR(Write([&](WriteContext& ctx) -> absl::Status {
    FTUNE_ASSIGN_OR_RETURN(core::Worker w,
                           internal::LoadWorkerById(ctx.conn, worker_id));
    if (w.state == core::WorkerState::kLost) {
      return absl::FailedPreconditionError(absl::StrCat(
          "worker ", worker_id, " is LOST (its lease expired); register again"));
    }
    FTUNE_ASSIGN_OR_RETURN(
        Statement up,
        ctx.conn.Prepare("UPDATE workers SET last_heartbeat = ?, "
                         "lease_expiry = ? WHERE id = ?"));
    up.BindTime(1, ctx.now).BindTime(2, lease_expiry).Bind(3, worker_id);
    FTUNE_RETURN_IF_ERROR(up.Run());
    FTUNE_ASSIGN_OR_RETURN(
        Statement jobs,
        ctx.conn.Prepare(absl::StrCat(
            "UPDATE jobs SET lease_expiry = ? WHERE worker_id = ? AND state "
            "IN (", WorkerStates(), ") RETURNING id, attempt")));
    jobs.BindTime(1, lease_expiry).Bind(2, worker_id);
    while (true) {
      FTUNE_ASSIGN_OR_RETURN(bool row, jobs.Step());
      if (!row) break;
      held.push_back(JobAttemptRef{jobs.ColumnText(0), jobs.ColumnInt(1)});
    }
    return absl::OkStatus();
  }));
  return held;
}

absl::StatusOr<Job> SqliteStore::GrantLease(absl::string_view job_id,
                                            int64_t expected_attempt,
                                            absl::string_view worker_id,
                                            absl::Time lease_expiry) {
  Job job;
  FTUNE_RETURN_IF_ERROR(Write([&](WriteContext& ctx) -> absl::Status {
    FTUNE_ASSIGN_OR_RETURN(job, LoadJob(ctx.conn, job_id, true));
    if (job.state != JobState::kQueued || job.attempt != expected_attempt) {
      return absl::FailedPreconditionError(
          absl::StrCat(Describe(job), ", expected QUEUED (attempt ",
                       expected_attempt, ")"));
    }
    absl::StatusOr<core::Worker> w = internal::LoadWorkerById(ctx.conn, worker_id);
    if (absl::IsNotFound(w.status())) {
      return absl::FailedPreconditionError(
          absl::StrCat("worker ", worker_id, " is not registered"));
    }
    FTUNE_RETURN_IF_ERROR(w.status());
    if (w->state != core::WorkerState::kActive) {
      return absl::FailedPreconditionError(
          absl::StrCat("worker ", worker_id, " is ",
                       core::WorkerStateName(w->state), ", not ACTIVE"));
    }
    FTUNE_ASSIGN_OR_RETURN(core::Tenant tenant,
                           internal::LoadTenantById(ctx.conn, job.tenant_id));
    const core::Quota& q = tenant.quota;
    if (q.max_running_jobs > 0) {
      FTUNE_ASSIGN_OR_RETURN(int64_t running,
                             CountJobs(ctx.conn, job.tenant_id, RunningStates(),
                                       "COUNT(*)"));
      if (running >= q.max_running_jobs) {
        return absl::ResourceExhaustedError(
            absl::StrCat("quota max_running_jobs=", q.max_running_jobs,
                         " reached (", running, " jobs running)"));
      }
    }
    if (q.max_gpus > 0 && job.resources.gpus > 0) {
      FTUNE_ASSIGN_OR_RETURN(
          int64_t gpus, CountJobs(ctx.conn, job.tenant_id, RunningStates(),
                                  "COALESCE(SUM(gpus), 0)"));
      if (gpus + job.resources.gpus > q.max_gpus) {
        return absl::ResourceExhaustedError(absl::StrCat(
            "quota max_gpus=", q.max_gpus, " would be exceeded (", gpus,
            " GPUs in use + ", job.resources.gpus, ")"));
      }
    }
    JobChange change;
    FTUNE_RETURN_IF_ERROR(ApplyStateChange(
        ctx, job, JobState::kRunning,
        absl::StrCat("lease granted to worker ", worker_id, " (attempt ",
                     job.attempt, ")"),
        change));
    job.worker_id = std::string(worker_id);
    job.lease_expiry = lease_expiry;
    return Finish(ctx, job, std::move(change));
  }));
  return job;
}

absl::StatusOr<Job> SqliteStore::RenewLease(absl::string_view job_id,
                                            int64_t attempt,
                                            absl::string_view worker_id,
                                            absl::Time lease_expiry) {
  if (worker_id.empty()) return absl::InvalidArgumentError("worker_id is empty");
  Job job;
  FTUNE_RETURN_IF_ERROR(Write([&](WriteContext& ctx) -> absl::Status {
    FTUNE_ASSIGN_OR_RETURN(job, LoadFenced(ctx.conn, job_id, attempt, worker_id));
    FTUNE_ASSIGN_OR_RETURN(
        Statement st,
        ctx.conn.Prepare("UPDATE jobs SET lease_expiry = ? WHERE id = ?"));
    st.BindTime(1, lease_expiry).Bind(2, job_id);
    FTUNE_RETURN_IF_ERROR(st.Run());
    job.lease_expiry = lease_expiry;
    return absl::OkStatus();
  }));
  return job;
}

absl::StatusOr<Job> SqliteStore::EndAttempt(absl::string_view job_id,
                                            int64_t attempt,
                                            absl::string_view worker_id,
                                            const core::AttemptEnd& end) {
  if (worker_id.empty()) return absl::InvalidArgumentError("worker_id is empty");
  Job job;
  FTUNE_RETURN_IF_ERROR(Write([&](WriteContext& ctx) -> absl::Status {
    FTUNE_ASSIGN_OR_RETURN(job, LoadFenced(ctx.conn, job_id, attempt, worker_id));
    FTUNE_ASSIGN_OR_RETURN(core::AttemptPlan plan, core::PlanAttemptEnd(job, end));
    return ApplyPlan(ctx, job, plan);
  }));
  return job;
}

absl::StatusOr<LeaseExpiryResult> SqliteStore::ExpireLeases(absl::Time now) {
  LeaseExpiryResult result;
  FTUNE_RETURN_IF_ERROR(Write([&](WriteContext& ctx) -> absl::Status {
    result = LeaseExpiryResult{};
    std::vector<std::string> ids;
    {
      FTUNE_ASSIGN_OR_RETURN(
          Statement st,
          ctx.conn.Prepare(absl::StrCat(
              "SELECT id FROM jobs WHERE lease_expiry IS NOT NULL AND "
              "lease_expiry <= ? AND worker_id != '' AND state IN (",
              WorkerStates(), ") ORDER BY seq")));
      st.BindTime(1, now);
      while (true) {
        FTUNE_ASSIGN_OR_RETURN(bool row, st.Step());
        if (!row) break;
        ids.push_back(st.ColumnText(0));
      }
    }
    for (const std::string& id : ids) {
      FTUNE_ASSIGN_OR_RETURN(Job job, LoadJob(ctx.conn, id, false));
      FTUNE_ASSIGN_OR_RETURN(core::AttemptPlan plan, core::PlanLeaseLoss(job));
      const JobState before = job.state;
      FTUNE_RETURN_IF_ERROR(ApplyPlan(ctx, job, plan));
      if (before == JobState::kRunning && job.state == JobState::kQueued) {
        result.requeued.push_back(job);
      } else if (job.state == JobState::kFailed) {
        result.failed.push_back(job);
      } else {
        result.other.push_back(job);
      }
    }
    FTUNE_ASSIGN_OR_RETURN(
        Statement w,
        ctx.conn.Prepare(absl::StrCat(
            "UPDATE workers SET state = ", static_cast<int>(core::WorkerState::kLost),
            " WHERE lease_expiry <= ? AND state != ",
            static_cast<int>(core::WorkerState::kLost), " RETURNING id")));
    w.BindTime(1, now);
    while (true) {
      FTUNE_ASSIGN_OR_RETURN(bool row, w.Step());
      if (!row) break;
      result.lost_workers.push_back(w.ColumnText(0));
    }
    return absl::OkStatus();
  }));
  return result;
}

absl::StatusOr<core::SchedulingSnapshot> SqliteStore::GetSchedulingSnapshot() {
  core::SchedulingSnapshot snap;
  FTUNE_RETURN_IF_ERROR(Read([&](Connection& conn) -> absl::Status {
    auto load = [&](const std::string& where,
                    std::vector<Job>& out) -> absl::Status {
      FTUNE_ASSIGN_OR_RETURN(
          Statement st,
          conn.Prepare(absl::StrCat("SELECT ", internal::JobColumns(false),
                                    " FROM jobs WHERE ", where,
                                    " ORDER BY seq")));
      while (true) {
        FTUNE_ASSIGN_OR_RETURN(bool row, st.Step());
        if (!row) break;
        FTUNE_ASSIGN_OR_RETURN(Job j, internal::ReadJobRow(st, false));
        out.push_back(std::move(j));
      }
      return absl::OkStatus();
    };
    FTUNE_RETURN_IF_ERROR(load(
        absl::StrCat("state = ", static_cast<int>(JobState::kQueued)),
        snap.queued));
    FTUNE_RETURN_IF_ERROR(load(
        absl::StrCat("worker_id != '' AND state IN (", WorkerStates(), ")"),
        snap.active));
    FTUNE_ASSIGN_OR_RETURN(snap.tenants, internal::LoadAllTenants(conn));
    FTUNE_ASSIGN_OR_RETURN(snap.workers, internal::LoadAllWorkers(conn));
    return absl::OkStatus();
  }));
  snap.read_time = clock_->Now();
  return snap;
}

}  // namespace ftune::store
