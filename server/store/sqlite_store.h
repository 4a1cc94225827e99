// Store over one SQLite file (DESIGN.md: on local disk, never shared storage).
//
// Writes: one writer thread owns the only write connection and drains a
// queue of write requests in batches (group commit): BEGIN IMMEDIATE, each
// request inside its own SAVEPOINT (a failing request rolls back alone and
// gets its own error), one COMMIT (= one fsync with synchronous=FULL) for the
// batch, then every caller of the batch is woken, or for an asynchronous
// write (CreateJobAsync) its callback is run on the writer thread. Throughput
// therefore grows with concurrency instead of being capped by the fsync rate;
// a lone writer pays one commit as before.
// Reads: a pool of read-only connections, each read in one (deferred)
// transaction, so it sees one consistent snapshot; WAL lets them run beside
// the writer.
//
// Thread-safe. The destructor finishes queued writes (asynchronous ones
// included: their callbacks run before it returns), then closes.
#ifndef FTUNE_SERVER_STORE_SQLITE_STORE_H_
#define FTUNE_SERVER_STORE_SQLITE_STORE_H_

#include <atomic>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "server/store/sqlite_db.h"
#include "server/store/store.h"
#include "server/store/webhook_store.h"

namespace ftune::store {

struct SqliteStoreOptions {
  std::string path;              // The database file; created if missing.
  bool synchronous_full = true;  // false: synchronous=NORMAL (faster, may
                                 // lose the last commits on power loss).
  absl::Duration busy_timeout = absl::Seconds(5);
  int max_batch = 512;           // Write requests per group commit.
  int max_read_connections = 8;  // Idle read connections kept.
  Clock* clock = nullptr;        // Times stamped on rows; null = real clock.
  // Copy the WAL back into the database from a background thread at this
  // interval instead of inside a commit (SQLite's auto-checkpoint would stall
  // one batch in every ~1000 pages written with an extra write + fsync).
  // After each such checkpoint the writer, between two batches, checkpoints
  // the few frames committed meanwhile: only a checkpoint that reaches the
  // end of the WAL lets the next commit start the WAL again from its
  // beginning; without it the WAL grows for as long as writes keep coming
  // (tens of MB/s under load) and every commit extends the file.
  // Zero: leave SQLite's auto-checkpoint on.
  absl::Duration checkpoint_interval = absl::Milliseconds(500);
  // Largest size of the database file in bytes (SQLite's max_page_count);
  // a write that would grow it further fails with UNAVAILABLE and writes
  // nothing, as on a full disk. Never below the size at open. 0 = no limit.
  int64_t max_bytes = 0;
  // Called on the writer thread after each commit with what the committed
  // requests did to jobs, in commit order. Must be quick and must not call
  // back into the store's write methods (it would deadlock).
  std::function<void(const std::vector<JobChange>&)> on_commit;
  // Called on the writer thread after each group commit that reached COMMIT
  // (successful or not) with the write transaction's duration, BEGIN to
  // COMMIT returned (fsync included), and how many writes it batched.
  std::function<void(absl::Duration, int writes)> on_commit_timing;
};

class SqliteStore : public Store, public WebhookStore {
 public:
  // Opens/creates the database and migrates it to the latest schema.
  // FAILED_PRECONDITION if the file's schema is newer than this binary's.
  static absl::StatusOr<std::unique_ptr<SqliteStore>> Open(
      SqliteStoreOptions options);
  ~SqliteStore() override;

