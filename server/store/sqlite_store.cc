// SqliteStore: group-commit writer and read pool. The catalog tables
// (tenants, API keys, models, files): sqlite_store_catalog.cc; jobs:
// sqlite_store_jobs.cc; workers and leases: sqlite_store_workers.cc.
#include "server/store/sqlite_store.h"

#include <chrono>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "common/logging.h"
#include "common/status.h"
#include "server/store/migrations.h"
#include "server/store/rows.h"

namespace ftune::store {

struct SqliteStore::WriteRequest {
  std::function<absl::Status(WriteContext&)> fn;
  absl::Status status;
  std::vector<JobChange> changes;
  // Set by the writer once the batch is committed (or failed). One
  // notification per request wakes all the waiters of a batch at once; an
  // Await on queue_mu_ would wake them one after another, each waiting for
  // the previous one to take and release the lock.
  absl::Notification done;
  // Set for an asynchronous write (WriteAsync): the writer calls it instead
  // of notifying `done`, then deletes the request.
  std::function<void(absl::Status)> on_done;
};

SqliteStore::SqliteStore(SqliteStoreOptions options)
    : options_(std::move(options)),
      clock_(options_.clock ? options_.clock : Clock::Real()) {}

absl::StatusOr<std::unique_ptr<SqliteStore>> SqliteStore::Open(
    SqliteStoreOptions options) {
  if (options.path.empty()) {
    return absl::InvalidArgumentError("database path is empty");
  }
  std::unique_ptr<SqliteStore> store(new SqliteStore(std::move(options)));
  FTUNE_RETURN_IF_ERROR(store->Start());
  return store;
}

absl::Status SqliteStore::Start() {
  ConnectionOptions co;
  co.synchronous_full = options_.synchronous_full;
  co.busy_timeout = options_.busy_timeout;
  FTUNE_ASSIGN_OR_RETURN(writer_conn_, Connection::Open(options_.path, co));
  FTUNE_RETURN_IF_ERROR(Annotate(Migrate(*writer_conn_),
                                 absl::StrCat("database ", options_.path)));
  if (options_.max_bytes > 0) {
    FTUNE_RETURN_IF_ERROR(writer_conn_->LimitSize(options_.max_bytes));
  }
  if (options_.checkpoint_interval > absl::ZeroDuration()) {
    FTUNE_RETURN_IF_ERROR(writer_conn_->Exec("PRAGMA wal_autocheckpoint=0"));
    // When the WAL starts over after it grew past this (a burst while the
    // checkpointer was starved of CPU), it is cut back to it.
    FTUNE_RETURN_IF_ERROR(
        writer_conn_->Exec("PRAGMA journal_size_limit=67108864"));
    FTUNE_ASSIGN_OR_RETURN(checkpoint_conn_,
                           Connection::Open(options_.path, co));
    checkpointer_ = std::thread([this] { CheckpointLoop(); });
  }
  writer_ = std::thread([this] { WriterLoop(); });
  return absl::OkStatus();
}

void SqliteStore::CheckpointLoop() {
  absl::MutexLock lock(&queue_mu_);
  while (!stopping_) {
    queue_mu_.AwaitWithTimeout(absl::Condition(&stopping_),
                               options_.checkpoint_interval);
    if (stopping_) break;
    queue_mu_.Unlock();
    // PASSIVE never waits for the writer or readers; it copies what it can
    // (frames behind an active reader stay for the next round).
    absl::Status s = checkpoint_conn_->CheckpointPassive().status();
    if (!s.ok() && !absl::IsUnavailable(s)) {
      FTUNE_LOG(WARNING) << "WAL checkpoint failed: " << s;
    }
    checkpoint_due_.store(true, std::memory_order_release);
    queue_mu_.Lock();
  }
}

SqliteStore::~SqliteStore() {
  {
    absl::MutexLock lock(&queue_mu_);
    stopping_ = true;
  }
  if (writer_.joinable()) writer_.join();
  if (checkpointer_.joinable()) checkpointer_.join();
}

int64_t SqliteStore::commit_count() const {
  absl::MutexLock lock(&queue_mu_);
  return commits_;
}

int64_t SqliteStore::queued_writes() const {
  absl::MutexLock lock(&queue_mu_);
  return static_cast<int64_t>(queue_.size());
}

bool SqliteStore::Enqueue(WriteRequest* req) {
  absl::MutexLock lock(&queue_mu_);
  if (stopping_) return false;
  queue_.push_back(req);
  return true;
}

absl::Status SqliteStore::Write(std::function<absl::Status(WriteContext&)> fn) {
  WriteRequest req;
  req.fn = std::move(fn);
  if (!Enqueue(&req)) return absl::UnavailableError("store is closing");
  req.done.WaitForNotification();
  return req.status;
}

void SqliteStore::WriteAsync(std::function<absl::Status(WriteContext&)> fn,
                             std::function<void(absl::Status)> done) {
  auto req = std::make_unique<WriteRequest>();
  req->fn = std::move(fn);
  req->on_done = std::move(done);
  if (Enqueue(req.get())) {
    req.release();  // The writer deletes it after calling on_done.
    return;
  }
  req->on_done(absl::UnavailableError("store is closing"));
}

void SqliteStore::WriterLoop() {
  std::vector<WriteRequest*> batch;
  while (true) {
    batch.clear();
    {
      absl::MutexLock lock(&queue_mu_);
      queue_mu_.Await(absl::Condition(
          +[](SqliteStore* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->queue_mu_) {
            return !s->queue_.empty() || s->stopping_;
          },
          this));
      if (queue_.empty()) return;  // stopping_ and drained.
      while (!queue_.empty() &&
             static_cast<int>(batch.size()) < options_.max_batch) {
        batch.push_back(queue_.front());
        queue_.pop_front();
      }
    }
    RunBatch(batch);
    std::vector<JobChange> committed;
    for (WriteRequest* r : batch) {
      if (!r->status.ok()) continue;
      for (JobChange& c : r->changes) committed.push_back(std::move(c));
    }
    if (options_.on_commit && !committed.empty()) options_.on_commit(committed);
    // A request may be destroyed by its waiter as soon as it is notified:
    // sort out the asynchronous ones first. Waiting threads are woken before
    // the callbacks run, so they need not wait for them.
    std::vector<std::unique_ptr<WriteRequest>> async;
    for (WriteRequest* r : batch) {
      if (r->on_done) {
        async.emplace_back(r);
      } else {
        r->done.Notify();
      }
    }
    for (const std::unique_ptr<WriteRequest>& r : async) r->on_done(r->status);
    if (checkpoint_due_.load(std::memory_order_acquire)) CatchUpCheckpoint();
  }
}

void SqliteStore::CatchUpCheckpoint() {
  // A reader still on an older snapshot stops a checkpoint short of the
  // WAL's end; such readers are brief, so try again after the next batches,
  // but not after every batch until the next round.
  constexpr int kTries = 4;
  if (catch_up_tries_ == 0) catch_up_tries_ = kTries;
  absl::StatusOr<Connection::CheckpointResult> r =
      writer_conn_->CheckpointPassive();
  const bool complete = r.ok() && r->checkpointed_frames >= r->log_frames;
  if (!r.ok() && !absl::IsUnavailable(r.status())) {
    FTUNE_LOG(WARNING) << "WAL checkpoint failed: " << r.status();
  }
  if (complete || --catch_up_tries_ == 0) {
    catch_up_tries_ = 0;
    checkpoint_due_.store(false, std::memory_order_relaxed);
  }
}

namespace {
// Runs one cached statement that returns no rows.
absl::Status RunCached(Connection& conn, const std::string& sql) {
  FTUNE_ASSIGN_OR_RETURN(Statement st, conn.Prepare(sql));
  return st.Run();
}
}  // namespace

void SqliteStore::RunBatch(std::vector<WriteRequest*>& batch) {
  static const auto* const kBegin = new std::string("BEGIN IMMEDIATE");
  static const auto* const kCommit = new std::string("COMMIT");
  static const auto* const kSavepoint = new std::string("SAVEPOINT w");
  static const auto* const kRelease = new std::string("RELEASE w");
  static const auto* const kRollbackTo = new std::string("ROLLBACK TO w");
  Connection& conn = *writer_conn_;
  const auto started = std::chrono::steady_clock::now();
  absl::Status begin = RunCached(conn, *kBegin);
  if (!begin.ok()) {
    for (WriteRequest* r : batch) r->status = begin;
    return;
  }
  const absl::Time now = clock_->Now();
  absl::Status fatal;
  for (WriteRequest* r : batch) {
    if (!fatal.ok()) {
      r->status = fatal;
      continue;
    }
    fatal = RunCached(conn, *kSavepoint);
    if (!fatal.ok()) {
      r->status = fatal;
      continue;
    }
    WriteContext ctx{conn, now, r->changes};
    r->status = r->fn(ctx);
    if (r->status.ok()) {
      fatal = RunCached(conn, *kRelease);
    } else {
      r->changes.clear();
      if (conn.InTransaction()) {
        // Undo this request alone; the batch carries on.
        fatal = RunCached(conn, *kRollbackTo);
        if (fatal.ok()) fatal = RunCached(conn, *kRelease);
      } else {
        // SQLite rolled the whole transaction back itself (SQLITE_FULL,
        // an I/O error): the batch's earlier writes are undone too, and
        // fail with this cause.
        fatal = r->status;
      }
    }
    if (!fatal.ok() && r->status.ok()) r->status = fatal;
  }
  absl::Status commit = fatal.ok() ? RunCached(conn, *kCommit) : fatal;
  if (options_.on_commit_timing) {
    options_.on_commit_timing(
        absl::FromChrono(std::chrono::steady_clock::now() - started),
        static_cast<int>(batch.size()));
  }
  if (!commit.ok()) {
    if (conn.InTransaction()) (void)conn.Exec("ROLLBACK");
    FTUNE_LOG(ERROR) << "group commit of " << batch.size()
                     << " writes failed: " << commit;
    for (WriteRequest* r : batch) {
      if (r->status.ok()) r->status = commit;
    }
    return;
  }
  absl::MutexLock lock(&queue_mu_);
  ++commits_;
}

absl::Status SqliteStore::Read(std::function<absl::Status(Connection&)> fn) {
  std::unique_ptr<Connection> conn;
  {
    absl::MutexLock lock(&pool_mu_);
    if (!read_pool_.empty()) {
      conn = std::move(read_pool_.back());
      read_pool_.pop_back();
    }
  }
  if (conn == nullptr) {
    ConnectionOptions co;
    co.read_only = true;
    co.busy_timeout = options_.busy_timeout;
    FTUNE_ASSIGN_OR_RETURN(conn, Connection::Open(options_.path, co));
  }
  // Cached statements: parsing BEGIN and COMMIT again on every read costs
  // more than many of the reads themselves.
  static const auto* const kBegin = new std::string("BEGIN");
  static const auto* const kCommit = new std::string("COMMIT");
  absl::Status s = RunCached(*conn, *kBegin);
  if (s.ok()) {
    s = fn(*conn);
    absl::Status end = RunCached(*conn, *kCommit);
    if (s.ok()) s = end;
    if (!end.ok()) (void)conn->Exec("ROLLBACK");
  }
  absl::MutexLock lock(&pool_mu_);
  if (static_cast<int>(read_pool_.size()) < options_.max_read_connections) {
    read_pool_.push_back(std::move(conn));
  }
  return s;
}

}  // namespace ftune::store
