// SqliteStore::CreateJobAsync: the group-commit writer calls back instead of
// waking a waiting thread. Batches are made deterministic by holding the
// writer inside on_commit_timing (it runs on the writer thread after a
// COMMIT) while the next writes queue up.
#include <atomic>
#include <cstdint>
#include <fstream>
#include <map>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "tests/server/store/store_fixture.h"

namespace ftune::store::testing {
namespace {

using core::Job;

// Collects the callbacks' results, in the order they ran.
class Results {
 public:
  Store::CreateJobCallback Callback(int index) {
    return [this, index](absl::StatusOr<CreateJobResult> r) {
      absl::MutexLock lock(&mu_);
      order_.push_back(index);
      got_.emplace(index, std::move(r));
    };
  }
  void AwaitCount(size_t n) {
    absl::MutexLock lock(&mu_);
    auto enough = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return got_.size() >= n;
    };
    mu_.Await(absl::Condition(&enough));
  }
  std::map<int, absl::StatusOr<CreateJobResult>> got() {
    absl::MutexLock lock(&mu_);
    return got_;
  }
  std::vector<int> order() {
    absl::MutexLock lock(&mu_);
    return order_;
  }

 private:
  absl::Mutex mu_;
  std::map<int, absl::StatusOr<CreateJobResult>> got_ ABSL_GUARDED_BY(mu_);
  std::vector<int> order_ ABSL_GUARDED_BY(mu_);
};

class CreateJobAsyncTest : public StoreTest {
 protected:
  void SetUp() override {
    on_commit_timing_ = [this](absl::Duration, int writes) {
      batch_sizes_.push_back(writes);  // Only the writer thread.
      if (hold_next_.exchange(false)) {
        held_.Notify();
        release_.WaitForNotification();
      }
    };
    StoreTest::SetUp();
  }

  // Queues a write and returns once the writer holds after committing it:
  // everything queued until Release() goes into the next batch.
  void HoldWriter(const TenantSetup& t) {
    hold_next_ = true;
    store_->CreateJobAsync(NewJob(t), [](absl::StatusOr<CreateJobResult> r) {
      EXPECT_TRUE(r.ok()) << r.status();
    });
    held_.WaitForNotification();
  }
  void Release() { release_.Notify(); }

  std::atomic<bool> hold_next_{false};
  absl::Notification held_;
  absl::Notification release_;
  std::vector<int> batch_sizes_;
};

TEST_F(CreateJobAsyncTest, QueuedWritesShareOneCommitAndFailAlone) {
  auto a = MakeTenant("a");
  Results results;
  HoldWriter(a);
  // The held batch has committed but is not counted until the hook returns.
  const int64_t commits_before = store_->commit_count();
  constexpr int kJobs = 40;
  for (int i = 0; i < kJobs; ++i) {
    Job j = NewJob(a);
    if (i == 7) j.model = "no-such-model";  // Rolled back alone.
    store_->CreateJobAsync(j, results.Callback(i));
  }
  // Nothing is answered before its commit.
  EXPECT_TRUE(results.got().empty());
  Release();
  results.AwaitCount(kJobs);
  // The held write's commit, then all 40 in one more.
  EXPECT_EQ(store_->commit_count(), commits_before + 2);
  EXPECT_EQ(batch_sizes_.back(), kJobs);
  std::map<int, absl::StatusOr<CreateJobResult>> got = results.got();
  ASSERT_EQ(got.size(), static_cast<size_t>(kJobs));
  int created = 0;
  for (auto& [i, r] : got) {
    if (i == 7) {
      EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
      EXPECT_NE(r.status().message().find("model"), std::string::npos)
          << r.status();
      continue;
    }
    ASSERT_TRUE(r.ok()) << i << ": " << r.status();
    EXPECT_TRUE(r->created);
    EXPECT_EQ(r->job.state, core::JobState::kQueued);
    ++created;
    // Durable and visible once acknowledged.
    EXPECT_OK(store_->GetJob(a.tenant.id, r->job.id));
  }
  EXPECT_EQ(created, kJobs - 1);
  ASSERT_OK_AND_ASSIGN(auto page, store_->ListJobs(a.tenant.id, {}, 1000, ""));
  EXPECT_EQ(page.items.size(), static_cast<size_t>(kJobs));  // + held one.
}

TEST_F(CreateJobAsyncTest, OnCommitSeesTheJobsBeforeTheCallbacks) {
  auto a = MakeTenant("a");
  std::atomic<int> seen{0};
  on_commit_ = [&](const std::vector<JobChange>& changes) {
    seen += static_cast<int>(changes.size());
  };
  ASSERT_OK(OpenStore());
  Results results;
  std::atomic<int> early{0};
  for (int i = 0; i < 10; ++i) {
    store_->CreateJobAsync(NewJob(a), [&, i, cb = results.Callback(i)](
                                          absl::StatusOr<CreateJobResult> r) {
      if (seen.load() < 1) ++early;
      cb(std::move(r));
    });
  }
  results.AwaitCount(10);
  EXPECT_EQ(early.load(), 0);
  EXPECT_EQ(seen.load(), 10);
}

TEST_F(CreateJobAsyncTest, SameRequestIdTwiceInOneBatchCreatesOnce) {
  auto a = MakeTenant("a");
  HoldWriter(a);
  Results results;
  Job first = NewJob(a, "dup-1");
  Job second = NewJob(a, "dup-1");
  second.priority = 99;  // Ignored: the original wins.
  store_->CreateJobAsync(first, results.Callback(0));
  store_->CreateJobAsync(second, results.Callback(1));
  Release();
  results.AwaitCount(2);
  auto got = results.got();
  ASSERT_OK(got.at(0).status());
  ASSERT_OK(got.at(1).status());
  EXPECT_TRUE(got.at(0)->created);
  EXPECT_FALSE(got.at(1)->created);
  EXPECT_EQ(got.at(1)->job.id, got.at(0)->job.id);
  EXPECT_EQ(got.at(1)->job.priority, 3);
  EXPECT_EQ(got.at(1)->job.spec, first.spec);
  ASSERT_OK_AND_ASSIGN(auto page, store_->ListJobs(a.tenant.id, {}, 100, ""));
  EXPECT_EQ(page.items.size(), 2u);  // The held job and dup-1.
}

TEST_F(CreateJobAsyncTest, QuotaIsCheckedAgainstTheSameBatch) {
  core::Quota q;
  q.max_queued_jobs = 3;
  auto a = MakeTenant("a", q);
  HoldWriter(a);  // 1 queued.
  Results results;
  for (int i = 0; i < 4; ++i) {
    store_->CreateJobAsync(NewJob(a), results.Callback(i));
  }
  Release();
  results.AwaitCount(4);
  int ok = 0, exhausted = 0;
  for (auto& [i, r] : results.got()) {
    if (r.ok()) {
      ++ok;
    } else {
      EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted);
      EXPECT_NE(r.status().message().find("max_queued_jobs"),
                std::string::npos);
      ++exhausted;
    }
  }
  EXPECT_EQ(ok, 2);
  EXPECT_EQ(exhausted, 2);
}

