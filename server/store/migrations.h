// Numbered schema migrations of the scheduler database. Version n is stored
// in PRAGMA user_version after migration n has run; each migration runs in
// its own transaction together with the version bump, so a crash leaves the
// database at a whole version. A database newer than this binary knows is
// refused (FAILED_PRECONDITION naming both versions), never modified.
//
// Thread-safe: the table is immutable; Migrate() needs exclusive use of the
// connection.
#ifndef FTUNE_SERVER_STORE_MIGRATIONS_H_
#define FTUNE_SERVER_STORE_MIGRATIONS_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "server/store/sqlite_db.h"

namespace ftune::store {

struct Migration {
  int64_t version;  // 1, 2, ... in order.
  const char* description;
  const char* sql;
};

const std::vector<Migration>& Migrations();
int64_t LatestSchemaVersion();

// Brings the database to `target_version` (default: latest). Only upgrades.
absl::Status Migrate(Connection& conn, int64_t target_version = -1);

}  // namespace ftune::store

#endif  // FTUNE_SERVER_STORE_MIGRATIONS_H_
