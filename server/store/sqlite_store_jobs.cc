// SqliteStore: jobs and their events/metrics/checkpoints (one sequence per
// job). Every state change goes through ApplyStateChange() (job_ops.h),
// which checks core's transition table and writes the job row and an event
// row inside the caller's write request (one transaction).
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/ids.h"
#include "common/status.h"
#include "server/store/job_ops.h"
#include "server/store/rows.h"
#include "server/store/sqlite_store.h"

namespace ftune::store {

using core::Job;
using core::JobEvent;
using core::JobState;
using internal::CheckTenantArg;
using internal::DecodePointPreference;
using internal::LoadJob;
using internal::TenantSees;

using internal::AddEvent;
using internal::ApplyStateChange;
using internal::CheckJobFile;
using internal::CountJobs;
using internal::Describe;
using internal::Finish;
using internal::InsertJob;
using internal::LoadFenced;
using internal::LoadJobFor;
using internal::QueuedStates;
using internal::ValidateNewJob;

// ------------------------------------------------------------- create ----

absl::Status SqliteStore::CreateJobInTransaction(WriteContext& ctx, Job& job,
                                                 CreateJobResult& result) {
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
    FTUNE_RETURN_IF_ERROR(
        CheckJobFile(conn, job, "validation_file_id", job.validation_file_id));
  }
  const core::Quota& q = tenant->quota;
  if (q.max_gpus > 0 && job.resources.gpus > q.max_gpus) {
    return absl::ResourceExhaustedError(
        absl::StrCat("quota max_gpus=", q.max_gpus, " is below the job's ",
                     job.resources.gpus, " GPUs; it could never run"));
  }
  if (q.max_queued_jobs > 0) {
    FTUNE_ASSIGN_OR_RETURN(
        int64_t queued,
        CountJobs(conn, job.tenant_id, QueuedStates(), "COUNT(*)"));
    if (queued >= q.max_queued_jobs) {
      return absl::ResourceExhaustedError(
          absl::StrCat("quota max_queued_jobs=", q.max_queued_jobs,
                       " reached (", queued, " jobs queued or paused)"));
    }
  }
  job.state = JobState::kQueued;
  job.attempt = 1;
  job.restart_count = 0;
  job.create_time = job.update_time = ctx.now;
  job.start_time = job.end_time = absl::InfinitePast();
  job.error = core::JobError{};
  job.progress = core::JobProgress{};
  job.metrics = core::JobMetricsSummary{};
  job.worker_id.clear();
  job.lease_expiry = absl::InfinitePast();
  job.last_checkpoint.reset();
  job.adapter = core::Adapter{};
  job.last_sequence = 0;
  // The event first, so the job row is inserted complete (last_sequence
  // = 1) and needs no second UPDATE: creates are the hot write path.
  JobChange change;
  FTUNE_ASSIGN_OR_RETURN(
      JobEvent e, AddEvent(ctx, job, core::JobEventType::kCreated, std::nullopt,
                           JobState::kQueued, "job created"));
  change.events.push_back(std::move(e));
  FTUNE_RETURN_IF_ERROR(InsertJob(conn, job));
  change.job = job;
  change.job.spec.clear();
  ctx.changes.push_back(std::move(change));
  result.job = job;
  result.created = true;
  return absl::OkStatus();
}

absl::StatusOr<CreateJobResult> SqliteStore::CreateJob(Job job) {
  FTUNE_RETURN_IF_ERROR(ValidateNewJob(job));
  if (job.id.empty()) job.id = NewId(kJobIdPrefix);
  CreateJobResult result;
  FTUNE_RETURN_IF_ERROR(Write([&](WriteContext& ctx) {
    return CreateJobInTransaction(ctx, job, result);
  }));
  return result;
}

void SqliteStore::CreateJobAsync(Job job, CreateJobCallback done) {
  if (absl::Status s = ValidateNewJob(job); !s.ok()) {
    done(std::move(s));
    return;
  }
  if (job.id.empty()) job.id = NewId(kJobIdPrefix);
  // Lives until the writer has called back; the write request and the
  // completion share it.
  struct State {
    Job job;
    CreateJobResult result;
    CreateJobCallback done;
  };
  auto state = std::make_shared<State>();
  state->job = std::move(job);
  state->done = std::move(done);
  WriteAsync(
      [state](WriteContext& ctx) {
        return CreateJobInTransaction(ctx, state->job, state->result);
      },
      [state](absl::Status s) {
        if (s.ok()) {
          state->done(std::move(state->result));
        } else {
          state->done(std::move(s));
        }
      });
}

