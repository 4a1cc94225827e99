// The scheduler's durable state behind one interface (DESIGN.md: a server
// database can replace SQLite later). Methods take and return the plain
// records of server/core; the RPC layer converts to and from protos.
//
// Thread-safety: every method may be called from any thread concurrently.
// Once a write method returns OK its effect is durable (synchronous=FULL) and
// visible to every later read.
//
// Tenant scoping: methods that a tenant reaches take `tenant_id`, the
// authenticated caller's tenant. An object of another tenant answers exactly
// like one that never existed (NOT_FOUND) and never appears in a list.
// Trusted internal callers (workers, admin, scheduler loop) pass kAnyTenant.
// An empty tenant_id is INVALID_ARGUMENT (it is always a caller bug).
//
// Errors (absl::StatusCode):
//   NOT_FOUND            the addressed object does not exist (for this tenant)
//   ALREADY_EXISTS       a unique name/id is taken
//   INVALID_ARGUMENT     a malformed argument or page token, or a referenced
//                        object (model, file) that does not exist; the
//                        message names the field
//   FAILED_PRECONDITION  a compare-and-set lost: the message names the job's
//                        current state and attempt; also a stale attempt, an
//                        illegal transition, a file still used by a live job
//   RESOURCE_EXHAUSTED   a tenant quota would be exceeded; names the quota
//   UNAVAILABLE/ABORTED  the database is busy or closing; retry later
//   DATA_LOSS/INTERNAL   the database is damaged or SQLite failed otherwise
#ifndef FTUNE_SERVER_STORE_STORE_H_
#define FTUNE_SERVER_STORE_STORE_H_

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "server/core/attempt.h"
#include "server/core/job_state.h"
#include "server/core/types.h"

