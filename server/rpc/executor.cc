#include "server/rpc/executor.h"

#include <grpcpp/grpcpp.h>

#include "server/rpc/status_util.h"

#include <algorithm>
#include <utility>

#include "absl/time/clock.h"

namespace ftune::server::rpc {

Executor::Executor(Options options) : options_(options) {
  const int n = std::max(1, options_.threads);
  threads_.reserve(n);
  for (int i = 0; i < n; ++i) threads_.emplace_back([this] { Loop(); });
}

Executor::~Executor() { Shutdown(); }

bool Executor::Post(std::function<void()> task) {
  absl::MutexLock lock(&mu_);
  if (shutdown_) return false;
  if (options_.max_queued > 0 &&
      static_cast<int64_t>(ready_.size() + timed_.size()) >=
          options_.max_queued) {
    return false;
  }
  ready_.push_back(std::move(task));
  return true;
}

bool Executor::PostAt(absl::Time when, std::function<void()> task) {
  absl::MutexLock lock(&mu_);
  if (shutdown_) return false;
  if (options_.max_queued > 0 &&
      static_cast<int64_t>(ready_.size() + timed_.size()) >=
          options_.max_queued) {
    return false;
  }
  timed_.emplace(when, std::move(task));
  return true;
}

int64_t Executor::queued() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int64_t>(ready_.size() + timed_.size());
}

void Executor::Shutdown() {
  std::deque<std::function<void()>> ready;
  std::multimap<absl::Time, std::function<void()>> timed;
  {
    absl::MutexLock lock(&mu_);
    if (shutdown_ && threads_.empty()) return;
    shutdown_ = true;
    // Destroyed outside the lock: a task's captures may post or lock.
    ready.swap(ready_);
    timed.swap(timed_);
  }
  for (std::thread& t : threads_) t.join();
  threads_.clear();
}

void Executor::Loop() {
  absl::MutexLock lock(&mu_);
  while (true) {
    if (shutdown_) return;
    std::function<void()> task;
    const absl::Time now = absl::Now();
    if (!timed_.empty() && timed_.begin()->first <= now) {
      task = std::move(timed_.begin()->second);
      timed_.erase(timed_.begin());
    } else if (!ready_.empty()) {
      task = std::move(ready_.front());
      ready_.pop_front();
    }
    if (task) {
      mu_.Unlock();
      task();
      task = nullptr;  // Captures die before the lock is taken again.
      mu_.Lock();
      continue;
    }
    const absl::Time next =
        timed_.empty() ? absl::InfiniteFuture() : timed_.begin()->first;
    // Woken by a new ready task, an earlier timed one, or shutdown.
    const size_t timed_count = timed_.size();
    const absl::Time first = next;
    auto changed = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return shutdown_ || !ready_.empty() || timed_.size() != timed_count ||
             (!timed_.empty() && timed_.begin()->first != first);
    };
    mu_.AwaitWithDeadline(absl::Condition(&changed), next);
  }
}

grpc::ServerUnaryReactor* RunUnary(Executor* executor,
                                   grpc::CallbackServerContext* ctx,
                                   std::function<absl::Status()> fn) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  auto run = [ctx, reactor, fn = std::move(fn)] {
    const absl::Status status =
        ctx->IsCancelled()
            ? absl::CancelledError("cancelled before it was served")
            : fn();
    reactor->Finish(ToGrpcStatus(status, ctx));
  };
  if (executor == nullptr) {
    run();
  } else if (!executor->Post(std::move(run))) {
    reactor->Finish(ToGrpcStatus(
        absl::UnavailableError(
            "server overloaded: too many calls waiting; retry with backoff"),
        ctx));
  }
  return reactor;
}

grpc::ServerUnaryReactor* RunUnaryAsync(
    Executor* executor, grpc::CallbackServerContext* ctx,
    std::function<void(UnaryDone done)> fn) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  UnaryDone finish = [ctx, reactor](absl::Status status) {
    reactor->Finish(ToGrpcStatus(status, ctx));
  };
  auto run = [ctx, finish, fn = std::move(fn)]() mutable {
    if (ctx->IsCancelled()) {
      finish(absl::CancelledError("cancelled before it was served"));
      return;
    }
    fn(std::move(finish));
  };
  if (executor == nullptr) {
    run();
  } else if (!executor->Post(std::move(run))) {
    finish(absl::UnavailableError(
        "server overloaded: too many calls waiting; retry with backoff"));
  }
  return reactor;
}

}  // namespace ftune::server::rpc
