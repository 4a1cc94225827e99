// SqliteStore: workers (register, heartbeat, drain) and job leases (grant,
// renew, end of attempt, expiry), plus the scheduling snapshot. Lease
// decisions come from core (attempt.h); this file applies them as
// compare-and-set writes.
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/ids.h"
#include "common/status.h"
#include "server/store/job_ops.h"
#include "server/store/rows.h"
#include "server/store/sqlite_store.h"

namespace ftune::store {

using core::Job;
using core::JobState;
using internal::ApplyPlan;
using internal::ApplyStateChange;
using internal::CountJobs;
using internal::Describe;
using internal::Finish;
using internal::LoadFenced;
using internal::LoadJob;
using internal::RunningStates;
using internal::WorkerStates;
using WriteContext = SqliteStore::WriteContext;

// ------------------------------------------------------------ workers ----

namespace {

constexpr char kWorkerColumns[] =
    "id, hostname, gpus, gpu_type, gpu_memory_bytes, cpu_slots, "
    "memory_bytes, labels, version, state, register_time, last_heartbeat, "
    "lease_expiry, gpu_indices, trainer";

absl::StatusOr<core::Worker> ReadWorker(const Statement& st) {
  core::Worker w;
  w.id = st.ColumnText(0);
  w.hostname = st.ColumnText(1);
  w.capabilities.gpus = static_cast<int32_t>(st.ColumnInt(2));
  w.capabilities.gpu_type = st.ColumnText(3);
  w.capabilities.gpu_memory_bytes = st.ColumnInt(4);
  w.capabilities.cpu_slots = static_cast<int32_t>(st.ColumnInt(5));
  w.capabilities.memory_bytes = st.ColumnInt(6);
  FTUNE_ASSIGN_OR_RETURN(
      w.capabilities.labels,
      internal::DecodeStringMap(st.ColumnText(7), "worker labels"));
  w.capabilities.version = st.ColumnText(8);
  w.state = static_cast<core::WorkerState>(st.ColumnInt(9));
  w.register_time = st.ColumnTime(10);
  w.last_heartbeat = st.ColumnTime(11);
  w.lease_expiry = st.ColumnTime(12);
  FTUNE_ASSIGN_OR_RETURN(w.capabilities.gpu_indices,
                         internal::DecodeIntList(st.ColumnText(13)));
  // '' = the agent did not say (an older agent).
  if (const std::string trainer = st.ColumnText(14); !trainer.empty()) {
    absl::StatusOr<contract::TrainerCapabilities> caps =
        contract::ParseCapabilities(trainer);
    if (!caps.ok()) {
      return absl::DataLossError(
          absl::StrCat("worker ", w.id, ": ", caps.status().message()));
    }
    w.capabilities.trainer = *std::move(caps);
  }
  return w;
}

absl::StatusOr<core::Worker> LoadWorker(Connection& conn,
                                        absl::string_view id) {
  FTUNE_ASSIGN_OR_RETURN(
      Statement st, conn.Prepare(absl::StrCat("SELECT ", kWorkerColumns,
                                              " FROM workers WHERE id = ?")));
  st.Bind(1, id);
  FTUNE_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row)
    return absl::NotFoundError(absl::StrCat("worker ", id, " not found"));
  return ReadWorker(st);
}

}  // namespace