namespace ftune::store {

// Passed as tenant_id by trusted internal callers: no tenant filtering.
inline constexpr absl::string_view kAnyTenant = "*";

inline constexpr int kDefaultPageSize = 50;
inline constexpr int kMaxPageSize = 1000;

struct JobFilter {
  std::vector<core::JobState> states;         // Any of these; empty = all.
  std::map<std::string, std::string> labels;  // All of these must match.
  // False: training jobs only (ListJobs' default for tenants). Quota and
  // fair-share counts include try jobs.
  bool include_try_jobs = true;
};

// One page, newest first. `next_page_token` is empty on the last page.
// Tokens are opaque; a page continues exactly after the previous one even
// while other jobs are being created (new ones appear only before page 1).
template <typename T>
struct Page {
  std::vector<T> items;
  std::string next_page_token;
};

// What a new job is validated against before CreateJob, read from one
// snapshot (GetJobCreationFacts).
struct JobCreationFacts {
  std::optional<core::Tenant> tenant;  // nullopt: no such tenant.
  // nullopt: not asked for (empty name/id) or not found; a file also when
  // it is another tenant's or deleted (as GetFile's NOT_FOUND).
  std::optional<core::Model> model;
  std::optional<core::FileRecord> training_file;
  std::optional<core::FileRecord> validation_file;
  std::vector<core::Worker> workers;  // Every registered worker.
};

// For lookups where a missing object is an answer, not an error: stores
// `loaded`'s value in `into`, leaves `into` empty on NOT_FOUND, and returns
// any other error.
template <typename T>
absl::Status KeepIfFound(absl::StatusOr<T> loaded, std::optional<T>* into) {
  if (loaded.ok()) {
    *into = *std::move(loaded);
  } else if (!absl::IsNotFound(loaded.status())) {
    return loaded.status();
  }
  return absl::OkStatus();
}

struct CreateJobResult {
  core::Job job;
  bool created = false;  // false: request_id repeated; `job` is the original.
};

// A compare-and-set on a job's state.
struct JobTransition {
  std::string tenant_id{kAnyTenant};
  std::string job_id;
  core::JobState expected_state = core::JobState::kQueued;
  // -1 = do not check the attempt.
  int64_t expected_attempt = -1;
  core::JobState new_state = core::JobState::kQueued;
  std::string message;  // Event text.
  // Optional changes applied in the same transaction.
  bool increment_attempt = false;
  bool clear_worker = false;
  std::optional<core::JobError> error;
  std::optional<core::Adapter> adapter;
};

// What a committed write did to jobs, handed to StoreOptions::on_commit in
// commit order (for WatchJob fan-out and /metrics).
struct JobChange {
  core::Job job;  // The job after the write (spec left empty).
  std::vector<core::JobEvent> events;
  std::vector<core::MetricPoint> metrics;
};

// A worker's report on a job carries its attempt (fencing token).
struct JobAttemptRef {
  std::string job_id;
  int64_t attempt = 0;
};

// What a lease grant reserves on the worker, recorded with the attempt.
struct LeaseResources {
  std::vector<int32_t> gpu_indices;  // Device indices; empty for CPU jobs.
  int32_t cpu_threads = 0;           // 0 = the worker decides.
};

// An attempt a worker holds (RUNNING, CANCELLING or PAUSED with a worker),
// with what its grant reserved.
struct HeldAttempt {
  core::Job job;  // With spec.
  LeaseResources resources;
  absl::Time grant_time = absl::InfinitePast();
};

// One ReportProgress batch of a worker (WorkerService), applied in one
// transaction so a retried batch is either wholly applied or not at all.
struct ProgressReport {
  std::string worker_id;
  std::string job_id;
  int64_t attempt = 0;
  // 1, 2, 3... per attempt: <= the last applied = a retry (acknowledged, not
  // applied again); > last + 1 = INVALID_ARGUMENT (a batch went missing).
  int64_t batch_number = 0;
  std::vector<core::MetricPoint> metrics;
  // Types the worker may report: kMessage, kWarning, kEval,
  // kBatchSizeReduced, kEarlyStopped (others: INVALID_ARGUMENT).
  std::vector<core::JobEvent> events;
  std::vector<core::Checkpoint> checkpoints;  // path, step
  std::vector<std::string> deleted_checkpoint_paths;
  // Sample completions (step, index and texts; the store sets job_id,
  // attempt and create_time). A step's samples replace any stored for that
  // step; each step adds one kSamples event. Texts are cut to
  // contract::defaults::kSampleTextBytes, and to what is left of the job's
  // kSampleBytesPerJob, ending with kTruncationMarker.
  std::vector<core::JobSample> samples;
  std::optional<core::JobProgress> progress;
  absl::Time lease_expiry = absl::InfinitePast();  // The renewed lease.
};

struct ProgressResult {
  core::Job job;         // After the batch (spec left empty).
  bool applied = false;  // false: a retry of an applied batch.
};

// How a finished attempt ended, as recorded (for idempotent retries).
struct AttemptRecord {
  std::string job_id;
  int64_t attempt = 0;
  std::string worker_id;
  std::optional<core::AttemptOutcome> outcome;  // nullopt: not ended.
};

struct LeaseExpiryResult {
  std::vector<core::Job> requeued;  // RUNNING -> QUEUED (attempt + 1).
  std::vector<core::Job> failed;    // RUNNING -> FAILED (restarts exhausted).
  std::vector<core::Job> other;     // CANCELLING -> CANCELLED, PAUSED freed.
  std::vector<std::string> lost_workers;  // ACTIVE/DRAINING -> LOST.
};

class Store {
 public:
  virtual ~Store() = default;

  // ---- tenants ---------------------------------------------------------
  // `tenant.id` empty: a new "tenant-..." id is assigned. ALREADY_EXISTS for
  // a taken name or id; INVALID_ARGUMENT for an empty name, weight <= 0 or a
  // negative quota. create_time is set by the store.
  virtual absl::StatusOr<core::Tenant> CreateTenant(core::Tenant tenant) = 0;
  virtual absl::StatusOr<core::Tenant> GetTenant(absl::string_view id) = 0;
  virtual absl::StatusOr<core::Tenant> GetTenantByName(
      absl::string_view name) = 0;
  virtual absl::StatusOr<std::vector<core::Tenant>> ListTenants() = 0;
  virtual absl::StatusOr<core::Tenant> SetQuota(absl::string_view tenant_id,
                                                const core::Quota& quota) = 0;
  virtual absl::StatusOr<core::Tenant> SetTenantWeight(
      absl::string_view tenant_id, double weight) = 0;

