// WatchHub: fans out the store's committed job changes (state, events,
// metric points; store::JobChange) to the WatchJob streams of each job.
//
// Wiring: create the hub first, give the store `hub.CommitHook()` as
// SqliteStoreOptions::on_commit, then start the gRPC server. On the way
// down call hub.Shutdown() before grpc::Server::Shutdown() (it ends every
// watch with UNAVAILABLE at once instead of letting the server wait for
// them), and destroy the server, then the store, then the hub.
//
// The hub also owns one background thread: committed changes are delivered
// there (in commit order), so fan-out to many watchers never holds up the
// store's writer, and subscribers run their store reads (replay) there, so
// neither gRPC's callback threads nor the writer wait for SQLite on their
// behalf.
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
#include "server/store/store.h"

namespace ftune::server::engine {

class WatchHub {
 public:
  class Subscriber {
   public:
    virtual ~Subscriber() = default;
    // One committed change of the subscribed job, in commit order, on the
    // hub's thread (shortly after the commit): must be quick and must not
    // call the store.
    virtual void OnJobChange(const store::JobChange& change) = 0;
    // The hub is shutting down: end promptly. Called at most once, on the
    // thread that called Shutdown().
    virtual void OnShutdown() = 0;
  };

  WatchHub();
  ~WatchHub();  // Shutdown().
  WatchHub(const WatchHub&) = delete;
  WatchHub& operator=(const WatchHub&) = delete;

  // For SqliteStoreOptions::on_commit. The hub must outlive the store.
  std::function<void(const std::vector<store::JobChange>&)> CommitHook();
  // What CommitHook calls: queues the changes for delivery to their jobs'
  // subscribers on the hub's thread, in commit order. Waits while
  // kMaxQueuedTasks tasks are queued (backpressure on the writer).
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

 private:
  static constexpr size_t kMaxQueuedTasks = 4096;
  void RunTasks();
  void Deliver(const std::vector<store::JobChange>& changes);
  bool HasWorkLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return shutdown_ || !tasks_.empty();
  }

  mutable absl::Mutex mu_;
  bool shutdown_ ABSL_GUARDED_BY(mu_) = false;
  std::multimap<std::string, std::shared_ptr<Subscriber>> subscribers_
      ABSL_GUARDED_BY(mu_);
  std::deque<std::function<void()>> tasks_ ABSL_GUARDED_BY(mu_);
  std::thread worker_;
  std::atomic<int64_t> peak_buffered_{0};
};

}  // namespace ftune::server::engine

#endif  // FTUNE_SERVER_ENGINE_WATCH_HUB_H_
