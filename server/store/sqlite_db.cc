#include "server/store/sqlite_db.h"

#include <sqlite3.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace ftune::store {

Statement::Statement(Statement&& other) noexcept
    : conn_(other.conn_),
      stmt_(other.stmt_),
      sql_(other.sql_),
      bind_error_(std::move(other.bind_error_)) {
  other.stmt_ = nullptr;
}

Statement::~Statement() {
  if (stmt_ != nullptr) {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
}

#define FTUNE_SQLITE_BIND_(call)                                         \
  do {                                                                   \
    int rc = (call);                                                     \
    if (rc != SQLITE_OK && bind_error_.ok()) {                           \
      bind_error_ = conn_->Error(                                        \
          rc, absl::StrCat("binding parameter ", index, " of ", *sql_)); \
    }                                                                    \
    return *this;                                                        \
  } while (false)

Statement& Statement::Bind(int index, int64_t value) {
  FTUNE_SQLITE_BIND_(sqlite3_bind_int64(stmt_, index, value));
}
Statement& Statement::Bind(int index, double value) {
  FTUNE_SQLITE_BIND_(sqlite3_bind_double(stmt_, index, value));
}
Statement& Statement::Bind(int index, absl::string_view text) {
  FTUNE_SQLITE_BIND_(sqlite3_bind_text(stmt_, index, text.data(),
                                       static_cast<int>(text.size()),
                                       SQLITE_TRANSIENT));
}
Statement& Statement::BindBlob(int index, absl::string_view bytes) {
  FTUNE_SQLITE_BIND_(sqlite3_bind_blob(stmt_, index, bytes.data(),
                                       static_cast<int>(bytes.size()),
                                       SQLITE_TRANSIENT));
}
Statement& Statement::BindNull(int index) {
  FTUNE_SQLITE_BIND_(sqlite3_bind_null(stmt_, index));
}
#undef FTUNE_SQLITE_BIND_

Statement& Statement::BindTime(int index, absl::Time t) {
  if (t == absl::InfinitePast()) return BindNull(index);
  return Bind(index, absl::ToUnixMicros(t));
}
Statement& Statement::BindOptional(int index,
                                   const std::optional<double>& value) {
  if (!value.has_value()) return BindNull(index);
  return Bind(index, *value);
}

absl::StatusOr<bool> Statement::Step() {
  if (!bind_error_.ok()) return bind_error_;
  int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  return conn_->Error(rc, *sql_);
}

absl::Status Statement::Run() {
  absl::StatusOr<bool> row = Step();
  if (!row.ok()) return row.status();
  return absl::OkStatus();
}

void Statement::Reset() {
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
  bind_error_ = absl::OkStatus();
}

int64_t Statement::ColumnInt(int col) const {
  return sqlite3_column_int64(stmt_, col);
}
double Statement::ColumnDouble(int col) const {
  return sqlite3_column_double(stmt_, col);
}
std::string Statement::ColumnText(int col) const {
  const unsigned char* p = sqlite3_column_text(stmt_, col);
  if (p == nullptr) return "";
  return std::string(reinterpret_cast<const char*>(p),
                     sqlite3_column_bytes(stmt_, col));
}
std::string Statement::ColumnBlob(int col) const {
  const void* p = sqlite3_column_blob(stmt_, col);
  if (p == nullptr) return "";
  return std::string(static_cast<const char*>(p),
                     sqlite3_column_bytes(stmt_, col));
}
bool Statement::ColumnIsNull(int col) const {
  return sqlite3_column_type(stmt_, col) == SQLITE_NULL;
}
absl::Time Statement::ColumnTime(int col) const {
  if (ColumnIsNull(col)) return absl::InfinitePast();
  return absl::FromUnixMicros(ColumnInt(col));
}
std::optional<double> Statement::ColumnOptionalDouble(int col) const {
  if (ColumnIsNull(col)) return std::nullopt;
  return ColumnDouble(col);
}

absl::StatusOr<std::unique_ptr<Connection>> Connection::Open(
    const std::string& path, const ConnectionOptions& options) {
  sqlite3* db = nullptr;
  const int flags =
      (options.read_only ? SQLITE_OPEN_READONLY
                         : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) |
      SQLITE_OPEN_NOMUTEX;
  int rc = sqlite3_open_v2(path.c_str(), &db, flags, nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    sqlite3_close(db);
    return absl::UnavailableError(
        absl::StrCat("cannot open database ", path, ": ", msg));
  }
  std::unique_ptr<Connection> conn(new Connection(db));
  sqlite3_busy_timeout(
      db, static_cast<int>(absl::ToInt64Milliseconds(options.busy_timeout)));
  sqlite3_extended_result_codes(db, 1);
  if (!options.read_only) {
    // journal_mode=WAL answers with a row; Exec ignores rows.
    absl::Status s = conn->Exec("PRAGMA journal_mode=WAL");
    if (!s.ok()) return Annotate(s, absl::StrCat("database ", path));
  }
  absl::Status s = conn->Exec(
      absl::StrCat("PRAGMA foreign_keys=ON; PRAGMA synchronous=",
                   options.synchronous_full ? "FULL" : "NORMAL", ";"));
  if (!s.ok()) return Annotate(s, absl::StrCat("database ", path));
  return conn;
}

Connection::~Connection() {
  for (auto& [sql, stmt] : cache_) sqlite3_finalize(stmt);
  sqlite3_close(db_);
}

absl::Status Connection::Exec(absl::string_view sql) {
  char* err = nullptr;
  std::string owned(sql);
  int rc = sqlite3_exec(db_, owned.c_str(), nullptr, nullptr, &err);
  if (rc != SQLITE_OK) {
    absl::Status s = Error(rc, owned);
    sqlite3_free(err);
    return s;
  }
  return absl::OkStatus();
}

absl::StatusOr<Connection::CheckpointResult> Connection::CheckpointPassive() {
  CheckpointResult out;
  const int rc =
      sqlite3_wal_checkpoint_v2(db_, nullptr, SQLITE_CHECKPOINT_PASSIVE,
                                &out.log_frames, &out.checkpointed_frames);
  if (rc != SQLITE_OK) return Error(rc, "wal_checkpoint(PASSIVE)");
  return out;
}

absl::StatusOr<Statement> Connection::Prepare(const std::string& sql) {
  auto it = cache_.find(sql);
  if (it == cache_.end()) {
    sqlite3_stmt* stmt = nullptr;
    int rc = sqlite3_prepare_v3(db_, sql.c_str(), -1, SQLITE_PREPARE_PERSISTENT,
                                &stmt, nullptr);
    if (rc != SQLITE_OK) return Error(rc, sql);
    it = cache_.emplace(sql, stmt).first;
  }
  return Statement(this, it->second, &it->first);
}

absl::StatusOr<int64_t> Connection::UserVersion() {
  FTUNE_ASSIGN_OR_RETURN(Statement st, Prepare("PRAGMA user_version"));
  FTUNE_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) return absl::InternalError("PRAGMA user_version returned no row");
  return st.ColumnInt(0);
}

