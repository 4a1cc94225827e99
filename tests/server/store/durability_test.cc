// Acknowledged writes survive closing and SIGKILL; group commit batches
// concurrent writers without losing any, and a failing request in a batch
// rolls back alone.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <set>
#include <thread>

#include "absl/synchronization/notification.h"
#include "tests/server/store/store_fixture.h"

namespace ftune::store::testing {
namespace {

using ::ftune::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::Not;

TEST_F(StoreTest, AcknowledgedWritesSurviveReopen) {
  ASSERT_OK(OpenStore(/*synchronous_full=*/true));
  auto a = MakeTenant("a");
  std::vector<std::string> ids;
  for (int i = 0; i < 20; ++i)
    ids.push_back(MustCreate(NewJob(a, "r" + std::to_string(i))).id);
  ASSERT_OK(OpenStore(true));  // Closes and reopens.
  for (int i = 0; i < 20; ++i) {
    ASSERT_OK_AND_ASSIGN(core::Job j, store_->GetJob(a.tenant.id, ids[i]));
    EXPECT_EQ(j.request_id, "r" + std::to_string(i));
    // Idempotency survives too.
    ASSERT_OK_AND_ASSIGN(CreateJobResult again,
                         store_->CreateJob(NewJob(a, "r" + std::to_string(i))));
    EXPECT_FALSE(again.created);
    EXPECT_EQ(again.job.id, ids[i]);
  }
}

// A child process writes jobs with synchronous=FULL and reports each id on a
// pipe only after CreateJob returned OK; the parent SIGKILLs it mid-stream
// and then finds every reported job in the database.
TEST(DurabilityTest, AcknowledgedCreatesSurviveSigkill) {
  ftune::testing::TempDir dir;
  const std::string path = dir.Sub("db");
  std::string tenant_id, file_id;
  {
    SqliteStoreOptions options;
    options.path = path;
    ASSERT_OK_AND_ASSIGN(auto store, SqliteStore::Open(options));
    core::Tenant t;
    t.name = "a";
    ASSERT_OK_AND_ASSIGN(t, store->CreateTenant(t));
    tenant_id = t.id;
    core::Model m{"tiny", "models/tiny", {}, absl::InfinitePast()};
    ASSERT_OK(store->UpsertModel(m));
    core::FileRecord f;
    f.tenant_id = t.id;
    f.status = core::FileStatus::kReady;
    f.storage_path = "files/x";
    ASSERT_OK_AND_ASSIGN(f, store->CreateFile(f));
    file_id = f.id;
  }
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    close(fds[0]);
    SqliteStoreOptions options;
    options.path = path;
    auto store = SqliteStore::Open(options);
    if (!store.ok()) _exit(3);
    // Several writer threads, so batches are in flight when the kill lands.
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&] {
        while (true) {
          core::Job j;
          j.tenant_id = tenant_id;
          j.model = "tiny";
          j.training_file_id = file_id;
          j.spec = "spec";
          auto r = (*store)->CreateJob(j);
          if (!r.ok()) _exit(4);
          std::string line = r->job.id + "\n";  // < PIPE_BUF: atomic.
          if (write(fds[1], line.data(), line.size()) < 0) _exit(5);
        }
      });
    }
    for (auto& t : threads) t.join();
    _exit(0);
  }
  close(fds[1]);
  std::string acked;
  char buf[4096];
  while (std::count(acked.begin(), acked.end(), '\n') < 200) {
    ssize_t n = read(fds[0], buf, sizeof buf);
    ASSERT_GT(n, 0) << "child exited early";
    acked.append(buf, n);
  }
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  // Ids the child wrote before dying are acknowledged too.
  while (true) {
    ssize_t n = read(fds[0], buf, sizeof buf);
    if (n <= 0) break;
    acked.append(buf, n);
  }
  close(fds[0]);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

  SqliteStoreOptions options;
  options.path = path;
  ASSERT_OK_AND_ASSIGN(auto store, SqliteStore::Open(options));
  int checked = 0;
  size_t start = 0;
  while (true) {
    size_t nl = acked.find('\n', start);
    if (nl == std::string::npos) break;
    const std::string id = acked.substr(start, nl - start);
    start = nl + 1;
    ASSERT_OK_AND_ASSIGN(core::Job j, store->GetJob(tenant_id, id));
    EXPECT_EQ(j.state, core::JobState::kQueued);
    EXPECT_EQ(j.last_sequence, 1);
    ++checked;
  }
  EXPECT_GE(checked, 200);
  ASSERT_OK_AND_ASSIGN(
      auto events,
      store->ListJobEvents(tenant_id, acked.substr(0, acked.find('\n')), 0, 0));
  EXPECT_EQ(events.size(), 1u);
}