absl::StatusOr<core::Worker> SqliteStore::RegisterWorker(
    core::Worker worker, absl::Time lease_expiry) {
  if (worker.id.empty()) worker.id = NewId(kWorkerIdPrefix);
  FTUNE_RETURN_IF_ERROR(Write([&](WriteContext& ctx) -> absl::Status {
    absl::StatusOr<core::Worker> old = LoadWorker(ctx.conn, worker.id);
    if (!old.ok() && !absl::IsNotFound(old.status())) return old.status();
    worker.register_time = ctx.now;
    worker.last_heartbeat = ctx.now;
    worker.lease_expiry = lease_expiry;
    worker.state = old.ok() && old->state == core::WorkerState::kDraining
                       ? core::WorkerState::kDraining
                       : core::WorkerState::kActive;
    FTUNE_ASSIGN_OR_RETURN(
        Statement st,
        ctx.conn.Prepare(
            "INSERT OR REPLACE INTO workers(id, hostname, gpus, gpu_type, "
            "gpu_memory_bytes, cpu_slots, memory_bytes, labels, version, "
            "state, register_time, last_heartbeat, lease_expiry, "
            "gpu_indices, trainer) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"));
    const core::WorkerCapabilities& c = worker.capabilities;
    st.Bind(1, worker.id)
        .Bind(2, worker.hostname)
        .Bind(3, c.gpus)
        .Bind(4, c.gpu_type)
        .Bind(5, c.gpu_memory_bytes)
        .Bind(6, c.cpu_slots)
        .Bind(7, c.memory_bytes)
        .Bind(8, internal::EncodeStringMap(c.labels))
        .Bind(9, c.version)
        .Bind(10, static_cast<int>(worker.state))
        .BindTime(11, worker.register_time)
        .BindTime(12, worker.last_heartbeat)
        .BindTime(13, worker.lease_expiry)
        .Bind(14, internal::EncodeIntList(c.gpu_indices))
        .Bind(15, c.trainer ? contract::CapabilitiesToJson(*c.trainer) : "");
    return st.Run();
  }));
  return worker;
}

absl::StatusOr<core::Worker> SqliteStore::GetWorker(absl::string_view id) {
  core::Worker out;
  FTUNE_RETURN_IF_ERROR(Read([&](Connection& conn) -> absl::Status {
    FTUNE_ASSIGN_OR_RETURN(out, LoadWorker(conn, id));
    return absl::OkStatus();
  }));
  return out;
}

namespace {
absl::StatusOr<std::vector<core::Worker>> LoadWorkers(Connection& conn) {
  std::vector<core::Worker> out;
  FTUNE_ASSIGN_OR_RETURN(
      Statement st, conn.Prepare(absl::StrCat("SELECT ", kWorkerColumns,
                                              " FROM workers ORDER BY id")));
  while (true) {
    FTUNE_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    FTUNE_ASSIGN_OR_RETURN(core::Worker w, ReadWorker(st));
    out.push_back(std::move(w));
  }
  return out;
}
}  // namespace