absl::Status Connection::LimitSize(int64_t max_bytes) {
  FTUNE_ASSIGN_OR_RETURN(Statement st, Prepare("PRAGMA page_size"));
  FTUNE_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) return absl::InternalError("PRAGMA page_size returned no row");
  const int64_t page = st.ColumnInt(0);
  const int64_t pages =
      std::max<int64_t>(1, max_bytes / std::max<int64_t>(page, 1));
  // SQLite keeps the limit at least at the current page count.
  return Exec(absl::StrCat("PRAGMA max_page_count=", pages));
}

bool Connection::InTransaction() const {
  return sqlite3_get_autocommit(db_) == 0;
}

int64_t Connection::LastInsertRowId() const {
  return sqlite3_last_insert_rowid(db_);
}
int Connection::Changes() const { return sqlite3_changes(db_); }

absl::Status Connection::Error(int rc, absl::string_view context) const {
  std::string msg = absl::StrCat("sqlite: ", sqlite3_errmsg(db_), " (",
                                 sqlite3_errstr(rc), ") in: ", context);
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return absl::UnavailableError(msg);
    case SQLITE_CONSTRAINT:
      if (rc == SQLITE_CONSTRAINT_UNIQUE ||
          rc == SQLITE_CONSTRAINT_PRIMARYKEY) {
        return absl::AlreadyExistsError(msg);
      }
      return absl::FailedPreconditionError(msg);
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return absl::DataLossError(msg);
    case SQLITE_FULL:
      // The disk (or --db_max_bytes) is full: the transaction wrote
      // nothing; writes work again once there is room. Said without the
      // SQL, which callers may pass on to clients.
      return absl::UnavailableError(absl::StrCat(
          "the scheduler's database is full (no space left on its disk, or "
          "its size limit reached); nothing was written, retry later "
          "(sqlite: ",
          sqlite3_errstr(rc), ")"));
    case SQLITE_IOERR:
      return absl::UnavailableError(absl::StrCat(
          "the scheduler's database had an I/O error; nothing was written, "
          "retry later (sqlite: ",
          sqlite3_errstr(rc), ")"));
    case SQLITE_READONLY:
    case SQLITE_CANTOPEN:
      return absl::UnavailableError(msg);
    default:
      return absl::InternalError(msg);
  }
}

}  // namespace ftune::store
