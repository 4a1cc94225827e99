#include "server/engine/watch_hub.h"

#include <memory>
#include <utility>

namespace ftune::server::engine {

WatchHub::WatchHub() : worker_([this] { RunTasks(); }) {}

WatchHub::~WatchHub() { Shutdown(); }

std::function<void(const std::vector<store::JobChange>&)>
WatchHub::CommitHook() {
  return [this](const std::vector<store::JobChange>& changes) {
    Publish(changes);
  };
}

void WatchHub::Publish(const std::vector<store::JobChange>& changes) {
  // Called on the store's writer thread: hand the changes to the hub's
  // thread, which delivers them in commit order, so that converting and
  // queueing for many watchers never holds up the next commit. Bounded:
  // past kMaxQueuedTasks the writer waits (backpressure, not memory).
  auto copy = std::make_shared<const std::vector<store::JobChange>>(changes);
  absl::MutexLock lock(&mu_);
  if (shutdown_ || subscribers_.empty()) return;
  auto has_room = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return shutdown_ || tasks_.size() < kMaxQueuedTasks;
  };
  mu_.Await(absl::Condition(&has_room));
  if (shutdown_) return;
  tasks_.push_back([this, copy] { Deliver(*copy); });
}

void WatchHub::Deliver(const std::vector<store::JobChange>& changes) {
  // Collect under the lock, call outside it: a subscriber may unsubscribe
  // (or gRPC may run its callbacks inline) while we deliver.
  std::vector<std::pair<std::shared_ptr<Subscriber>, const store::JobChange*>>
      deliveries;
  {
    absl::MutexLock lock(&mu_);
    if (shutdown_) return;
    for (const store::JobChange& change : changes) {
      auto [begin, end] = subscribers_.equal_range(change.job.id);
      for (auto it = begin; it != end; ++it) {
        deliveries.emplace_back(it->second, &change);
      }
    }
  }
  for (auto& [subscriber, change] : deliveries) {
    subscriber->OnJobChange(*change);
  }
}

bool WatchHub::Subscribe(const std::string& job_id,
                         std::shared_ptr<Subscriber> subscriber) {
  absl::MutexLock lock(&mu_);
  if (shutdown_) return false;
  subscribers_.emplace(job_id, std::move(subscriber));
  return true;
}

void WatchHub::Unsubscribe(const std::string& job_id,
                           const Subscriber* subscriber) {
  std::shared_ptr<Subscriber> keep;  // Released outside the lock.
  absl::MutexLock lock(&mu_);
  auto [begin, end] = subscribers_.equal_range(job_id);
  for (auto it = begin; it != end; ++it) {
    if (it->second.get() == subscriber) {
      keep = std::move(it->second);
      subscribers_.erase(it);
      break;
    }
  }
}

bool WatchHub::Post(std::function<void()> task) {
  absl::MutexLock lock(&mu_);
  if (shutdown_) return false;
  tasks_.push_back(std::move(task));
  return true;
}

void WatchHub::RunTasks() {
  while (true) {
    std::function<void()> task;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(this, &WatchHub::HasWorkLocked));
      if (shutdown_) return;
      task = std::move(tasks_.front());
      tasks_.pop_front();
    }
    task();
  }
}

void WatchHub::Shutdown() {
  std::multimap<std::string, std::shared_ptr<Subscriber>> subscribers;
  std::deque<std::function<void()>> dropped;
  {
    absl::MutexLock lock(&mu_);
    if (shutdown_) return;
    shutdown_ = true;
    subscribers.swap(subscribers_);
    dropped.swap(tasks_);
  }
  if (worker_.joinable()) worker_.join();
  for (auto& [job_id, subscriber] : subscribers) subscriber->OnShutdown();
}

int64_t WatchHub::subscriber_count() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int64_t>(subscribers_.size());
}

void WatchHub::NoteBuffered(int64_t messages) {
  int64_t peak = peak_buffered_.load();
  while (messages > peak &&
         !peak_buffered_.compare_exchange_weak(peak, messages)) {
  }
}

}  // namespace ftune::server::engine
