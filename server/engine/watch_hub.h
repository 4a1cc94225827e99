// WatchHub: fans out the store's committed job changes (state, events,
// metric points; store::JobChange) to the WatchJob streams of each job.
//
// Wiring: create the hub first, give the store `hub.CommitHook()` as
// SqliteStoreOptions::on_commit, then start the gRPC server. On the way
// down call hub.Shutdown() before grpc::Server::Shutdown() (it ends every
// watch with UNAVAILABLE at once instead of letting the server wait for
// them), and destroy the server, then the store, then the hub.
//
// Fan-out is off the commit path: Publish (the store's writer thread) only
// appends the changes of jobs that have subscribers to a per-job pending
// list and returns; it never waits and never visits subscribers. The hub's
// one background thread takes every pending list at once (at most one
// round per round_interval, 20 ms by default) and hands each
// subscriber all of its job's changes in one call (OnJobChanges), so the
// work per stream is per delivery round, not per commit. Bounded: when a
// job has more than kMaxPendingRecordsPerJob records pending (the hub is
// behind), its pending changes are replaced by one change carrying only
// the newest job (no records); a subscriber sees that job.last_sequence is
// beyond what it has and reads the missing records from the store, so
// nothing is lost and memory stays bounded. Subscribers also run their
// store reads (replay) on the hub's thread (Post), so neither gRPC's
// callback threads nor the writer wait for SQLite on their behalf.
//
// Thread-safe.
#ifndef FTUNE_SERVER_ENGINE_WATCH_HUB_H_
#define FTUNE_SERVER_ENGINE_WATCH_HUB_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "server/store/store.h"

namespace ftune::server::engine {

class WatchHub {
 public:
  class Subscriber {
   public:
    virtual ~Subscriber() = default;
    // One committed change of the subscribed job, in commit order, on the
    // hub's thread (shortly after the commit): must be quick and must not
    // call the store. A change may carry only the job (no records) when the
    // hub dropped the records before it: read them from the store.
    virtual void OnJobChange(const store::JobChange& change) = 0;
    // Consecutive changes of the subscribed job, in commit order (the
    // changes of one delivery round). Default: OnJobChange for each.
    virtual void OnJobChanges(
        const std::vector<std::shared_ptr<const store::JobChange>>& changes) {
      for (const auto& change : changes) OnJobChange(*change);
    }
    // The hub is shutting down: end promptly. Called at most once, on the
    // thread that called Shutdown().
    virtual void OnShutdown() = 0;
  };

  // At most one delivery round per `round_interval` (what commits meanwhile
  // is delivered together): the most a live record waits in the hub.
  explicit WatchHub(absl::Duration round_interval = absl::Milliseconds(20));
  ~WatchHub();  // Shutdown().
  WatchHub(const WatchHub&) = delete;
  WatchHub& operator=(const WatchHub&) = delete;

  // For SqliteStoreOptions::on_commit. The hub must outlive the store.
  std::function<void(const std::vector<store::JobChange>&)> CommitHook();
  // What CommitHook calls: queues the changes of jobs with subscribers for
  // delivery on the hub's thread, in commit order. Never waits (see the
  // bound above).
  void Publish(const std::vector<store::JobChange>& changes);

  // Starts delivering `job_id`'s changes to `subscriber` (the hub keeps a
  // reference until Unsubscribe). False after Shutdown().
  bool Subscribe(const std::string& job_id,
                 std::shared_ptr<Subscriber> subscriber);
  // No calls to `subscriber` start after this returns (one may still be
  // running on another thread; subscribers guard against that themselves).
  void Unsubscribe(const std::string& job_id, const Subscriber* subscriber);

  // Runs `task` on the hub's background thread, in order. False (task
  // dropped) after Shutdown().
  bool Post(std::function<void()> task);

  // Tells every subscriber to end, drops queued tasks, joins the thread.
  // Later Subscribe/Post fail. Idempotent.
  void Shutdown();

  int64_t subscriber_count() const;
  // Subscribers report their send-queue depth here; the peak is kept for
  // tests and operators (bounded by WatchJobOptions::max_buffered_messages).
  void NoteBuffered(int64_t messages);
  int64_t peak_buffered() const { return peak_buffered_.load(); }
  // Records dropped from pending lists (re-read from the store by the
  // subscribers), since start.
  int64_t coalesced_records() const { return coalesced_records_.load(); }

  // Records pending for one job before its list is coalesced.
  static constexpr int64_t kMaxPendingRecordsPerJob = 8192;

 private:
  using ChangeList = std::vector<std::shared_ptr<const store::JobChange>>;
  struct Pending {
    ChangeList changes;
    int64_t records = 0;
  };
  void RunTasks();
  void Deliver(std::map<std::string, Pending> pending);
  bool HasWorkLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return shutdown_ || !tasks_.empty() || !pending_.empty();
  }

  const absl::Duration round_interval_;
  mutable absl::Mutex mu_;
  bool shutdown_ ABSL_GUARDED_BY(mu_) = false;
  std::multimap<std::string, std::shared_ptr<Subscriber>> subscribers_
      ABSL_GUARDED_BY(mu_);
  // Changes waiting for the next delivery round, by job.
  std::map<std::string, Pending> pending_ ABSL_GUARDED_BY(mu_);
  std::deque<std::function<void()>> tasks_ ABSL_GUARDED_BY(mu_);
  std::thread worker_;
  std::atomic<int64_t> peak_buffered_{0};
  std::atomic<int64_t> coalesced_records_{0};
};

}  // namespace ftune::server::engine

#endif  // FTUNE_SERVER_ENGINE_WATCH_HUB_H_