  // ---- API keys (hashes only) -----------------------------------------
  // `key.id` empty: assigned. Role kTenant needs an existing tenant_id;
  // admin/worker keys must have none. ALREADY_EXISTS for a repeated hash.
  virtual absl::StatusOr<core::ApiKey> CreateApiKey(core::ApiKey key) = 0;
  // NOT_FOUND if no key has this hash. Revoked keys ARE returned (revoked =
  // true) so the caller can say "revoked"; compare with ApiKeyMatches().
  virtual absl::StatusOr<core::ApiKey> LookupApiKeyByHash(
      absl::string_view hash) = 0;
  // tenant_id = kAnyTenant lists every key (admin/worker keys included).
  virtual absl::StatusOr<std::vector<core::ApiKey>> ListApiKeys(
      absl::string_view tenant_id) = 0;
  // Idempotent on an already revoked key.
  virtual absl::StatusOr<core::ApiKey> RevokeApiKey(absl::string_view id) = 0;

  // ---- models ------------------------------------------------------------
  // GetModel and ListModels return every model, the tenants' fine-tuned
  // ones (Model.tenant_id) included: callers show a tenant only what
  // core::ModelVisibleTo lets it see. EndAttempt stores a full fine-tuning
  // job's model (AttemptEnd.output_model).
  virtual absl::StatusOr<core::Model> UpsertModel(core::Model model) = 0;
  virtual absl::StatusOr<core::Model> GetModel(absl::string_view name) = 0;
  virtual absl::StatusOr<std::vector<core::Model>> ListModels() = 0;

  // ---- files -------------------------------------------------------------
  // `file.id` empty: assigned. tenant must exist. create_time set here.
  virtual absl::StatusOr<core::FileRecord> CreateFile(
      core::FileRecord file) = 0;
  // Deleted files are NOT_FOUND.
  virtual absl::StatusOr<core::FileRecord> GetFile(absl::string_view tenant_id,
                                                   absl::string_view id) = 0;
  // Newest first, deleted files excluded. page_size 0 = default; larger than
  // kMaxPageSize is clamped. `purpose` empty = any.
  virtual absl::StatusOr<Page<core::FileRecord>> ListFiles(
      absl::string_view tenant_id, absl::string_view purpose, int page_size,
      absl::string_view page_token) = 0;
  virtual absl::StatusOr<core::FileRecord> UpdateFileStatus(
      absl::string_view tenant_id, absl::string_view id,
      core::FileStatus status, absl::string_view detail) = 0;
  // Marks the file DELETED and returns the record as it was (so the caller
  // can remove its bytes). FAILED_PRECONDITION naming the job while a
  // non-terminal job uses it as training or validation file.
  virtual absl::StatusOr<core::FileRecord> DeleteFile(
      absl::string_view tenant_id, absl::string_view id) = 0;

