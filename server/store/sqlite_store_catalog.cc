// SqliteStore: the catalog tables (tenants, API keys, models, files): what
// jobs name and reference, written rarely and read on every job creation.
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/ids.h"
#include "common/status.h"
#include "server/store/rows.h"
#include "server/store/sqlite_store.h"

namespace ftune::store {

using internal::CheckTenantArg;
using internal::TenantSees;

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
  m.tenant_id = st.ColumnText(4);
  m.job_id = st.ColumnText(5);
  return m;
}
}  // namespace

absl::StatusOr<core::Model> SqliteStore::UpsertModel(core::Model model) {
  if (model.name.empty() || model.directory.empty()) {
    return absl::InvalidArgumentError("model name and directory are required");
  }
  FTUNE_RETURN_IF_ERROR(Write([&](WriteContext& ctx) -> absl::Status {
    model.update_time = ctx.now;
    return internal::WriteModel(ctx.conn, model, ctx.now);
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
    FTUNE_ASSIGN_OR_RETURN(Statement st, conn.Prepare(absl::StrCat(
                                             "SELECT ", internal::kModelColumns,
                                             " FROM models ORDER BY name")));
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
      Statement st, conn.Prepare(absl::StrCat("SELECT ", kModelColumns,
                                              " FROM models WHERE name = ?")));
  st.Bind(1, name);
  FTUNE_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) {
    return absl::NotFoundError(absl::StrCat("model '", name, "' not found"));
  }
  return ReadModel(st);
}
absl::StatusOr<core::Model> LoadVisibleModel(Connection& conn,
                                             absl::string_view tenant_id,
                                             absl::string_view name) {
  FTUNE_ASSIGN_OR_RETURN(core::Model m, LoadModel(conn, name));
  if (tenant_id != kAnyTenant && !core::ModelVisibleTo(m, tenant_id)) {
    return absl::NotFoundError(absl::StrCat("model '", name, "' not found"));
  }
  return m;
}
absl::Status WriteModel(Connection& conn, const core::Model& model,
                        absl::Time now) {
  FTUNE_ASSIGN_OR_RETURN(
      Statement st,
      conn.Prepare(
          "INSERT INTO models(name, directory, metadata, update_time, "
          "tenant_id, job_id) VALUES(?,?,?,?,?,?) ON CONFLICT(name) DO "
          "UPDATE SET directory = excluded.directory, metadata = "
          "excluded.metadata, update_time = excluded.update_time, "
          "tenant_id = excluded.tenant_id, job_id = excluded.job_id"));
  st.Bind(1, model.name)
      .Bind(2, model.directory)
      .Bind(3, EncodeStringMap(model.metadata))
      .BindTime(4, now)
      .Bind(5, model.tenant_id)
      .Bind(6, model.job_id);
  return st.Run();
}
absl::StatusOr<core::FileRecord> LoadVisibleFile(Connection& conn,
                                                 absl::string_view tenant_id,
                                                 absl::string_view id) {
  return LoadFile(conn, tenant_id, id);
}
}  // namespace internal

}  // namespace ftune::store
