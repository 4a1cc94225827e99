// SqliteStore: group-commit writer, read pool, and the catalog tables
// (tenants, API keys, models, files). Jobs: sqlite_store_jobs.cc; workers
// and leases: sqlite_store_workers.cc.
#include "server/store/sqlite_store.h"

#include <chrono>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "common/ids.h"
#include "common/logging.h"
#include "common/status.h"
#include "server/store/migrations.h"
#include "server/store/rows.h"

namespace ftune::store {

using internal::CheckTenantArg;
using internal::TenantSees;

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
      // Undo this request alone; the batch carries on.
      fatal = RunCached(conn, *kRollbackTo);
      if (fatal.ok()) fatal = RunCached(conn, *kRelease);
    }
    if (!fatal.ok()) r->status = fatal;
  }
  absl::Status commit = fatal.ok() ? RunCached(conn, *kCommit) : fatal;
  if (options_.on_commit_timing) {
    options_.on_commit_timing(
        absl::FromChrono(std::chrono::steady_clock::now() - started),
        static_cast<int>(batch.size()));
  }
  if (!commit.ok()) {
    (void)conn.Exec("ROLLBACK");
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

// ------------------------------------------------------------ tenants ----

namespace {

constexpr char kTenantColumns[] =
    "id, name, weight, max_queued_jobs, max_running_jobs, max_gpus, "
    "create_time";

core::Tenant ReadTenant(const Statement& st) {
  core::Tenant t;
  t.id = st.ColumnText(0);
  t.name = st.ColumnText(1);
  t.weight = st.ColumnDouble(2);
  t.quota.max_queued_jobs = st.ColumnInt(3);
  t.quota.max_running_jobs = st.ColumnInt(4);
  t.quota.max_gpus = st.ColumnInt(5);
  t.create_time = st.ColumnTime(6);
  return t;
}

absl::StatusOr<core::Tenant> LoadTenant(Connection& conn, absl::string_view by,
                                        absl::string_view value) {
  FTUNE_ASSIGN_OR_RETURN(
      Statement st,
      conn.Prepare(absl::StrCat("SELECT ", kTenantColumns,
                                " FROM tenants WHERE ", by, " = ?")));
  st.Bind(1, value);
  FTUNE_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) {
    return absl::NotFoundError(
        absl::StrCat("tenant with ", by, " '", value, "' not found"));
  }
  return ReadTenant(st);
}

absl::Status ValidateQuota(const core::Quota& q) {
  if (q.max_queued_jobs < 0 || q.max_running_jobs < 0 || q.max_gpus < 0) {
    return absl::InvalidArgumentError(
        "quota values must be >= 0 (0 = unlimited)");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<core::Tenant> SqliteStore::CreateTenant(core::Tenant tenant) {
  if (tenant.name.empty()) {
    return absl::InvalidArgumentError("tenant name is empty");
  }
  if (!(tenant.weight > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("tenant weight must be > 0, got ", tenant.weight));
  }
  FTUNE_RETURN_IF_ERROR(ValidateQuota(tenant.quota));
  if (tenant.id.empty()) tenant.id = NewId(kTenantIdPrefix);
  FTUNE_RETURN_IF_ERROR(Write([&](WriteContext& ctx) -> absl::Status {
    tenant.create_time = ctx.now;
    FTUNE_ASSIGN_OR_RETURN(
        Statement st,
        ctx.conn.Prepare("INSERT INTO tenants(id, name, weight, "
                         "max_queued_jobs, max_running_jobs, max_gpus, "
                         "create_time) VALUES(?,?,?,?,?,?,?)"));
    st.Bind(1, tenant.id)
        .Bind(2, tenant.name)
        .Bind(3, tenant.weight)
        .Bind(4, tenant.quota.max_queued_jobs)
        .Bind(5, tenant.quota.max_running_jobs)
        .Bind(6, tenant.quota.max_gpus)
        .BindTime(7, tenant.create_time);
    absl::Status s = st.Run();
    if (absl::IsAlreadyExists(s)) {
      return absl::AlreadyExistsError(
          absl::StrCat("a tenant named '", tenant.name, "' (or id ", tenant.id,
                       ") already exists"));
    }
    return s;
  }));
  return tenant;
}

absl::StatusOr<core::Tenant> SqliteStore::GetTenant(absl::string_view id) {
  core::Tenant out;
  FTUNE_RETURN_IF_ERROR(Read([&](Connection& conn) -> absl::Status {
    FTUNE_ASSIGN_OR_RETURN(out, LoadTenant(conn, "id", id));
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<core::Tenant> SqliteStore::GetTenantByName(
    absl::string_view name) {
  core::Tenant out;
  FTUNE_RETURN_IF_ERROR(Read([&](Connection& conn) -> absl::Status {
    FTUNE_ASSIGN_OR_RETURN(out, LoadTenant(conn, "name", name));
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<std::vector<core::Tenant>> SqliteStore::ListTenants() {
  std::vector<core::Tenant> out;
  FTUNE_RETURN_IF_ERROR(Read([&](Connection& conn) -> absl::Status {
    FTUNE_ASSIGN_OR_RETURN(Statement st, conn.Prepare(absl::StrCat(
                                             "SELECT ", kTenantColumns,
                                             " FROM tenants ORDER BY name")));
    while (true) {
      FTUNE_ASSIGN_OR_RETURN(bool row, st.Step());
      if (!row) break;
      out.push_back(ReadTenant(st));
    }
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<core::Tenant> SqliteStore::SetQuota(absl::string_view tenant_id,
                                                   const core::Quota& quota) {
  FTUNE_RETURN_IF_ERROR(ValidateQuota(quota));
  core::Tenant out;
  FTUNE_RETURN_IF_ERROR(Write([&](WriteContext& ctx) -> absl::Status {
    FTUNE_ASSIGN_OR_RETURN(
        Statement st,
        ctx.conn.Prepare("UPDATE tenants SET max_queued_jobs = ?, "
                         "max_running_jobs = ?, max_gpus = ? WHERE id = ?"));
    st.Bind(1, quota.max_queued_jobs)
        .Bind(2, quota.max_running_jobs)
        .Bind(3, quota.max_gpus)
        .Bind(4, tenant_id);
    FTUNE_RETURN_IF_ERROR(st.Run());
    FTUNE_ASSIGN_OR_RETURN(out, LoadTenant(ctx.conn, "id", tenant_id));
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<core::Tenant> SqliteStore::SetTenantWeight(
    absl::string_view tenant_id, double weight) {
  if (!(weight > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("tenant weight must be > 0, got ", weight));
  }
  core::Tenant out;
  FTUNE_RETURN_IF_ERROR(Write([&](WriteContext& ctx) -> absl::Status {
    FTUNE_ASSIGN_OR_RETURN(
        Statement st,
        ctx.conn.Prepare("UPDATE tenants SET weight = ? WHERE id = ?"));
    st.Bind(1, weight).Bind(2, tenant_id);
    FTUNE_RETURN_IF_ERROR(st.Run());
    FTUNE_ASSIGN_OR_RETURN(out, LoadTenant(ctx.conn, "id", tenant_id));
    return absl::OkStatus();
  }));
  return out;
}

// ----------------------------------------------------------- API keys ----

namespace {

constexpr char kKeyColumns[] =
    "id, role, tenant_id, prefix, hash, description, create_time, revoked, "
    "revoke_time";

core::ApiKey ReadKey(const Statement& st) {
  core::ApiKey k;
  k.id = st.ColumnText(0);
  k.role = static_cast<core::ApiKeyRole>(st.ColumnInt(1));
  k.tenant_id = st.ColumnText(2);
  k.prefix = st.ColumnText(3);
  k.hash = st.ColumnText(4);
  k.description = st.ColumnText(5);
  k.create_time = st.ColumnTime(6);
  k.revoked = st.ColumnInt(7) != 0;
  k.revoke_time = st.ColumnTime(8);
  return k;
}

absl::StatusOr<core::ApiKey> LoadKey(Connection& conn, absl::string_view by,
                                     absl::string_view value) {
  FTUNE_ASSIGN_OR_RETURN(
      Statement st,
      conn.Prepare(absl::StrCat("SELECT ", kKeyColumns, " FROM api_keys WHERE ",
                                by, " = ?")));
  st.Bind(1, value);
  FTUNE_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) return absl::NotFoundError("API key not found");
  return ReadKey(st);
}

}  // namespace

absl::StatusOr<core::ApiKey> SqliteStore::CreateApiKey(core::ApiKey key) {
  if (key.hash.size() != 64) {
    return absl::InvalidArgumentError(
        "API key hash must be 64 hex chars (sha256)");
  }
  const bool tenant_role = key.role == core::ApiKeyRole::kTenant;
  if (tenant_role == key.tenant_id.empty()) {
    return absl::InvalidArgumentError(
        tenant_role ? "a tenant API key needs a tenant_id"
                    : "admin and worker API keys must not have a tenant_id");
  }
  if (key.id.empty()) key.id = NewId(kApiKeyIdPrefix);
  key.revoked = false;
  key.revoke_time = absl::InfinitePast();
  FTUNE_RETURN_IF_ERROR(Write([&](WriteContext& ctx) -> absl::Status {
    if (tenant_role) {
      absl::StatusOr<core::Tenant> t =
          LoadTenant(ctx.conn, "id", key.tenant_id);
      if (absl::IsNotFound(t.status())) {
        return absl::NotFoundError(
            absl::StrCat("tenant ", key.tenant_id, " not found"));
      }
      FTUNE_RETURN_IF_ERROR(t.status());
    }
    key.create_time = ctx.now;
    FTUNE_ASSIGN_OR_RETURN(
        Statement st,
        ctx.conn.Prepare("INSERT INTO api_keys(id, role, tenant_id, prefix, "
                         "hash, description, create_time) "
                         "VALUES(?,?,?,?,?,?,?)"));
    st.Bind(1, key.id).Bind(2, static_cast<int>(key.role));
    if (tenant_role) {
      st.Bind(3, key.tenant_id);
    } else {
      st.BindNull(3);
    }
    st.Bind(4, key.prefix)
        .Bind(5, key.hash)
        .Bind(6, key.description)
        .BindTime(7, key.create_time);
    return st.Run();
  }));
  return key;
}

absl::StatusOr<core::ApiKey> SqliteStore::LookupApiKeyByHash(
    absl::string_view hash) {
  core::ApiKey out;
  FTUNE_RETURN_IF_ERROR(Read([&](Connection& conn) -> absl::Status {
    FTUNE_ASSIGN_OR_RETURN(out, LoadKey(conn, "hash", hash));
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<std::vector<core::ApiKey>> SqliteStore::ListApiKeys(
    absl::string_view tenant_id) {
  FTUNE_RETURN_IF_ERROR(CheckTenantArg(tenant_id));
  std::vector<core::ApiKey> out;
  FTUNE_RETURN_IF_ERROR(Read([&](Connection& conn) -> absl::Status {
    const bool all = tenant_id == kAnyTenant;
    FTUNE_ASSIGN_OR_RETURN(
        Statement st,
        conn.Prepare(absl::StrCat("SELECT ", kKeyColumns, " FROM api_keys",
                                  all ? "" : " WHERE tenant_id = ?",
                                  " ORDER BY create_time, id")));
    if (!all) st.Bind(1, tenant_id);
    while (true) {
      FTUNE_ASSIGN_OR_RETURN(bool row, st.Step());
      if (!row) break;
      out.push_back(ReadKey(st));
    }
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<core::ApiKey> SqliteStore::RevokeApiKey(absl::string_view id) {
  core::ApiKey out;
  FTUNE_RETURN_IF_ERROR(Write([&](WriteContext& ctx) -> absl::Status {
    FTUNE_ASSIGN_OR_RETURN(
        Statement st,
        ctx.conn.Prepare("UPDATE api_keys SET revoked = 1, revoke_time = ? "
                         "WHERE id = ? AND revoked = 0"));
    st.BindTime(1, ctx.now).Bind(2, id);
    FTUNE_RETURN_IF_ERROR(st.Run());
    absl::StatusOr<core::ApiKey> k = LoadKey(ctx.conn, "id", id);
    if (absl::IsNotFound(k.status())) {
      return absl::NotFoundError(absl::StrCat("API key ", id, " not found"));
    }
    FTUNE_ASSIGN_OR_RETURN(out, std::move(k));
    return absl::OkStatus();
  }));
  return out;
}

// ------------------------------------------------------------- models ----

namespace {
absl::StatusOr<core::Model> ReadModel(const Statement& st) {
  core::Model m;
  m.name = st.ColumnText(0);
  m.directory = st.ColumnText(1);
  FTUNE_ASSIGN_OR_RETURN(m.metadata, internal::DecodeStringMap(
                                         st.ColumnText(2), "model metadata"));
  m.update_time = st.ColumnTime(3);
  return m;
}
}  // namespace

absl::StatusOr<core::Model> SqliteStore::UpsertModel(core::Model model) {
  if (model.name.empty() || model.directory.empty()) {
    return absl::InvalidArgumentError("model name and directory are required");
  }
  FTUNE_RETURN_IF_ERROR(Write([&](WriteContext& ctx) -> absl::Status {
    model.update_time = ctx.now;
    FTUNE_ASSIGN_OR_RETURN(
        Statement st,
        ctx.conn.Prepare(
            "INSERT INTO models(name, directory, metadata, update_time) "
            "VALUES(?,?,?,?) ON CONFLICT(name) DO UPDATE SET "
            "directory = excluded.directory, metadata = excluded.metadata, "
            "update_time = excluded.update_time"));
    st.Bind(1, model.name)
        .Bind(2, model.directory)
        .Bind(3, internal::EncodeStringMap(model.metadata))
        .BindTime(4, model.update_time);
    return st.Run();
  }));
  return model;
}

absl::StatusOr<core::Model> SqliteStore::GetModel(absl::string_view name) {
  core::Model out;
  FTUNE_RETURN_IF_ERROR(Read([&](Connection& conn) -> absl::Status {
    FTUNE_ASSIGN_OR_RETURN(out, internal::LoadModel(conn, name));
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<std::vector<core::Model>> SqliteStore::ListModels() {
  std::vector<core::Model> out;
  FTUNE_RETURN_IF_ERROR(Read([&](Connection& conn) -> absl::Status {
    FTUNE_ASSIGN_OR_RETURN(
        Statement st,
        conn.Prepare("SELECT name, directory, metadata, update_time FROM "
                     "models ORDER BY name"));
    while (true) {
      FTUNE_ASSIGN_OR_RETURN(bool row, st.Step());
      if (!row) break;
      FTUNE_ASSIGN_OR_RETURN(core::Model m, ReadModel(st));
      out.push_back(std::move(m));
    }
    return absl::OkStatus();
  }));
  return out;
}

// -------------------------------------------------------------- files ----

namespace {

constexpr char kFileColumns[] =
    "id, tenant_id, filename, purpose, size_bytes, sha256, status, "
    "status_detail, format, example_count, storage_path, create_time, seq";

core::FileRecord ReadFileRow(const Statement& st) {
  core::FileRecord f;
  f.id = st.ColumnText(0);
  f.tenant_id = st.ColumnText(1);
  f.filename = st.ColumnText(2);
  f.purpose = st.ColumnText(3);
  f.size_bytes = st.ColumnInt(4);
  f.sha256 = st.ColumnText(5);
  f.status = static_cast<core::FileStatus>(st.ColumnInt(6));
  f.status_detail = st.ColumnText(7);
  f.format = st.ColumnText(8);
  f.example_count = st.ColumnInt(9);
  f.storage_path = st.ColumnText(10);
  f.create_time = st.ColumnTime(11);
  return f;
}

// Visible (not deleted) file of `tenant_id`; NOT_FOUND otherwise.
absl::StatusOr<core::FileRecord> LoadFile(Connection& conn,
                                          absl::string_view tenant_id,
                                          absl::string_view id) {
  FTUNE_ASSIGN_OR_RETURN(
      Statement st,
      conn.Prepare(absl::StrCat("SELECT ", kFileColumns,
                                " FROM files WHERE id = ? AND status != ",
                                static_cast<int>(core::FileStatus::kDeleted))));
  st.Bind(1, id);
  FTUNE_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row || !TenantSees(tenant_id, st.ColumnText(1))) {
    return absl::NotFoundError(absl::StrCat("file ", id, " not found"));
  }
  return ReadFileRow(st);
}

}  // namespace

absl::StatusOr<core::FileRecord> SqliteStore::CreateFile(
    core::FileRecord file) {
  if (file.tenant_id.empty() || file.tenant_id == kAnyTenant) {
    return absl::InvalidArgumentError("file tenant_id is required");
  }
  if (file.storage_path.empty()) {
    return absl::InvalidArgumentError("file storage_path is required");
  }
  if (file.status == core::FileStatus::kDeleted) {
    return absl::InvalidArgumentError("cannot create a DELETED file");
  }
  if (file.id.empty()) file.id = NewId(kFileIdPrefix);
  FTUNE_RETURN_IF_ERROR(Write([&](WriteContext& ctx) -> absl::Status {
    file.create_time = ctx.now;
    FTUNE_ASSIGN_OR_RETURN(
        Statement st,
        ctx.conn.Prepare(
            "INSERT INTO files(id, tenant_id, filename, purpose, size_bytes, "
            "sha256, status, status_detail, format, example_count, "
            "storage_path, create_time) VALUES(?,?,?,?,?,?,?,?,?,?,?,?)"));
    st.Bind(1, file.id)
        .Bind(2, file.tenant_id)
        .Bind(3, file.filename)
        .Bind(4, file.purpose)
        .Bind(5, file.size_bytes)
        .Bind(6, file.sha256)
        .Bind(7, static_cast<int>(file.status))
        .Bind(8, file.status_detail)
        .Bind(9, file.format)
        .Bind(10, file.example_count)
        .Bind(11, file.storage_path)
        .BindTime(12, file.create_time);
    absl::Status s = st.Run();
    if (absl::IsFailedPrecondition(s)) {  // Foreign key: no such tenant.
      return absl::NotFoundError(
          absl::StrCat("tenant ", file.tenant_id, " not found"));
    }
    return s;
  }));
  return file;
}

absl::StatusOr<core::FileRecord> SqliteStore::GetFile(
    absl::string_view tenant_id, absl::string_view id) {
  FTUNE_RETURN_IF_ERROR(CheckTenantArg(tenant_id));
  core::FileRecord out;
  FTUNE_RETURN_IF_ERROR(Read([&](Connection& conn) -> absl::Status {
    FTUNE_ASSIGN_OR_RETURN(out, LoadFile(conn, tenant_id, id));
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<Page<core::FileRecord>> SqliteStore::ListFiles(
    absl::string_view tenant_id, absl::string_view purpose, int page_size,
    absl::string_view page_token) {
  FTUNE_RETURN_IF_ERROR(CheckTenantArg(tenant_id));
  FTUNE_ASSIGN_OR_RETURN(int64_t after,
                         internal::DecodePageToken("files", page_token));
  const int limit = internal::ClampPageSize(page_size);
  Page<core::FileRecord> page;
  FTUNE_RETURN_IF_ERROR(Read([&](Connection& conn) -> absl::Status {
    const bool all = tenant_id == kAnyTenant;
    FTUNE_ASSIGN_OR_RETURN(
        Statement st,
        conn.Prepare(absl::StrCat(
            "SELECT ", kFileColumns, " FROM files WHERE status != ",
            static_cast<int>(core::FileStatus::kDeleted),
            " AND (?1 = 0 OR seq < ?1) AND (?2 = '' OR purpose = ?2)",
            all ? "" : " AND tenant_id = ?3", " ORDER BY seq DESC LIMIT ?4")));
    st.Bind(1, after).Bind(2, purpose).Bind(4, limit + 1);
    if (!all) st.Bind(3, tenant_id);
    int64_t last_seq = 0;
    while (true) {
      FTUNE_ASSIGN_OR_RETURN(bool row, st.Step());
      if (!row) break;
      if (static_cast<int>(page.items.size()) == limit) {
        page.next_page_token = internal::EncodePageToken("files", last_seq);
        break;
      }
      page.items.push_back(ReadFileRow(st));
      last_seq = st.ColumnInt(12);
    }
    return absl::OkStatus();
  }));
  return page;
}

absl::StatusOr<core::FileRecord> SqliteStore::UpdateFileStatus(
    absl::string_view tenant_id, absl::string_view id, core::FileStatus status,
    absl::string_view detail) {
  FTUNE_RETURN_IF_ERROR(CheckTenantArg(tenant_id));
  if (status == core::FileStatus::kDeleted) {
    return absl::InvalidArgumentError("use DeleteFile to delete a file");
  }
  core::FileRecord out;
  FTUNE_RETURN_IF_ERROR(Write([&](WriteContext& ctx) -> absl::Status {
    FTUNE_ASSIGN_OR_RETURN(out, LoadFile(ctx.conn, tenant_id, id));
    FTUNE_ASSIGN_OR_RETURN(
        Statement st,
        ctx.conn.Prepare(
            "UPDATE files SET status = ?, status_detail = ? WHERE id = ?"));
    st.Bind(1, static_cast<int>(status)).Bind(2, detail).Bind(3, id);
    FTUNE_RETURN_IF_ERROR(st.Run());
    out.status = status;
    out.status_detail = std::string(detail);
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<core::FileRecord> SqliteStore::DeleteFile(
    absl::string_view tenant_id, absl::string_view id) {
  FTUNE_RETURN_IF_ERROR(CheckTenantArg(tenant_id));
  core::FileRecord out;
  FTUNE_RETURN_IF_ERROR(Write([&](WriteContext& ctx) -> absl::Status {
    FTUNE_ASSIGN_OR_RETURN(out, LoadFile(ctx.conn, tenant_id, id));
    FTUNE_ASSIGN_OR_RETURN(
        Statement users,
        ctx.conn.Prepare(absl::StrCat(
            "SELECT id, state FROM jobs WHERE (training_file_id = ?1 OR "
            "validation_file_id = ?1) AND state NOT IN (",
            static_cast<int>(core::JobState::kSucceeded), ",",
            static_cast<int>(core::JobState::kFailed), ",",
            static_cast<int>(core::JobState::kCancelled), ") LIMIT 1")));
    users.Bind(1, id);
    FTUNE_ASSIGN_OR_RETURN(bool used, users.Step());
    if (used) {
      FTUNE_ASSIGN_OR_RETURN(core::JobState state,
                             core::JobStateFromInt(users.ColumnInt(1)));
      return absl::FailedPreconditionError(absl::StrCat(
          "file ", id, " is used by job ", users.ColumnText(0), " which is ",
          core::JobStateName(state), "; cancel it or wait for it to end"));
    }
    FTUNE_ASSIGN_OR_RETURN(
        Statement st,
        ctx.conn.Prepare("UPDATE files SET status = ? WHERE id = ?"));
    st.Bind(1, static_cast<int>(core::FileStatus::kDeleted)).Bind(2, id);
    return st.Run();
  }));
  return out;
}

namespace internal {
absl::StatusOr<std::vector<core::Tenant>> LoadAllTenants(Connection& conn) {
  std::vector<core::Tenant> out;
  FTUNE_ASSIGN_OR_RETURN(
      Statement st, conn.Prepare(absl::StrCat("SELECT ", kTenantColumns,
                                              " FROM tenants ORDER BY id")));
  while (true) {
    FTUNE_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    out.push_back(ReadTenant(st));
  }
  return out;
}
absl::StatusOr<core::Tenant> LoadTenantById(Connection& conn,
                                            absl::string_view id) {
  return LoadTenant(conn, "id", id);
}
absl::StatusOr<core::Model> LoadModel(Connection& conn,
                                      absl::string_view name) {
  FTUNE_ASSIGN_OR_RETURN(
      Statement st, conn.Prepare("SELECT name, directory, metadata, "
                                 "update_time FROM models WHERE name = ?"));
  st.Bind(1, name);
  FTUNE_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) {
    return absl::NotFoundError(absl::StrCat("model '", name, "' not found"));
  }
  return ReadModel(st);
}
absl::StatusOr<core::FileRecord> LoadVisibleFile(Connection& conn,
                                                 absl::string_view tenant_id,
                                                 absl::string_view id) {
  return LoadFile(conn, tenant_id, id);
}
}  // namespace internal

}  // namespace ftune::store
