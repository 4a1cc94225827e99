// A thin RAII layer over the SQLite C API: one connection with a prepared
// statement cache, and a statement cursor that binds by position and resets
// itself when it goes out of scope. SQLite error codes become absl::Status:
// SQLITE_BUSY/LOCKED -> UNAVAILABLE, SQLITE_CONSTRAINT -> ALREADY_EXISTS
// (unique) or FAILED_PRECONDITION (other constraints), SQLITE_CORRUPT/NOTADB
// -> DATA_LOSS, the rest INTERNAL; the message names the SQL and SQLite's
// own text.
//
// Not thread-safe: one thread uses a Connection (and its statements) at a
// time. SQLite itself runs in its multi-thread mode, so distinct connections
// may be used from distinct threads.
#ifndef FTUNE_SERVER_STORE_SQLITE_DB_H_
#define FTUNE_SERVER_STORE_SQLITE_DB_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

struct sqlite3;
struct sqlite3_stmt;

namespace ftune::store {

class Connection;

// A cached prepared statement in use. Bind*() with 1-based indexes, then
// Step() until it returns false. Reset (and unbinding) happens on
// destruction, so the statement can be reused by the next caller.
class Statement {
 public:
  Statement(Statement&& other) noexcept;
  Statement& operator=(Statement&&) = delete;
  Statement(const Statement&) = delete;
  ~Statement();

  Statement& Bind(int index, int64_t value);
  Statement& Bind(int index, int value) { return Bind(index, int64_t{value}); }
  Statement& Bind(int index, double value);
  Statement& Bind(int index, absl::string_view text);
  Statement& Bind(int index, const std::string& text) {
    return Bind(index, absl::string_view(text));
  }
  Statement& Bind(int index, const char* text) {
    return Bind(index, absl::string_view(text));
  }
  Statement& BindBlob(int index, absl::string_view bytes);
  Statement& BindNull(int index);
  Statement& BindTime(int index, absl::Time t);  // Micros since epoch.
  Statement& BindOptional(int index, const std::optional<double>& value);

  // True while a row is available; false when done. Errors become Status.
  absl::StatusOr<bool> Step();
  // Steps once, expecting no rows (INSERT/UPDATE/DELETE).
  absl::Status Run();
  // Makes the statement ready to bind and run again.
  void Reset();

  int64_t ColumnInt(int col) const;
  double ColumnDouble(int col) const;
  std::string ColumnText(int col) const;
  std::string ColumnBlob(int col) const;
  bool ColumnIsNull(int col) const;
  absl::Time ColumnTime(int col) const;
  std::optional<double> ColumnOptionalDouble(int col) const;

 private:
  friend class Connection;
  Statement(Connection* conn, sqlite3_stmt* stmt, const std::string* sql)
      : conn_(conn), stmt_(stmt), sql_(sql) {}
  Connection* conn_;
  sqlite3_stmt* stmt_;
  const std::string* sql_;  // Owned by the connection's cache.
  absl::Status bind_error_;
};

struct ConnectionOptions {
  bool read_only = false;
  bool synchronous_full = true;  // else NORMAL (WAL: durable up to a crash of
                                 // the OS, not of the process).
  absl::Duration busy_timeout = absl::Seconds(5);
};

class Connection {
 public:
  // Opens (creating unless read_only) the database at `path`, sets WAL,
  // synchronous, busy timeout and foreign keys.
  static absl::StatusOr<std::unique_ptr<Connection>> Open(
      const std::string& path, const ConnectionOptions& options);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Runs one or more statements with no results.
  absl::Status Exec(absl::string_view sql);
  // Returns a cached prepared statement for `sql`.
  absl::StatusOr<Statement> Prepare(const std::string& sql);

  // One PASSIVE WAL checkpoint (never waits for readers or writers; copies
  // what it can). UNAVAILABLE if another checkpoint is running.
  struct CheckpointResult {
    int log_frames = 0;           // Frames in the WAL.
    int checkpointed_frames = 0;  // Of those, copied into the database.
  };
  absl::StatusOr<CheckpointResult> CheckpointPassive();

  // PRAGMA user_version.
  absl::StatusOr<int64_t> UserVersion();
  // Caps the database at about `max_bytes` (PRAGMA max_page_count; never
  // below its current size): writes past it fail with SQLITE_FULL.
  absl::Status LimitSize(int64_t max_bytes);
  int64_t LastInsertRowId() const;
  // Whether a transaction is open (SQLite may end one itself on an error).
  bool InTransaction() const;
  int Changes() const;

  // Maps an SQLite result code (with this connection's message) to Status.
  absl::Status Error(int rc, absl::string_view context) const;

 private:
  explicit Connection(sqlite3* db) : db_(db) {}
  sqlite3* db_;
  std::map<std::string, sqlite3_stmt*> cache_;
};

}  // namespace ftune::store

#endif  // FTUNE_SERVER_STORE_SQLITE_DB_H_
