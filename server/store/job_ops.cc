// Internal to ftune_store: the job-row writes shared by the SqliteStore
// source files (events with the job's sequence, state changes checked
// against core's table, fencing of worker reports).
#include "server/store/job_ops.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/contract/generation.h"
#include "common/contract/limits.h"
#include "common/status.h"
#include "server/store/rows.h"
#include "server/store/webhook_outbox.h"

namespace ftune::store::internal {

using core::Job;
using core::JobEvent;
using core::JobState;

static std::string StateList(std::initializer_list<JobState> states) {
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
                   "type, from_state, to_state, message, step) "
                   "VALUES(?,?,?,?,?,?,?,?,?)"));
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
  st.Bind(8, e.message).Bind(9, e.step);
  return st.Run();
}

// Appends an event with the job's next sequence (job.last_sequence grows).
absl::StatusOr<JobEvent> AddEvent(WriteContext& ctx, Job& job,
                                  core::JobEventType type,
                                  std::optional<JobState> from,
                                  std::optional<JobState> to,
                                  std::string message, int64_t step) {
  JobEvent e;
  e.job_id = job.id;
  e.sequence = ++job.last_sequence;
  e.time = ctx.now;
  e.attempt = job.attempt;
  e.type = type;
  e.from_state = from;
  e.to_state = to;
  e.message = std::move(message);
  e.step = step;
  FTUNE_RETURN_IF_ERROR(InsertEvent(ctx.conn, e));
  // The webhook outbox rides in the same transaction as the event.
  FTUNE_RETURN_IF_ERROR(EnqueueWebhooks(ctx.conn, job, e));
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
          "last_sequence = ?, adapter_detail = ? WHERE id = ?"));
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
  if (!job.metrics.empty()) {
    st.Bind(14, internal::EncodeMetricsSummary(job.metrics));
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
      .Bind(24, internal::EncodeAdapterDetail(job.adapter))
      .Bind(25, job.id);
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
    return absl::FailedPreconditionError(absl::StrCat(
        Describe(job), "; cannot go ", core::JobStateName(job.state), " -> ",
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
  FTUNE_ASSIGN_OR_RETURN(
      JobEvent e, AddEvent(ctx, job, core::JobEventType::kStateChanged, from,
                           to, std::move(message)));
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
    return absl::FailedPreconditionError(
        absl::StrCat(Describe(job), " and holds no lease; stop this attempt"));
  }
  if (!worker_id.empty() && job.worker_id != worker_id) {
    return absl::FailedPreconditionError(
        absl::StrCat(Describe(job), " and its lease belongs to worker ",
                     job.worker_id, ", not ", worker_id));
  }
  return job;
}

absl::Status InsertMetrics(WriteContext& ctx, Job& job, int64_t attempt,
                           std::vector<core::MetricPoint>& points) {
  if (points.empty()) return absl::OkStatus();
  FTUNE_ASSIGN_OR_RETURN(
      Statement st,
      ctx.conn.Prepare(
          "INSERT INTO job_metrics(job_id, sequence, time, attempt, step, "
          "epoch, train_loss, eval_loss, lr, grad_norm, tokens_per_s, "
          "peak_memory_bytes, preference) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?)"));
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
        .BindOptional(7, p.train_loss)
        .BindOptional(8, p.eval_loss)
        .Bind(9, p.lr)
        .Bind(10, p.grad_norm)
        .Bind(11, p.tokens_per_s)
        .Bind(12, p.peak_memory_bytes)
        .Bind(13, EncodePointPreference(p));
    FTUNE_RETURN_IF_ERROR(st.Run());
    st.Reset();  // Same statement for the next point.
  }
  for (const core::MetricPoint& p : points) job.metrics.Add(p);
  job.progress.step = points.back().step;
  job.progress.epoch = points.back().epoch;
  return absl::OkStatus();
}

absl::Status InsertCheckpoint(WriteContext& ctx, Job& job, int64_t attempt,
                              core::Checkpoint& checkpoint, JobChange& change) {
  if (checkpoint.path.empty() || checkpoint.step < 0) {
    return absl::InvalidArgumentError(
        "checkpoint needs a path and a step >= 0");
  }
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
  if (!job.last_checkpoint || job.last_checkpoint->step <= checkpoint.step) {
    job.last_checkpoint = checkpoint;
  }
  FTUNE_ASSIGN_OR_RETURN(
      JobEvent e, AddEvent(ctx, job, core::JobEventType::kCheckpoint,
                           std::nullopt, std::nullopt,
                           absl::StrCat("checkpoint at step ", checkpoint.step,
                                        ": ", checkpoint.path),
                           checkpoint.step));
  change.events.push_back(std::move(e));
  return absl::OkStatus();
}