absl::StatusOr<std::vector<core::Worker>> SqliteStore::ListWorkers() {
  std::vector<core::Worker> out;
  FTUNE_RETURN_IF_ERROR(Read([&](Connection& conn) -> absl::Status {
    FTUNE_ASSIGN_OR_RETURN(out, LoadWorkers(conn));
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<core::Worker> SqliteStore::DrainWorker(absl::string_view id) {
  core::Worker out;
  FTUNE_RETURN_IF_ERROR(Write([&](WriteContext& ctx) -> absl::Status {
    FTUNE_ASSIGN_OR_RETURN(out, LoadWorker(ctx.conn, id));
    if (out.state == core::WorkerState::kActive) {
      FTUNE_ASSIGN_OR_RETURN(
          Statement st,
          ctx.conn.Prepare("UPDATE workers SET state = ? WHERE id = ?"));
      st.Bind(1, static_cast<int>(core::WorkerState::kDraining)).Bind(2, id);
      FTUNE_RETURN_IF_ERROR(st.Run());
      out.state = core::WorkerState::kDraining;
    }
    return absl::OkStatus();
  }));
  return out;
}

namespace internal {
absl::StatusOr<std::vector<core::Worker>> LoadAllWorkers(Connection& conn) {
  return LoadWorkers(conn);
}
absl::StatusOr<core::Worker> LoadWorkerById(Connection& conn,
                                            absl::string_view id) {
  return LoadWorker(conn, id);
}
}  // namespace internal

// ------------------------------------------------------------- leases ----

absl::StatusOr<std::vector<JobAttemptRef>> SqliteStore::HeartbeatWorker(
    absl::string_view worker_id, absl::Time lease_expiry) {
  std::vector<JobAttemptRef> held;
  FTUNE_RETURN_IF_ERROR(Write([&](WriteContext& ctx) -> absl::Status {
    FTUNE_ASSIGN_OR_RETURN(core::Worker w,
                           internal::LoadWorkerById(ctx.conn, worker_id));
    if (w.state == core::WorkerState::kLost) {
      return absl::FailedPreconditionError(
          absl::StrCat("worker ", worker_id,
                       " is LOST (its lease expired); register again"));
    }
    FTUNE_ASSIGN_OR_RETURN(
        Statement up, ctx.conn.Prepare("UPDATE workers SET last_heartbeat = ?, "
                                       "lease_expiry = ? WHERE id = ?"));
    up.BindTime(1, ctx.now).BindTime(2, lease_expiry).Bind(3, worker_id);
    FTUNE_RETURN_IF_ERROR(up.Run());
    FTUNE_ASSIGN_OR_RETURN(
        Statement jobs,
        ctx.conn.Prepare(absl::StrCat(
            "UPDATE jobs SET lease_expiry = ? WHERE worker_id = ? AND state "
            "IN (",
            WorkerStates(), ") RETURNING id, attempt")));
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
                                            absl::Time lease_expiry,
                                            const LeaseResources& resources) {
  Job job;
  FTUNE_RETURN_IF_ERROR(Write([&](WriteContext& ctx) -> absl::Status {
    FTUNE_ASSIGN_OR_RETURN(job, LoadJob(ctx.conn, job_id, true));
    if (job.state != JobState::kQueued || job.attempt != expected_attempt) {
      return absl::FailedPreconditionError(absl::StrCat(
          Describe(job), ", expected QUEUED (attempt ", expected_attempt, ")"));
    }
    absl::StatusOr<core::Worker> w =
        internal::LoadWorkerById(ctx.conn, worker_id);
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
      FTUNE_ASSIGN_OR_RETURN(
          int64_t running,
          CountJobs(ctx.conn, job.tenant_id, RunningStates(), "COUNT(*)"));
      if (running >= q.max_running_jobs) {
        return absl::ResourceExhaustedError(
            absl::StrCat("quota max_running_jobs=", q.max_running_jobs,
                         " reached (", running, " jobs running)"));
      }
    }
    if (q.max_gpus > 0 && job.resources.gpus > 0) {
      FTUNE_ASSIGN_OR_RETURN(int64_t gpus,
                             CountJobs(ctx.conn, job.tenant_id, RunningStates(),
                                       "COALESCE(SUM(gpus), 0)"));
      if (gpus + job.resources.gpus > q.max_gpus) {
        return absl::ResourceExhaustedError(
            absl::StrCat("quota max_gpus=", q.max_gpus, " would be exceeded (",
                         gpus, " GPUs in use + ", job.resources.gpus, ")"));
      }
    }
    JobChange change;
    FTUNE_RETURN_IF_ERROR(
        ApplyStateChange(ctx, job, JobState::kRunning,
                         absl::StrCat("lease granted to worker ", worker_id,
                                      " (attempt ", job.attempt, ")"),
                         change));
    job.worker_id = std::string(worker_id);
    job.lease_expiry = lease_expiry;
    FTUNE_ASSIGN_OR_RETURN(
        Statement rec,
        ctx.conn.Prepare("INSERT OR REPLACE INTO attempts(job_id, attempt, "
                         "tenant_id, worker_id, gpu_indices, cpu_threads, "
                         "grant_time) VALUES(?,?,?,?,?,?,?)"));
    rec.Bind(1, job.id)
        .Bind(2, job.attempt)
        .Bind(3, job.tenant_id)
        .Bind(4, worker_id)
        .Bind(5, internal::EncodeIntList(resources.gpu_indices))
        .Bind(6, resources.cpu_threads)
        .BindTime(7, ctx.now);
    FTUNE_RETURN_IF_ERROR(rec.Run());
    return Finish(ctx, job, std::move(change));
  }));
  return job;
}

absl::StatusOr<Job> SqliteStore::RenewLease(absl::string_view job_id,
                                            int64_t attempt,
                                            absl::string_view worker_id,
                                            absl::Time lease_expiry) {
  if (worker_id.empty())
    return absl::InvalidArgumentError("worker_id is empty");
  Job job;
  FTUNE_RETURN_IF_ERROR(Write([&](WriteContext& ctx) -> absl::Status {
    FTUNE_ASSIGN_OR_RETURN(job,
                           LoadFenced(ctx.conn, job_id, attempt, worker_id));
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
  if (worker_id.empty())
    return absl::InvalidArgumentError("worker_id is empty");
  Job job;
  FTUNE_RETURN_IF_ERROR(Write([&](WriteContext& ctx) -> absl::Status {
    FTUNE_ASSIGN_OR_RETURN(job,
                           LoadFenced(ctx.conn, job_id, attempt, worker_id));
    FTUNE_ASSIGN_OR_RETURN(core::AttemptPlan plan,
                           core::PlanAttemptEnd(job, end));
    FTUNE_RETURN_IF_ERROR(internal::RecordAttemptEnd(
        ctx, job.id, attempt, static_cast<int>(end.outcome) + 1));
    // A full fine-tuning job's model exists exactly when the job is
    // SUCCEEDED: the same transaction.
    if (end.output_model && plan.new_state == JobState::kSucceeded) {
      if (end.output_model->tenant_id != job.tenant_id ||
          end.output_model->job_id != job.id) {
        return absl::InvalidArgumentError(
            "output_model must be the job's tenant's and name the job");
      }
      FTUNE_RETURN_IF_ERROR(
          internal::WriteModel(ctx.conn, *end.output_model, ctx.now));
    }
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
      FTUNE_RETURN_IF_ERROR(
          internal::RecordAttemptEnd(ctx, job.id, job.attempt, 0));
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
            "UPDATE workers SET state = ",
            static_cast<int>(core::WorkerState::kLost),
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
      FTUNE_ASSIGN_OR_RETURN(Statement st,
                             conn.Prepare(absl::StrCat(
                                 "SELECT ", internal::JobColumns(false),
                                 " FROM jobs WHERE ", where, " ORDER BY seq")));
      while (true) {
        FTUNE_ASSIGN_OR_RETURN(bool row, st.Step());
        if (!row) break;
        FTUNE_ASSIGN_OR_RETURN(Job j, internal::ReadJobRow(st, false));
        out.push_back(std::move(j));
      }
      return absl::OkStatus();
    };
    FTUNE_RETURN_IF_ERROR(
        load(absl::StrCat("state = ", static_cast<int>(JobState::kQueued)),
             snap.queued));
    FTUNE_RETURN_IF_ERROR(load(
        absl::StrCat("worker_id != '' AND state IN (", WorkerStates(), ")"),
        snap.active));
    FTUNE_ASSIGN_OR_RETURN(snap.tenants, internal::LoadAllTenants(conn));
    FTUNE_ASSIGN_OR_RETURN(snap.workers, internal::LoadAllWorkers(conn));
    FTUNE_ASSIGN_OR_RETURN(
        Statement served,
        conn.Prepare("SELECT tenant_id, MAX(grant_time) FROM attempts "
                     "GROUP BY tenant_id"));
    while (true) {
      FTUNE_ASSIGN_OR_RETURN(bool row, served.Step());
      if (!row) break;
      snap.last_dispatch[served.ColumnText(0)] = served.ColumnTime(1);
    }
    return absl::OkStatus();
  }));
  snap.read_time = clock_->Now();
  return snap;
}

}  // namespace ftune::store