TEST_F(StoreTest, ManyConcurrentWritersAllLandWithFewerCommits) {
  ASSERT_OK(OpenStore(/*synchronous_full=*/true));
  auto a = MakeTenant("a");
  constexpr int kThreads = 16, kPerThread = 25;
  std::vector<std::vector<std::string>> ids(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        auto r = store_->CreateJob(NewJob(a));
        EXPECT_TRUE(r.ok()) << r.status();
        if (r.ok()) ids[t].push_back(r->job.id);
      }
    });
  }
  for (auto& t : threads) t.join();
  std::set<std::string> all;
  for (auto& v : ids) all.insert(v.begin(), v.end());
  ASSERT_EQ(all.size(), size_t{kThreads * kPerThread});
  ASSERT_OK(OpenStore(true));
  ASSERT_OK_AND_ASSIGN(auto page,
                       store_->ListJobs(a.tenant.id, {}, kMaxPageSize, ""));
  std::set<std::string> stored;
  for (auto& j : page.items) stored.insert(j.id);
  EXPECT_EQ(stored, all);
}

TEST_F(StoreTest, BusyDatabaseAnswersUnavailableAndChangesNothing) {
  store_.reset();
  SqliteStoreOptions options;
  options.path = db_path();
  options.busy_timeout = absl::Milliseconds(50);
  ASSERT_OK_AND_ASSIGN(store_, SqliteStore::Open(options));
  // Another process (here: another connection) holds the write lock.
  ASSERT_OK_AND_ASSIGN(auto other,
                       Connection::Open(db_path(), ConnectionOptions{}));
  ASSERT_OK(other->Exec("BEGIN IMMEDIATE"));
  core::Tenant t;
  t.name = "blocked";
  EXPECT_THAT(store_->CreateTenant(t),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("locked")));
  ASSERT_OK(other->Exec("ROLLBACK"));
  EXPECT_THAT(store_->GetTenantByName("blocked"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("blocked")));
  EXPECT_OK(store_->CreateTenant(t));  // Works once the lock is gone.
}

// A full database (no space left on its disk; here the size limit of
// --db_max_bytes, which fails the same way inside SQLite): a write that does
// not fit answers UNAVAILABLE, saying so without SQL, and writes nothing;
// every write acknowledged before it stays, reads keep working, and once
// there is room again (reopened with more, as after freeing the disk) writes
// succeed and nothing acknowledged is lost.
TEST_F(StoreTest, FullDatabaseAnswersUnavailableLosesNothingAndRecovers) {
  const TenantSetup t = MakeTenant("full");
  store_.reset();
  SqliteStoreOptions options;
  options.path = db_path();
  options.clock = &clock_;
  options.max_bytes = std::filesystem::file_size(db_path()) + (64 << 10);
  ASSERT_OK_AND_ASSIGN(store_, SqliteStore::Open(options));
  std::vector<std::string> acknowledged;
  absl::Status full;
  for (int i = 0; i < 10000 && full.ok(); ++i) {
    core::Job j = NewJob(t, absl::StrCat("req-", i));
    j.spec = std::string(2000, static_cast<char>('a' + i % 26));
    absl::StatusOr<CreateJobResult> r = store_->CreateJob(j);
    if (r.ok()) {
      acknowledged.push_back(r->job.id);
    } else {
      full = r.status();
    }
  }
  ASSERT_FALSE(full.ok()) << "the limit was never reached";
  EXPECT_THAT(full, StatusIs(absl::StatusCode::kUnavailable,
                             HasSubstr("database is full")));
  EXPECT_THAT(std::string(full.message()), Not(HasSubstr("INSERT")));
  ASSERT_GT(acknowledged.size(), 3u);
  // Reads work while full; the refused job is not there.
  ASSERT_OK_AND_ASSIGN(core::Job first,
                       store_->GetJob(t.tenant.id, acknowledged.front()));
  EXPECT_EQ(first.id, acknowledged.front());
  const auto count = [&] {
    JobFilter filter;
    int64_t n = 0;
    std::string token;
    do {
      auto page = store_->ListJobs(t.tenant.id, filter, 1000, token);
      EXPECT_TRUE(page.ok()) << page.status();
      if (!page.ok()) return int64_t{-1};
      n += static_cast<int64_t>(page->items.size());
      token = page->next_page_token;
    } while (!token.empty());
    return n;
  };
  EXPECT_EQ(count(), static_cast<int64_t>(acknowledged.size()));
  // Still full: the next write that needs room fails the same way, and the
  // store lives on.
  core::Job big = NewJob(t, "req-big");
  big.spec = std::string(8000, 'z');
  EXPECT_THAT(store_->CreateJob(big),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("full")));
  core::Tenant other;
  other.name = "later";

  // Room again.
  store_.reset();
  options.max_bytes = 0;
  ASSERT_OK_AND_ASSIGN(store_, SqliteStore::Open(options));
  ASSERT_OK(store_->CreateTenant(other).status());
  EXPECT_OK(store_->CreateJob(NewJob(t, "after")).status());
  EXPECT_EQ(count(), static_cast<int64_t>(acknowledged.size()) + 1);
  for (const std::string& id : acknowledged) {
    EXPECT_OK(store_->GetJob(t.tenant.id, id).status()) << id;
  }
  ASSERT_OK_AND_ASSIGN(auto check,
                       Connection::Open(db_path(), ConnectionOptions{}));
  ASSERT_OK_AND_ASSIGN(Statement st, check->Prepare("PRAGMA integrity_check"));
  ASSERT_OK_AND_ASSIGN(bool row, st.Step());
  ASSERT_TRUE(row);
  EXPECT_EQ(st.ColumnText(0), "ok");
}