absl::Status InsertSamples(WriteContext& ctx, Job& job, int64_t attempt,
                           std::vector<core::JobSample> samples,
                           JobChange& change) {
  namespace defaults = contract::defaults;
  // Steps in the order they came, each with its samples.
  std::vector<std::pair<int64_t, std::vector<core::JobSample*>>> steps;
  for (core::JobSample& sample : samples) {
    if (sample.step < 0 || sample.index < 0) {
      return absl::InvalidArgumentError("samples: step and index must be >= 0");
    }
    if (steps.empty() || steps.back().first != sample.step) {
      steps.emplace_back(sample.step, std::vector<core::JobSample*>());
    }
    steps.back().second.push_back(&sample);
  }
  for (auto& [step, of_step] : steps) {
    FTUNE_ASSIGN_OR_RETURN(Statement del,
                           ctx.conn.Prepare("DELETE FROM job_samples WHERE "
                                            "job_id = ? AND step = ?"));
    del.Bind(1, job.id).Bind(2, step);
    FTUNE_RETURN_IF_ERROR(del.Run());
    FTUNE_ASSIGN_OR_RETURN(
        Statement used_st,
        ctx.conn.Prepare("SELECT COALESCE(SUM(bytes), 0) FROM job_samples "
                         "WHERE job_id = ?"));
    used_st.Bind(1, job.id);
    FTUNE_ASSIGN_OR_RETURN(bool has_sum, used_st.Step());
    int64_t used = has_sum ? used_st.ColumnInt(0) : 0;
    for (core::JobSample* s : of_step) {
      std::vector<std::string*> texts = {&s->prompt, &s->completion};
      if (s->expected) texts.push_back(&*s->expected);
      int64_t bytes = 0;
      for (std::string* t : texts) {
        *t = contract::TruncateText(*t, defaults::kSampleTextBytes);
        bytes += static_cast<int64_t>(t->size());
      }
      // Over the job's budget: each text gets an equal share of what is
      // left (the marker alone once nothing is).
      const int64_t left =
          std::max<int64_t>(0, defaults::kSampleBytesPerJob - used);
      if (bytes > left) {
        const size_t share = static_cast<size_t>(left) / texts.size();
        bytes = 0;
        for (std::string* t : texts) {
          *t = contract::TruncateText(*t, share);
          bytes += static_cast<int64_t>(t->size());
        }
      }
      used += bytes;
      s->job_id = job.id;
      s->attempt = attempt;
      s->create_time = ctx.now;
      FTUNE_ASSIGN_OR_RETURN(
          Statement st,
          ctx.conn.Prepare(
              "INSERT OR REPLACE INTO job_samples(job_id, step, idx, attempt, "
              "prompt, expected, completion, finish_reason, create_time, "
              "bytes) VALUES(?,?,?,?,?,?,?,?,?,?)"));
      st.Bind(1, job.id)
          .Bind(2, s->step)
          .Bind(3, s->index)
          .Bind(4, attempt)
          .Bind(5, s->prompt);
      if (s->expected) {
        st.Bind(6, *s->expected);
      } else {
        st.BindNull(6);
      }
      st.Bind(7, s->completion)
          .Bind(8, s->finish_reason)
          .BindTime(9, ctx.now)
          .Bind(10, bytes);
      FTUNE_RETURN_IF_ERROR(st.Run());
    }
    FTUNE_ASSIGN_OR_RETURN(
        JobEvent e,
        AddEvent(
            ctx, job, core::JobEventType::kSamples, std::nullopt, std::nullopt,
            absl::StrCat(of_step.size(), " sample completion",
                         of_step.size() == 1 ? "" : "s", " at step ", step),
            step));
    change.events.push_back(std::move(e));
  }
  return absl::OkStatus();
}

absl::Status RecordAttemptEnd(WriteContext& ctx, absl::string_view job_id,
                              int64_t attempt, int outcome) {
  FTUNE_ASSIGN_OR_RETURN(
      Statement st,
      ctx.conn.Prepare("UPDATE attempts SET outcome = ?, end_time = ? WHERE "
                       "job_id = ? AND attempt = ? AND end_time IS NULL"));
  st.Bind(1, outcome).BindTime(2, ctx.now).Bind(3, job_id).Bind(4, attempt);
  return st.Run();
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
    FTUNE_ASSIGN_OR_RETURN(JobEvent e,
                           AddEvent(ctx, job, core::JobEventType::kMessage,
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
          "validation_file_id, create_time, update_time, last_sequence, "
          "trainer_requirement, kind) "
          "VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"));
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
      .Bind(20, job.last_sequence)
      .Bind(21, job.resources.trainer
                    ? contract::RequirementToJson(*job.resources.trainer)
                    : "")
      .Bind(22, job.kind == core::JobKind::kTry ? "try" : "train");
  absl::Status s = st.Run();
  if (absl::IsAlreadyExists(s)) {
    return absl::AlreadyExistsError(
        absl::StrCat("job ", job.id, " already exists"));
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

}  // namespace ftune::store::internal