  // ---- jobs --------------------------------------------------------------
  // Creates a QUEUED job at attempt 1 from `job` (id assigned if empty;
  // state, attempt, times, sequence are set by the store) with a CREATED
  // event (sequence 1), in one transaction that also
  //  - returns the original job (created=false) when (tenant_id, request_id)
  //    was used before (request_id non-empty), whatever the new spec says;
  //  - checks model (INVALID_ARGUMENT "model"), training_file_id and
  //    validation_file_id (INVALID_ARGUMENT naming the field: unknown,
  //    foreign, deleted or not READY);
  //  - checks quotas: max_queued_jobs against QUEUED+PAUSED jobs, and
  //    max_gpus against the job's own gpus (RESOURCE_EXHAUSTED naming it).
  virtual absl::StatusOr<CreateJobResult> CreateJob(core::Job job) = 0;
  // GetTenant, GetModel, GetFile (twice) and ListWorkers in one read (the
  // default makes those calls, one snapshot each). A missing object is a
  // nullopt field, not an error; errors are the store's own failures.
  virtual absl::StatusOr<JobCreationFacts> GetJobCreationFacts(
      absl::string_view tenant_id, absl::string_view model,
      absl::string_view training_file_id, absl::string_view validation_file_id);
  // CreateJob without waiting: returns at once and calls `done` exactly once
  // with what CreateJob would have returned, after the job is durable (or
  // the write failed). `done` runs on a thread of the store's choosing (the
  // group-commit writer), or on the calling thread when the job is refused
  // before it is queued (invalid, or the store is closing). It must be
  // quick and must not wait for a write of the same store (it would
  // deadlock the writer); starting another asynchronous write is fine.
  // This default runs CreateJob on the calling thread.
  using CreateJobCallback =
      std::function<void(absl::StatusOr<CreateJobResult>)>;
  virtual void CreateJobAsync(core::Job job, CreateJobCallback done) {
    done(CreateJob(std::move(job)));
  }
  virtual absl::StatusOr<core::Job> GetJob(absl::string_view tenant_id,
                                           absl::string_view job_id) = 0;
  // tenant_id = kAnyTenant lists all tenants' jobs. Newest first.
  virtual absl::StatusOr<Page<core::Job>> ListJobs(
      absl::string_view tenant_id, const JobFilter& filter, int page_size,
      absl::string_view page_token) = 0;

  // Compare-and-set: FAILED_PRECONDITION "job X is RUNNING (attempt 2) ..."
  // when the job's state/attempt differ from the expectation or the edge is
  // not in core's table. On success writes the job row and a STATE_CHANGED
  // event in one transaction; sets start_time on the first RUNNING, end_time
  // on a terminal state, and clears the worker on terminal/QUEUED states.
  virtual absl::StatusOr<core::Job> TransitionJob(const JobTransition& t) = 0;

  // User requests, decided by core::CancelTarget/PauseTarget/ResumeTarget on
  // the current state inside the transaction. Cancel of a CANCELLING job
  // returns it unchanged. Resume re-queues with attempt + 1 and no worker
  // (PAUSED already counts against max_queued_jobs, so no quota check).
  virtual absl::StatusOr<core::Job> CancelJob(absl::string_view tenant_id,
                                              absl::string_view job_id,
                                              absl::string_view reason) = 0;
  virtual absl::StatusOr<core::Job> PauseJob(absl::string_view tenant_id,
                                             absl::string_view job_id) = 0;
  virtual absl::StatusOr<core::Job> ResumeJob(absl::string_view tenant_id,
                                              absl::string_view job_id) = 0;

  // Jobs per (tenant_id, state), every tenant (for /metrics).
  virtual absl::StatusOr<
      std::map<std::pair<std::string, core::JobState>, int64_t>>
  CountJobsByTenantAndState() = 0;

