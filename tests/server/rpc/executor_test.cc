#include "server/rpc/executor.h"

#include <atomic>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace ftune::server::rpc {
namespace {

TEST(ExecutorTest, RunsEveryPostedTaskOnItsOwnThreads) {
  Executor ex(Executor::Options{3, 0});
  absl::Mutex mu;
  int done = 0;
  std::vector<std::thread::id> ids;
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(ex.Post([&] {
      absl::MutexLock lock(&mu);
      ++done;
      ids.push_back(std::this_thread::get_id());
    }));
  }
  absl::MutexLock lock(&mu);
  mu.Await(absl::Condition(
      +[](int* d) { return *d == 100; }, &done));
  for (const auto& id : ids) EXPECT_NE(id, std::this_thread::get_id());
}

TEST(ExecutorTest, TimedTasksRunInTimeOrderAndNotBefore) {
  Executor ex(Executor::Options{1, 0});
  absl::Mutex mu;
  std::vector<int> order;
  const absl::Time base = absl::Now() + absl::Milliseconds(50);
  std::vector<absl::Time> ran_at(3);
  // Posted out of order.
  for (int i : {2, 0, 1}) {
    ASSERT_TRUE(ex.PostAt(base + absl::Milliseconds(10 * i), [&, i] {
      absl::MutexLock lock(&mu);
      order.push_back(i);
      ran_at[i] = absl::Now();
    }));
  }
  absl::MutexLock lock(&mu);
  mu.Await(absl::Condition(
      +[](std::vector<int>* o) { return o->size() == 3; }, &order));
  EXPECT_EQ(order, (std::vector<int>{0, 1, 2}));
  for (int i = 0; i < 3; ++i) {
    EXPECT_GE(ran_at[i], base + absl::Milliseconds(10 * i));
  }
}

TEST(ExecutorTest, FullQueueRefusesAndShutdownDropsQueuedTasks) {
  Executor ex(Executor::Options{1, 2});
  absl::Notification started, release;
  std::atomic<int> ran{0};
  ASSERT_TRUE(ex.Post([&] {
    started.Notify();
    release.WaitForNotification();
    ++ran;
  }));
  started.WaitForNotification();  // The only thread is busy.
  EXPECT_TRUE(ex.Post([&] { ++ran; }));
  EXPECT_TRUE(ex.PostAt(absl::Now() + absl::Hours(1), [&] { ++ran; }));
  EXPECT_EQ(ex.queued(), 2);
  EXPECT_FALSE(ex.Post([&] { ++ran; }));  // max_queued = 2.
  release.Notify();
  // The ready task runs; the one due in an hour is dropped by Shutdown.
  while (ran.load() < 2) absl::SleepFor(absl::Milliseconds(1));
  ex.Shutdown();
  EXPECT_EQ(ran.load(), 2);
  EXPECT_FALSE(ex.Post([&] { ++ran; }));
  EXPECT_EQ(ex.queued(), 0);
}

}  // namespace
}  // namespace ftune::server::rpc