absl::StatusOr<JobCreationFacts> SqliteStore::GetJobCreationFacts(
    absl::string_view tenant_id, absl::string_view model,
    absl::string_view training_file_id, absl::string_view validation_file_id) {
  FTUNE_RETURN_IF_ERROR(CheckTenantArg(tenant_id));
  JobCreationFacts out;
  FTUNE_RETURN_IF_ERROR(Read([&](Connection& conn) -> absl::Status {
    FTUNE_RETURN_IF_ERROR(
        KeepIfFound(internal::LoadTenantById(conn, tenant_id), &out.tenant));
    if (!model.empty()) {
      FTUNE_RETURN_IF_ERROR(KeepIfFound(
          internal::LoadVisibleModel(conn, tenant_id, model), &out.model));
    }
    if (!training_file_id.empty()) {
      FTUNE_RETURN_IF_ERROR(KeepIfFound(
          internal::LoadVisibleFile(conn, tenant_id, training_file_id),
          &out.training_file));
    }
    if (!validation_file_id.empty()) {
      FTUNE_RETURN_IF_ERROR(KeepIfFound(
          internal::LoadVisibleFile(conn, tenant_id, validation_file_id),
          &out.validation_file));
    }
    FTUNE_ASSIGN_OR_RETURN(out.workers, internal::LoadAllWorkers(conn));
    return absl::OkStatus();
  }));
  return out;
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
  if (!filter.include_try_jobs) absl::StrAppend(&sql, " AND kind = 'train'");
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
    // seq is selected right after the job columns.
    const int seq_col = internal::JobColumnCount(/*with_spec=*/true);
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

absl::StatusOr<std::map<std::pair<std::string, JobState>, int64_t>>
SqliteStore::CountJobsByTenantAndState() {
  std::map<std::pair<std::string, JobState>, int64_t> out;
  FTUNE_RETURN_IF_ERROR(Read([&](Connection& conn) -> absl::Status {
    out.clear();
    FTUNE_ASSIGN_OR_RETURN(
        Statement st,
        conn.Prepare("SELECT tenant_id, state, COUNT(*) FROM jobs GROUP BY "
                     "tenant_id, state"));
    while (true) {
      FTUNE_ASSIGN_OR_RETURN(bool row, st.Step());
      if (!row) break;
      FTUNE_ASSIGN_OR_RETURN(JobState state,
                             core::JobStateFromInt(st.ColumnInt(1)));
      out[{st.ColumnText(0), state}] = st.ColumnInt(2);
    }
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<Job> SqliteStore::TransitionJob(const JobTransition& t) {
  FTUNE_RETURN_IF_ERROR(CheckTenantArg(t.tenant_id));
  Job job;
  FTUNE_RETURN_IF_ERROR(Write([&](WriteContext& ctx) -> absl::Status {
    FTUNE_ASSIGN_OR_RETURN(job,
                           LoadJobFor(ctx.conn, t.tenant_id, t.job_id, true));
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
        ctx, job, *target, absl::StrCat("resumed as attempt ", job.attempt + 1),
        change));
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
    FTUNE_RETURN_IF_ERROR(internal::InsertMetrics(ctx, job, attempt, points));
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
                     "to_state, message, step FROM job_events WHERE job_id = ? "
                     "AND "
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
      e.step = st.ColumnInt(7);
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
                     "peak_memory_bytes, preference FROM job_metrics WHERE "
                     "job_id = ? AND sequence > ? ORDER BY sequence LIMIT ?"));
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
      p.train_loss = st.ColumnOptionalDouble(5);
      p.eval_loss = st.ColumnOptionalDouble(6);
      p.lr = st.ColumnDouble(7);
      p.grad_norm = st.ColumnDouble(8);
      p.tokens_per_s = st.ColumnDouble(9);
      p.peak_memory_bytes = st.ColumnInt(10);
      FTUNE_RETURN_IF_ERROR(DecodePointPreference(st.ColumnText(11), &p));
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
    JobChange change;
    FTUNE_RETURN_IF_ERROR(
        internal::InsertCheckpoint(ctx, job, attempt, checkpoint, change));
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

absl::StatusOr<std::vector<core::JobSample>> SqliteStore::ListJobSamples(
    absl::string_view tenant_id, absl::string_view job_id,
    std::optional<int64_t> step,
    std::optional<std::pair<int64_t, int64_t>> after, int limit) {
  FTUNE_RETURN_IF_ERROR(CheckTenantArg(tenant_id));
  if (limit <= 0) limit = kMaxPageSize;
  std::vector<core::JobSample> out;
  FTUNE_RETURN_IF_ERROR(Read([&](Connection& conn) -> absl::Status {
    FTUNE_RETURN_IF_ERROR(LoadJobFor(conn, tenant_id, job_id, false).status());
    // (step, idx) > (after step, after idx), keyset order.
    FTUNE_ASSIGN_OR_RETURN(
        Statement st,
        conn.Prepare(
            "SELECT step, idx, attempt, prompt, expected, completion, "
            "finish_reason, create_time FROM job_samples WHERE job_id = ? "
            "AND (? OR step > ? OR (step = ? AND idx > ?)) "
            "AND (? OR step = ?) ORDER BY step, idx LIMIT ?"));
    const std::pair<int64_t, int64_t> a = after.value_or(std::make_pair(0, 0));
    st.Bind(1, job_id)
        .Bind(2, after ? 0 : 1)
        .Bind(3, a.first)
        .Bind(4, a.first)
        .Bind(5, a.second)
        .Bind(6, step ? 0 : 1)
        .Bind(7, step.value_or(0))
        .Bind(8, limit);
    while (true) {
      FTUNE_ASSIGN_OR_RETURN(bool row, st.Step());
      if (!row) break;
      core::JobSample s;
      s.job_id = std::string(job_id);
      s.step = st.ColumnInt(0);
      s.index = st.ColumnInt(1);
      s.attempt = st.ColumnInt(2);
      s.prompt = st.ColumnText(3);
      if (!st.ColumnIsNull(4)) s.expected = st.ColumnText(4);
      s.completion = st.ColumnText(5);
      s.finish_reason = st.ColumnText(6);
      s.create_time = st.ColumnTime(7);
      out.push_back(std::move(s));
    }
    return absl::OkStatus();
  }));
  return out;
}

}  // namespace ftune::store
