#include "server/store/migrations.h"

#include "gmock/gmock.h"
#include "server/store/sqlite_store.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace ftune::store {
namespace {

using ::ftune::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;

std::unique_ptr<Connection> Raw(const std::string& path) {
  auto conn = Connection::Open(path, ConnectionOptions{});
  EXPECT_TRUE(conn.ok()) << conn.status();
  return std::move(conn).value();
}

// Strictly increasing from 1. Branches developed in parallel reserve their
// numbers, so one branch may hold 11 before 10 is merged (issue20t: try
// jobs took 11 while 10 was being written); once merged the list is
// contiguous again.
TEST(MigrationsTest, VersionsAreNumberedInOrder) {
  int64_t previous = 0;
  for (const Migration& m : Migrations()) {
    EXPECT_GT(m.version, previous);
    previous = m.version;
  }
  EXPECT_EQ(Migrations().front().version, 1);
  EXPECT_EQ(LatestSchemaVersion(), Migrations().back().version);
}

TEST(MigrationsTest, FreshDatabaseGetsTheLatestSchema) {
  ftune::testing::TempDir dir;
  SqliteStoreOptions options;
  options.path = dir.Sub("db");
  {
    ASSERT_OK_AND_ASSIGN(auto store, SqliteStore::Open(options));
    core::Worker w;
    w.hostname = "h";
    ASSERT_OK(store->RegisterWorker(w, absl::Now()));  // Table of version 2.
  }
  auto conn = Raw(options.path);
  ASSERT_OK_AND_ASSIGN(int64_t v, conn->UserVersion());
  EXPECT_EQ(v, LatestSchemaVersion());
  ASSERT_OK_AND_ASSIGN(Statement st, conn->Prepare("PRAGMA journal_mode"));
  ASSERT_OK_AND_ASSIGN(bool row, st.Step());
  ASSERT_TRUE(row);
  EXPECT_EQ(st.ColumnText(0), "wal");
}

TEST(MigrationsTest, UpgradesAnOlderDatabaseKeepingItsData) {
  ftune::testing::TempDir dir;
  const std::string path = dir.Sub("db");
  {
    auto conn = Raw(path);
    ASSERT_OK(Migrate(*conn, /*target_version=*/1));
    ASSERT_OK_AND_ASSIGN(int64_t v, conn->UserVersion());
    ASSERT_EQ(v, 1);
    // Rows written by a version-1 binary.
    ASSERT_OK(conn->Exec(
        "INSERT INTO tenants(id, name, weight, create_time) "
        "VALUES('tenant-old', 'old', 1.0, 0);"
        "INSERT INTO models(name, directory, update_time) "
        "VALUES('m', 'models/m', 0);"
        "INSERT INTO jobs(id, tenant_id, state, attempt, spec, model, "
        "training_file_id, create_time, update_time, last_sequence) "
        "VALUES('job-old', 'tenant-old', 1, 1, x'0102', 'm', 'file-x', 0, 0, "
        "1);"));
    // Version 1 has no workers table.
    EXPECT_FALSE(conn->Exec("SELECT * FROM workers").ok());
  }
  SqliteStoreOptions options;
  options.path = path;
  ASSERT_OK_AND_ASSIGN(auto store, SqliteStore::Open(options));
  ASSERT_OK_AND_ASSIGN(core::Job job, store->GetJob("tenant-old", "job-old"));
  EXPECT_EQ(job.state, core::JobState::kQueued);
  EXPECT_EQ(job.spec, std::string("\x01\x02"));
  core::Worker w;
  w.hostname = "h";
  ASSERT_OK_AND_ASSIGN(w,
                       store->RegisterWorker(w, absl::Now() + absl::Hours(1)));
  ASSERT_OK(
      store->GrantLease("job-old", 1, w.id, absl::Now() + absl::Hours(1)));
  store.reset();
  ASSERT_OK_AND_ASSIGN(int64_t v, Raw(path)->UserVersion());
  EXPECT_EQ(v, LatestSchemaVersion());
}

TEST(MigrationsTest, NewerDatabaseIsRefusedUntouched) {
  ftune::testing::TempDir dir;
  const std::string path = dir.Sub("db");
  const int64_t future = LatestSchemaVersion() + 5;
  {
    auto conn = Raw(path);
    ASSERT_OK(Migrate(*conn));
    ASSERT_OK(conn->Exec("PRAGMA user_version=" + std::to_string(future)));
  }
  SqliteStoreOptions options;
  options.path = path;
  EXPECT_THAT(
      SqliteStore::Open(options),
      StatusIs(
          absl::StatusCode::kFailedPrecondition,
          AllOf(HasSubstr(std::to_string(future)),
                HasSubstr("(" + std::to_string(LatestSchemaVersion()) + ")"),
                HasSubstr("newer"))));
  ASSERT_OK_AND_ASSIGN(int64_t v, Raw(path)->UserVersion());
  EXPECT_EQ(v, future);
}

TEST(MigrationsTest, GarbageFileIsReportedAsDataLoss) {
  ftune::testing::TempDir dir;
  const std::string path = dir.Sub("db");
  FILE* f = fopen(path.c_str(), "w");
  ASSERT_NE(f, nullptr);
  fputs(
      "this is not a database, just some text that is long enough........"
      "..................................................................",
      f);
  fclose(f);
  SqliteStoreOptions options;
  options.path = path;
  EXPECT_THAT(
      SqliteStore::Open(options),
      StatusIs(absl::StatusCode::kDataLoss, HasSubstr("not a database")));
}

}  // namespace
}  // namespace ftune::store