TEST_F(CreateJobAsyncTest, InvalidJobIsRefusedOnTheCallingThread) {
  auto a = MakeTenant("a");
  Job j = NewJob(a);
  j.tenant_id.clear();
  bool called = false;
  const std::thread::id me = std::this_thread::get_id();
  store_->CreateJobAsync(j, [&](absl::StatusOr<CreateJobResult> r) {
    called = true;
    EXPECT_EQ(std::this_thread::get_id(), me);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  });
  EXPECT_TRUE(called);
}

TEST_F(CreateJobAsyncTest, ClosingFinishesQueuedWritesDurably) {
  auto a = MakeTenant("a");
  ASSERT_OK(OpenStore(/*synchronous_full=*/true));
  HoldWriter(a);
  Results results;
  constexpr int kQueued = 50;
  for (int i = 0; i < kQueued; ++i) {
    store_->CreateJobAsync(NewJob(a), results.Callback(i));
  }
  // The destructor waits for the writer, which waits for Release().
  std::thread closer([this] { store_.reset(); });
  absl::SleepFor(absl::Milliseconds(50));
  Release();
  closer.join();
  // Every queued write was answered before the store went away.
  auto got = results.got();
  ASSERT_EQ(got.size(), static_cast<size_t>(kQueued));
  ASSERT_OK(OpenStore(/*synchronous_full=*/true));
  for (auto& [i, r] : got) {
    ASSERT_TRUE(r.ok()) << i << ": " << r.status();
    EXPECT_OK(store_->GetJob(a.tenant.id, r->job.id));
  }
}

}  // namespace
}  // namespace ftune::store::testing

namespace ftune::store::testing {
namespace {

// Under writes that never pause, the background checkpoint never reaches the
// WAL's end by itself; the writer's catch-up lets the WAL start over, so it
// stays bounded instead of growing with every commit.
TEST(WalCheckpointTest, WalStaysBoundedUnderContinuousWrites) {
  ::ftune::testing::TempDir dir;
  SqliteStoreOptions options;
  options.path = dir.Sub("wal.db");
  options.synchronous_full = false;
  options.checkpoint_interval = absl::Milliseconds(20);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<SqliteStore> store,
                       SqliteStore::Open(options));
  core::Tenant t;
  t.name = "t";
  ASSERT_OK_AND_ASSIGN(t, store->CreateTenant(t));
  core::Model m;
  m.name = "tiny";
  m.directory = "models/tiny";
  ASSERT_OK(store->UpsertModel(m).status());
  core::FileRecord f;
  f.tenant_id = t.id;
  f.filename = "train.jsonl";
  f.purpose = "fine-tune";
  f.status = core::FileStatus::kReady;
  f.storage_path = "files/x";
  ASSERT_OK_AND_ASSIGN(f, store->CreateFile(f));
  core::Job j;
  j.tenant_id = t.id;
  j.spec = std::string(2000, 's');
  j.model = "tiny";
  j.training_file_id = f.id;
  // Four writers keep the queue from ever running dry.
  constexpr int kThreads = 4;
  constexpr int kJobsEach = 1500;
  std::vector<std::thread> writers;
  for (int i = 0; i < kThreads; ++i) {
    writers.emplace_back([&] {
      for (int n = 0; n < kJobsEach; ++n) {
        ASSERT_OK(store->CreateJob(j).status());
      }
    });
  }
  for (auto& w : writers) w.join();
  // The WAL header's checkpoint sequence number (big-endian, offset 12)
  // counts the times the WAL started over. (Its size is no measure: the file
  // keeps the largest size it reached, and how far it gets before a restart
  // depends on how the threads were scheduled.)
  std::ifstream wal(options.path + "-wal", std::ios::binary);
  unsigned char header[32] = {};
  ASSERT_TRUE(wal.read(reinterpret_cast<char*>(header), sizeof(header)));
  const uint32_t restarts = (uint32_t{header[12]} << 24) |
                            (uint32_t{header[13]} << 16) |
                            (uint32_t{header[14]} << 8) | header[15];
  EXPECT_GE(restarts, 2u) << "the WAL never started over";
}

}  // namespace
}  // namespace ftune::store::testing