  // ---- events, metrics, checkpoints (one sequence per job) ---------------
  // Appends points reported by `attempt`; FAILED_PRECONDITION when attempt is
  // not the job's current attempt or the job holds no worker. Sequence, job_id
  // and attempt of each point are set here (time too, if unset). Updates
  // job.latest_metrics and job.progress (from `progress`, else step/epoch of
  // the last point). Returns the stored points.
  virtual absl::StatusOr<std::vector<core::MetricPoint>> AppendMetrics(
      absl::string_view job_id, int64_t attempt,
      std::vector<core::MetricPoint> points,
      const std::optional<core::JobProgress>& progress = std::nullopt) = 0;
  // An informational event (kMessage) for the job's current attempt.
  virtual absl::StatusOr<core::JobEvent> AppendJobMessage(
      absl::string_view job_id, int64_t attempt, absl::string_view message) = 0;
  // Sequence order, sequence > after_sequence, at most `limit` (0 = 1000).
  virtual absl::StatusOr<std::vector<core::JobEvent>> ListJobEvents(
      absl::string_view tenant_id, absl::string_view job_id,
      int64_t after_sequence, int limit) = 0;
  virtual absl::StatusOr<std::vector<core::MetricPoint>> ListJobMetrics(
      absl::string_view tenant_id, absl::string_view job_id,
      int64_t after_sequence, int limit) = 0;
  // Fenced like AppendMetrics. Records the checkpoint, sets
  // job.last_checkpoint, appends a CHECKPOINT event. Same step again
  // replaces the record (a later attempt re-reached it).
  virtual absl::StatusOr<core::Checkpoint> AddCheckpoint(
      absl::string_view job_id, int64_t attempt,
      core::Checkpoint checkpoint) = 0;
  virtual absl::StatusOr<std::vector<core::Checkpoint>> ListCheckpoints(
      absl::string_view tenant_id, absl::string_view job_id) = 0;
  // A job's sample completions by (step, index), those after `after`
  // (step, index) when set, only `step` when set, at most `limit` (0 =
  // 1000). NOT_FOUND for a job the tenant does not have.
  virtual absl::StatusOr<std::vector<core::JobSample>> ListJobSamples(
      absl::string_view tenant_id, absl::string_view job_id,
      std::optional<int64_t> step,
      std::optional<std::pair<int64_t, int64_t>> after, int limit) = 0;

  // ---- workers and leases -----------------------------------------------
  // Insert or update by id (id empty: assigned). A DRAINING worker that
  // registers again stays DRAINING; a LOST one becomes ACTIVE.
  virtual absl::StatusOr<core::Worker> RegisterWorker(
      core::Worker worker, absl::Time lease_expiry) = 0;
  // Sets last_heartbeat = now, the worker's lease_expiry, and extends the
  // lease of every job it holds to `lease_expiry`. NOT_FOUND for an unknown
  // worker; FAILED_PRECONDITION for a LOST one (it must register again).
  // Returns the jobs the worker holds now (so it can stop any others).
  virtual absl::StatusOr<std::vector<JobAttemptRef>> HeartbeatWorker(
      absl::string_view worker_id, absl::Time lease_expiry) = 0;
  virtual absl::StatusOr<core::Worker> GetWorker(absl::string_view id) = 0;
  virtual absl::StatusOr<std::vector<core::Worker>> ListWorkers() = 0;
  virtual absl::StatusOr<core::Worker> DrainWorker(absl::string_view id) = 0;

