#include "server/engine/watch_hub.h"

#include <memory>
#include <utility>

namespace ftune::server::engine {

WatchHub::WatchHub(absl::Duration round_interval)
    : round_interval_(round_interval), worker_([this] { RunTasks(); }) {}

WatchHub::~WatchHub() { Shutdown(); }

std::function<void(const std::vector<store::JobChange>&)>
WatchHub::CommitHook() {
  return [this](const std::vector<store::JobChange>& changes) {
    Publish(changes);
  };
}

void WatchHub::Publish(const std::vector<store::JobChange>& changes) {
  // Called on the store's writer thread, before the writes are answered:
  // only pick the watched jobs' changes, copy them outside the lock, and
  // append them to their jobs' pending lists. No waiting, no subscriber
  // visited: the hub's thread does the fan-out.
  std::vector<const store::JobChange*> watched;
  {
    absl::MutexLock lock(&mu_);
    if (shutdown_ || subscribers_.empty()) return;
    for (const store::JobChange& change : changes) {
      if (subscribers_.find(change.job.id) != subscribers_.end()) {
        watched.push_back(&change);
      }
    }
  }
  if (watched.empty()) return;
  ChangeList copies;
  copies.reserve(watched.size());
  for (const store::JobChange* change : watched) {
    copies.push_back(std::make_shared<const store::JobChange>(*change));
  }
  absl::MutexLock lock(&mu_);
  if (shutdown_) return;
  for (std::shared_ptr<const store::JobChange>& change : copies) {
    Pending& p = pending_[change->job.id];
    const int64_t records =
        static_cast<int64_t>(change->events.size() + change->metrics.size());
    if (p.records + records > kMaxPendingRecordsPerJob) {
      // The hub is behind on this job: keep only its newest state. Its
      // subscribers see job.last_sequence beyond their cursor and read the
      // dropped records from the store.
      coalesced_records_.fetch_add(p.records + records);
      auto newest = std::make_shared<store::JobChange>();
      newest->job = change->job;
      p.changes.clear();
      p.changes.push_back(std::move(newest));
      p.records = 0;
    } else {
      p.changes.push_back(std::move(change));
      p.records += records;
    }
  }
}

void WatchHub::Deliver(std::map<std::string, Pending> pending) {
  // Each subscriber gets all of its job's changes of this round in one
  // call. Collect under the lock, call outside it: a subscriber may
  // unsubscribe (or gRPC may run its callbacks inline) while we deliver.
  std::vector<std::shared_ptr<Subscriber>> subscribers;
  for (auto& [job_id, p] : pending) {
    subscribers.clear();
    {
      absl::MutexLock lock(&mu_);
      if (shutdown_) return;
      auto [begin, end] = subscribers_.equal_range(job_id);
      for (auto it = begin; it != end; ++it) subscribers.push_back(it->second);
    }
    for (const std::shared_ptr<Subscriber>& subscriber : subscribers) {
      subscriber->OnJobChanges(p.changes);
    }
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
  absl::Time next_round = absl::InfinitePast();
  auto stop_or_tasks = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return shutdown_ || !tasks_.empty();
  };
  while (true) {
    std::map<std::string, Pending> pending;
    std::deque<std::function<void()>> tasks;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(this, &WatchHub::HasWorkLocked));
      // At most one delivery round per round_interval_: what is committed
      // meanwhile goes out together, in fewer, larger writes per stream.
      // Posted work does not wait for the round.
      if (!shutdown_ && tasks_.empty() && absl::Now() < next_round) {
        mu_.AwaitWithDeadline(absl::Condition(&stop_or_tasks), next_round);
      }
      if (shutdown_) return;
      const absl::Time now = absl::Now();
      if (now >= next_round && !pending_.empty()) {
        pending.swap(pending_);
        next_round = now + round_interval_;
      }
      tasks.swap(tasks_);
    }
    // Live changes first (they are what watchers wait for), then the
    // replay steps and other work posted meanwhile, in order.
    if (!pending.empty()) Deliver(std::move(pending));
    for (std::function<void()>& task : tasks) {
      {
        absl::MutexLock lock(&mu_);
        if (shutdown_) return;
      }
      task();
    }
  }
}

void WatchHub::Shutdown() {
  std::multimap<std::string, std::shared_ptr<Subscriber>> subscribers;
  std::deque<std::function<void()>> dropped;
  std::map<std::string, Pending> dropped_changes;
  {
    absl::MutexLock lock(&mu_);
    if (shutdown_) return;
    shutdown_ = true;
    subscribers.swap(subscribers_);
    dropped.swap(tasks_);
    dropped_changes.swap(pending_);
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