  // ---- Store ----
  absl::StatusOr<core::Tenant> CreateTenant(core::Tenant tenant) override;
  absl::StatusOr<core::Tenant> GetTenant(absl::string_view id) override;
  absl::StatusOr<core::Tenant> GetTenantByName(absl::string_view name) override;
  absl::StatusOr<std::vector<core::Tenant>> ListTenants() override;
  absl::StatusOr<core::Tenant> SetQuota(absl::string_view tenant_id,
                                        const core::Quota& quota) override;
  absl::StatusOr<core::Tenant> SetTenantWeight(absl::string_view tenant_id,
                                               double weight) override;
  absl::StatusOr<core::ApiKey> CreateApiKey(core::ApiKey key) override;
  absl::StatusOr<core::ApiKey> LookupApiKeyByHash(
      absl::string_view hash) override;
  absl::StatusOr<std::vector<core::ApiKey>> ListApiKeys(
      absl::string_view tenant_id) override;
  absl::StatusOr<core::ApiKey> RevokeApiKey(absl::string_view id) override;
  absl::StatusOr<core::Model> UpsertModel(core::Model model) override;
  absl::StatusOr<core::Model> GetModel(absl::string_view name) override;
  absl::StatusOr<std::vector<core::Model>> ListModels() override;
  absl::StatusOr<core::FileRecord> CreateFile(core::FileRecord file) override;
  absl::StatusOr<core::FileRecord> GetFile(absl::string_view tenant_id,
                                           absl::string_view id) override;
  absl::StatusOr<Page<core::FileRecord>> ListFiles(
      absl::string_view tenant_id, absl::string_view purpose, int page_size,
      absl::string_view page_token) override;
  absl::StatusOr<core::FileRecord> UpdateFileStatus(
      absl::string_view tenant_id, absl::string_view id,
      core::FileStatus status, absl::string_view detail) override;
  absl::StatusOr<core::FileRecord> DeleteFile(absl::string_view tenant_id,
                                              absl::string_view id) override;
  absl::StatusOr<CreateJobResult> CreateJob(core::Job job) override;
  absl::StatusOr<JobCreationFacts> GetJobCreationFacts(
      absl::string_view tenant_id, absl::string_view model,
      absl::string_view training_file_id,
      absl::string_view validation_file_id) override;
  void CreateJobAsync(core::Job job, CreateJobCallback done) override;
  absl::StatusOr<core::Job> GetJob(absl::string_view tenant_id,
                                   absl::string_view job_id) override;
  absl::StatusOr<Page<core::Job>> ListJobs(
      absl::string_view tenant_id, const JobFilter& filter, int page_size,
      absl::string_view page_token) override;
  absl::StatusOr<core::Job> TransitionJob(const JobTransition& t) override;
  absl::StatusOr<core::Job> CancelJob(absl::string_view tenant_id,
                                      absl::string_view job_id,
                                      absl::string_view reason) override;
  absl::StatusOr<core::Job> PauseJob(absl::string_view tenant_id,
                                     absl::string_view job_id) override;
  absl::StatusOr<core::Job> ResumeJob(absl::string_view tenant_id,
                                      absl::string_view job_id) override;
  absl::StatusOr<std::vector<core::MetricPoint>> AppendMetrics(
      absl::string_view job_id, int64_t attempt,
      std::vector<core::MetricPoint> points,
      const std::optional<core::JobProgress>& progress = std::nullopt) override;
  absl::StatusOr<core::JobEvent> AppendJobMessage(
      absl::string_view job_id, int64_t attempt,
      absl::string_view message) override;
  absl::StatusOr<std::vector<core::JobEvent>> ListJobEvents(
      absl::string_view tenant_id, absl::string_view job_id,
      int64_t after_sequence, int limit) override;
  absl::StatusOr<std::vector<core::MetricPoint>> ListJobMetrics(
      absl::string_view tenant_id, absl::string_view job_id,
      int64_t after_sequence, int limit) override;
  absl::StatusOr<core::Checkpoint> AddCheckpoint(
      absl::string_view job_id, int64_t attempt,
      core::Checkpoint checkpoint) override;
  absl::StatusOr<std::vector<core::Checkpoint>> ListCheckpoints(
      absl::string_view tenant_id, absl::string_view job_id) override;
  absl::StatusOr<std::vector<core::JobSample>> ListJobSamples(
      absl::string_view tenant_id, absl::string_view job_id,
      std::optional<int64_t> step,
      std::optional<std::pair<int64_t, int64_t>> after, int limit) override;
  absl::StatusOr<core::Worker> RegisterWorker(core::Worker worker,
                                              absl::Time lease_expiry) override;
  absl::StatusOr<std::vector<JobAttemptRef>> HeartbeatWorker(
      absl::string_view worker_id, absl::Time lease_expiry) override;
  absl::StatusOr<core::Worker> GetWorker(absl::string_view id) override;
  absl::StatusOr<std::vector<core::Worker>> ListWorkers() override;
  absl::StatusOr<core::Worker> DrainWorker(absl::string_view id) override;
  using Store::GrantLease;
  absl::StatusOr<core::Job> GrantLease(
      absl::string_view job_id, int64_t expected_attempt,
      absl::string_view worker_id, absl::Time lease_expiry,
      const LeaseResources& resources) override;
  absl::StatusOr<std::vector<HeldAttempt>> ListHeldAttempts(
      absl::string_view worker_id) override;
  absl::StatusOr<ProgressResult> ApplyProgress(
      const ProgressReport& report) override;
  absl::StatusOr<AttemptRecord> GetAttempt(absl::string_view job_id,
                                           int64_t attempt) override;
  absl::StatusOr<core::Job> AbandonAttempt(
      absl::string_view job_id, int64_t attempt,
      absl::string_view worker_id) override;
  absl::StatusOr<LeaseExpiryResult> MarkWorkerLost(
      absl::string_view worker_id) override;
  absl::StatusOr<int64_t> ExtendLeases(absl::Time until) override;
  absl::StatusOr<core::Worker> UndrainWorker(absl::string_view id) override;
  absl::StatusOr<std::map<std::pair<std::string, core::JobState>, int64_t>>
  CountJobsByTenantAndState() override;
  absl::StatusOr<core::Job> RenewLease(absl::string_view job_id,
                                       int64_t attempt,
                                       absl::string_view worker_id,
                                       absl::Time lease_expiry) override;
  absl::StatusOr<core::Job> EndAttempt(absl::string_view job_id,
                                       int64_t attempt,
                                       absl::string_view worker_id,
                                       const core::AttemptEnd& end) override;
  absl::StatusOr<LeaseExpiryResult> ExpireLeases(absl::Time now) override;
  absl::StatusOr<core::SchedulingSnapshot> GetSchedulingSnapshot() override;

