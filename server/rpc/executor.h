// Executor: a fixed pool of threads for work that may block (store calls
// that wait for a group commit, file reads on shared storage), so that it
// never runs on gRPC's callback threads, which must stay free to serve
// other calls. Tasks run now (Post) or at a given time (PostAt); with more
// than one thread, tasks may run concurrently and out of order.
//
// Bounded: at most `max_queued` tasks wait (0 = unbounded); a full queue
// refuses new tasks instead of growing without limit, so a caller can
// answer RESOURCE_EXHAUSTED / UNAVAILABLE.
//
// Thread-safe. The destructor calls Shutdown().
#ifndef FTUNE_SERVER_RPC_EXECUTOR_H_
#define FTUNE_SERVER_RPC_EXECUTOR_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace grpc {
class CallbackServerContext;
class ServerUnaryReactor;
}  // namespace grpc

namespace ftune::server::rpc {

class Executor {
 public:
  struct Options {
    int threads = 4;         // At least 1.
    int64_t max_queued = 0;  // Tasks waiting (now + timed); 0 = unbounded.
  };

  explicit Executor(Options options);
  ~Executor();
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  // Queues `task` to run as soon as a thread is free. False (task dropped)
  // when the queue is full or after Shutdown().
  bool Post(std::function<void()> task);
  // Queues `task` to run at `when` or later. False as for Post.
  bool PostAt(absl::Time when, std::function<void()> task);

  // Drops every queued task (running ones finish), joins the threads; later
  // posts fail. Idempotent. Must not be called from one of its own tasks.
  void Shutdown();

  // Tasks waiting to run (due or not).
  int64_t queued() const;

 private:
  void Loop();

  const Options options_;
  mutable absl::Mutex mu_;
  bool shutdown_ ABSL_GUARDED_BY(mu_) = false;
  std::deque<std::function<void()>> ready_ ABSL_GUARDED_BY(mu_);
  std::multimap<absl::Time, std::function<void()>> timed_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> threads_;
};

// Serves a unary callback call by running `fn` (authentication included) on
// `executor` (inline when null), then finishing with its status; a full
// queue answers UNAVAILABLE ("server overloaded"), a call cancelled before
// it ran answers CANCELLED.
grpc::ServerUnaryReactor* RunUnary(Executor* executor,
                                   grpc::CallbackServerContext* ctx,
                                   std::function<absl::Status()> fn);

// Ends a unary call started by RunUnaryAsync with `status`. Call it exactly
// once, from any thread.
using UnaryDone = std::function<void(absl::Status)>;

// Like RunUnary, but `fn` need not finish the call before it returns: it
// calls `done` once, then or later from another thread (e.g. a store's
// commit callback), so no executor thread waits for a group commit.
grpc::ServerUnaryReactor* RunUnaryAsync(Executor* executor,
                                        grpc::CallbackServerContext* ctx,
                                        std::function<void(UnaryDone done)> fn);

}  // namespace ftune::server::rpc

#endif  // FTUNE_SERVER_RPC_EXECUTOR_H_