// Holds the writer after one commit until `n` requests are queued, so the
// next batch deterministically contains all of them.
TEST_F(StoreTest, FailingWriteInABatchRollsBackAloneAndOthersCommit) {
  absl::Notification first_commit, release;
  std::atomic<bool> hold{false};
  on_commit_ = [&](const std::vector<JobChange>&) {
    if (hold.exchange(false)) {
      first_commit.Notify();
      release.WaitForNotification();
    }
  };
  ASSERT_OK(OpenStore(/*synchronous_full=*/true));
  auto a = MakeTenant("a");
  hold = true;
  std::thread blocker([&] { MustCreate(NewJob(a)); });
  first_commit.WaitForNotification();
  const int64_t commits_before = store_->commit_count();

  constexpr int kGood = 12, kBad = 4;
  std::vector<absl::StatusOr<CreateJobResult>> results(kGood + kBad + 2,
                                                       absl::UnknownError(""));
  std::vector<std::thread> threads;
  for (int i = 0; i < kGood + kBad; ++i) {
    threads.emplace_back([&, i] {
      core::Job j = NewJob(a);
      if (i >= kGood) j.model = "missing-" + std::to_string(i);
      results[i] = store_->CreateJob(j);
    });
  }
  // Two requests with the same request_id in one batch: one job.
  for (int i = 0; i < 2; ++i) {
    threads.emplace_back([&, i] {
      results[kGood + kBad + i] = store_->CreateJob(NewJob(a, "same"));
    });
  }
  while (store_->queued_writes() < kGood + kBad + 2)
    absl::SleepFor(absl::Milliseconds(1));
  release.Notify();
  for (auto& t : threads) t.join();
  blocker.join();

  EXPECT_EQ(store_->commit_count(), commits_before + 1);  // One batch.
  for (int i = 0; i < kGood; ++i) ASSERT_OK(results[i]);
  for (int i = kGood; i < kGood + kBad; ++i) {
    EXPECT_THAT(results[i], StatusIs(absl::StatusCode::kInvalidArgument,
                                     HasSubstr("missing-")));
  }
  ASSERT_OK(results[kGood + kBad]);
  ASSERT_OK(results[kGood + kBad + 1]);
  EXPECT_EQ(results[kGood + kBad]->job.id, results[kGood + kBad + 1]->job.id);
  EXPECT_NE(results[kGood + kBad]->created, results[kGood + kBad + 1]->created);

  ASSERT_OK(OpenStore(true));
  ASSERT_OK_AND_ASSIGN(auto page,
                       store_->ListJobs(a.tenant.id, {}, kMaxPageSize, ""));
  EXPECT_EQ(page.items.size(), size_t{1 + kGood + 1});
  for (int i = 0; i < kGood; ++i) {
    EXPECT_OK(store_->GetJob(a.tenant.id, results[i]->job.id));
  }
}

TEST_F(StoreTest, OnCommitSeesEveryJobChangeInOrder) {
  absl::Mutex mu;
  std::vector<int64_t> seqs;
  on_commit_ = [&](const std::vector<JobChange>& changes) {
    absl::MutexLock lock(&mu);
    for (const JobChange& c : changes) {
      for (const auto& e : c.events) seqs.push_back(e.sequence);
      for (const auto& m : c.metrics) seqs.push_back(m.sequence);
    }
  };
  ASSERT_OK(OpenStore());
  auto a = MakeTenant("a");
  core::Worker w = MustRegisterWorker();
  core::Job j = MustCreate(NewJob(a));
  ASSERT_OK(store_->GrantLease(j.id, 1, w.id, clock_.Now() + absl::Minutes(1)));
  ASSERT_OK(store_->AppendMetrics(j.id, 1,
                                  {core::MetricPoint{}, core::MetricPoint{}}));
  EXPECT_FALSE(store_->AppendMetrics(j.id, 7, {core::MetricPoint{}}).ok());
  ASSERT_OK(store_->CancelJob(a.tenant.id, j.id, ""));
  absl::MutexLock lock(&mu);
  EXPECT_EQ(seqs, (std::vector<int64_t>{1, 2, 3, 4, 5}));
}

}  // namespace
}  // namespace ftune::store::testing