  // ---- WebhookStore (sqlite_store_webhooks.cc) ----
  absl::StatusOr<WebhookEndpoint> CreateWebhookEndpoint(
      WebhookEndpoint endpoint) override;
  absl::StatusOr<WebhookEndpoint> GetWebhookEndpoint(
      absl::string_view tenant_id, absl::string_view id) override;
  absl::StatusOr<Page<WebhookEndpoint>> ListWebhookEndpoints(
      absl::string_view tenant_id, int page_size,
      absl::string_view page_token) override;
  absl::StatusOr<WebhookEndpoint> UpdateWebhookEndpoint(
      absl::string_view tenant_id, absl::string_view id,
      const WebhookEndpointUpdate& update) override;
  absl::StatusOr<WebhookDelivery> RedeliverWebhookDelivery(
      absl::string_view tenant_id, absl::string_view endpoint_id,
      absl::string_view delivery_id) override;
  absl::StatusOr<WebhookEndpoint> RotateWebhookSecret(
      absl::string_view tenant_id, absl::string_view id,
      const std::string& new_secret, absl::Duration grace) override;
  absl::StatusOr<WebhookEndpoint> DeleteWebhookEndpoint(
      absl::string_view tenant_id, absl::string_view id) override;
  absl::StatusOr<Page<WebhookDelivery>> ListWebhookDeliveries(
      absl::string_view tenant_id, absl::string_view endpoint_id, int page_size,
      absl::string_view page_token) override;
  absl::StatusOr<std::vector<DueWebhookDelivery>> ListDueWebhookDeliveries(
      absl::Time now, int limit,
      const std::vector<std::string>& exclude) override;
  absl::StatusOr<WebhookDelivery> RecordWebhookAttempt(
      absl::string_view delivery_id,
      const WebhookAttemptResult& result) override;
  absl::StatusOr<std::optional<absl::Time>> NextWebhookDueTime() override;

  // Number of COMMITs the writer has issued (for tests and the benchmark:
  // fewer commits than writes shows group commit at work).
  int64_t commit_count() const;
  // Write requests waiting for the writer (not counting the running batch).
  int64_t queued_writes() const;

  // What a write request sees: the write connection inside the batch's
  // transaction (and its own savepoint), the batch's time, and where to
  // report job changes for on_commit.
  struct WriteContext {
    Connection& conn;
    absl::Time now;
    std::vector<JobChange>& changes;
  };

 private:
  struct WriteRequest;
  explicit SqliteStore(SqliteStoreOptions options);
  absl::Status Start();
  void WriterLoop();
  void RunBatch(std::vector<WriteRequest*>& batch);
  void CheckpointLoop();
  // On the writer thread between batches: finishes what the checkpointer
  // started (see checkpoint_interval).
  void CatchUpCheckpoint();

  // Runs `fn` in the next group commit; returns its status, or the commit's
  // error if the batch failed to commit.
  absl::Status Write(std::function<absl::Status(WriteContext&)> fn);
  // The same without waiting: `done` gets that status on the writer thread
  // after the batch's COMMIT (and on_commit), or at once on this thread
  // (UNAVAILABLE) when the store is closing.
  void WriteAsync(std::function<absl::Status(WriteContext&)> fn,
                  std::function<void(absl::Status)> done);
  // Queues `req`; false (not queued) when the store is closing.
  bool Enqueue(WriteRequest* req);
  // The body of CreateJob's write request.
  static absl::Status CreateJobInTransaction(WriteContext& ctx, core::Job& job,
                                             CreateJobResult& result);
  // Runs `fn` on a pooled read connection inside one read transaction.
  absl::Status Read(std::function<absl::Status(Connection&)> fn);

  SqliteStoreOptions options_;
  Clock* clock_;
  std::unique_ptr<Connection> writer_conn_;  // Only the writer thread.

  mutable absl::Mutex queue_mu_;
  std::deque<WriteRequest*> queue_ ABSL_GUARDED_BY(queue_mu_);
  bool stopping_ ABSL_GUARDED_BY(queue_mu_) = false;
  int64_t commits_ ABSL_GUARDED_BY(queue_mu_) = 0;
  std::thread writer_;
  std::unique_ptr<Connection> checkpoint_conn_;  // Only the checkpointer.
  std::thread checkpointer_;
  // Set by the checkpointer after each round; the writer then catches up.
  std::atomic<bool> checkpoint_due_{false};
  int catch_up_tries_ = 0;  // Only the writer thread.

  absl::Mutex pool_mu_;
  std::vector<std::unique_ptr<Connection>> read_pool_ ABSL_GUARDED_BY(pool_mu_);
};

}  // namespace ftune::store

#endif  // FTUNE_SERVER_STORE_SQLITE_STORE_H_