  // QUEUED -> RUNNING for `worker_id` at `expected_attempt` with the given
  // lease expiry. FAILED_PRECONDITION if the job moved on, or the worker is
  // unknown/not ACTIVE; RESOURCE_EXHAUSTED if the tenant's max_running_jobs
  // or max_gpus would be exceeded.
  // Also records the attempt (worker, `resources`, grant time) for
  // ListHeldAttempts and the fair-share tie-break.
  virtual absl::StatusOr<core::Job> GrantLease(
      absl::string_view job_id, int64_t expected_attempt,
      absl::string_view worker_id, absl::Time lease_expiry,
      const LeaseResources& resources) = 0;
  absl::StatusOr<core::Job> GrantLease(absl::string_view job_id,
                                       int64_t expected_attempt,
                                       absl::string_view worker_id,
                                       absl::Time lease_expiry) {
    return GrantLease(job_id, expected_attempt, worker_id, lease_expiry,
                      LeaseResources{});
  }
  // Every attempt `worker_id` holds now, oldest grant first.
  virtual absl::StatusOr<std::vector<HeldAttempt>> ListHeldAttempts(
      absl::string_view worker_id) = 0;
  // Applies one progress batch: fenced like EndAttempt (FAILED_PRECONDITION
  // for a stale attempt); metrics and events get sequences; checkpoints are
  // recorded (CHECKPOINT events, job.last_checkpoint = the latest step);
  // deleted checkpoints are dropped; the attempt's lease is renewed.
  virtual absl::StatusOr<ProgressResult> ApplyProgress(
      const ProgressReport& report) = 0;
  // The recorded attempt; NOT_FOUND if it was never granted.
  virtual absl::StatusOr<AttemptRecord> GetAttempt(absl::string_view job_id,
                                                   int64_t attempt) = 0;
  // The attempt's lease is lost now (worker gone, or it no longer runs the
  // attempt): core::PlanLeaseLoss applied, fenced on attempt and worker.
  virtual absl::StatusOr<core::Job> AbandonAttempt(
      absl::string_view job_id, int64_t attempt,
      absl::string_view worker_id) = 0;
  // Marks the worker LOST at once and applies PlanLeaseLoss to every attempt
  // it holds (a restarted agent names its previous id). NOT_FOUND if
  // unknown; a LOST worker is left as is.
  virtual absl::StatusOr<LeaseExpiryResult> MarkWorkerLost(
      absl::string_view worker_id) = 0;
  // Every lease of a worker that is not LOST, and of every attempt held,
  // ends no earlier than `until` (a restarted scheduler gives workers one
  // lease to reconnect before judging them). Returns the workers extended.
  virtual absl::StatusOr<int64_t> ExtendLeases(absl::Time until) = 0;
  // DRAINING -> ACTIVE (ACTIVE stays ACTIVE); FAILED_PRECONDITION for LOST.
  virtual absl::StatusOr<core::Worker> UndrainWorker(absl::string_view id) = 0;
  // Extends one job's lease; fenced on attempt and worker.
  virtual absl::StatusOr<core::Job> RenewLease(absl::string_view job_id,
                                               int64_t attempt,
                                               absl::string_view worker_id,
                                               absl::Time lease_expiry) = 0;
  // The attempt's worker reports how it ended (core::PlanAttemptEnd decides
  // the new state). Fenced on attempt and worker: FAILED_PRECONDITION for a
  // stale report, which tells the worker to stop the job.
  virtual absl::StatusOr<core::Job> EndAttempt(absl::string_view job_id,
                                               int64_t attempt,
                                               absl::string_view worker_id,
                                               const core::AttemptEnd& end) = 0;
  // Every job lease with expiry <= now is lost (core::PlanLeaseLoss), and
  // every worker whose lease expired becomes LOST. One transaction.
  virtual absl::StatusOr<LeaseExpiryResult> ExpireLeases(absl::Time now) = 0;

  // One consistent read of what the scheduling policy needs.
  virtual absl::StatusOr<core::SchedulingSnapshot> GetSchedulingSnapshot() = 0;
};

inline absl::StatusOr<JobCreationFacts> Store::GetJobCreationFacts(
    absl::string_view tenant_id, absl::string_view model,
    absl::string_view training_file_id, absl::string_view validation_file_id) {
  JobCreationFacts out;
  absl::Status s = KeepIfFound(GetTenant(tenant_id), &out.tenant);
  if (s.ok() && !model.empty()) {
    s = KeepIfFound(GetModel(model), &out.model);
    if (out.model && tenant_id != kAnyTenant &&
        !core::ModelVisibleTo(*out.model, tenant_id)) {
      out.model.reset();  // another tenant's: as if it never existed
    }
  }
  if (s.ok() && !training_file_id.empty()) {
    s = KeepIfFound(GetFile(tenant_id, training_file_id), &out.training_file);
  }
  if (s.ok() && !validation_file_id.empty()) {
    s = KeepIfFound(GetFile(tenant_id, validation_file_id),
                    &out.validation_file);
  }
  if (!s.ok()) return s;
  absl::StatusOr<std::vector<core::Worker>> workers = ListWorkers();
  if (!workers.ok()) return workers.status();
  out.workers = *std::move(workers);
  return out;
}

}  // namespace ftune::store

#endif  // FTUNE_SERVER_STORE_STORE_H_
