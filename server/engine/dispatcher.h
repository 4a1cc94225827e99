// Dispatcher: turns the scheduling policy (server/core/placement.h) into
// leases and commands for the worker agents (WorkerService.StreamCommands).
//
// One background thread runs a round whenever something that can change the
// plan happened (a job became QUEUED or left a worker, a worker registered,
// was drained or lost: Notify(), called by the store's commit hook and the
// WorkerService) and at least every `tick` (lease expiry):
//   1. ExpireLeases(now): lost attempts are re-queued or failed, silent
//      workers become LOST (their command streams are ended);
//   2. GetSchedulingSnapshot + PlanAssignments;
//   3. GrantLease for each assignment (a compare-and-set: a plan made from a
//      stale snapshot loses and the next round plans again), reserving GPU
//      indices on the worker, then an AssignJobCommand on the worker's
//      stream. A worker without a stream gets it when it connects: every
//      (re)connect first replays an assignment for each attempt it holds
//      and any pending cancel or pause (commands are idempotent on the
//      worker).
// Cancel and pause requests become CancelJobCommand / PauseJobCommand on the
// holding worker's stream as soon as they are committed.
//
// Thread-safe. Lifecycle: construct, Start(), ..., Shutdown() (ends every
// stream with UNAVAILABLE, joins the thread) before the store is destroyed.
#ifndef FTUNE_SERVER_ENGINE_DISPATCHER_H_
#define FTUNE_SERVER_ENGINE_DISPATCHER_H_

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "ftune/v1/worker.pb.h"
#include "server/store/store.h"

namespace ftune::server::engine {

struct DispatcherOptions {
  // A worker's (and its attempts') lease after each Heartbeat.
  absl::Duration lease_duration = absl::Seconds(30);
  // How often workers heartbeat (at most lease_duration / 3).
  absl::Duration heartbeat_interval = absl::Seconds(5);
  // SIGTERM -> SIGKILL grace the workers give a cancelled trainer.
  absl::Duration cancel_grace = absl::Seconds(30);
  // Longest time between two rounds when nothing happens (lease expiry).
  absl::Duration tick = absl::Seconds(1);
};

// The write side of one worker's StreamCommands call.
class CommandStream {
 public:
  virtual ~CommandStream() = default;
  // Queues a command (never blocks).
  virtual void Send(const v1::WorkerCommand& command) = 0;
  // Ends the stream with `status` (after queued commands are written); the
  // front end maps it to its transport's status.
  virtual void Close(const absl::Status& status) = 0;
};

class Dispatcher {
 public:
  // `store` and `clock` are not owned and must outlive the dispatcher.
  Dispatcher(store::Store* store, Clock* clock, DispatcherOptions options);
  ~Dispatcher();  // Shutdown().
  Dispatcher(const Dispatcher&) = delete;
  Dispatcher& operator=(const Dispatcher&) = delete;

  void Start();
  // Ends every stream (UNAVAILABLE, "scheduler shutting down") and stops the
  // thread. Idempotent.
  void Shutdown();

  const DispatcherOptions& options() const { return options_; }

  // Something changed: run a round soon.
  void Notify();
  // For the store's on_commit (chained after the watch hub's): notices new
  // QUEUED jobs, freed capacity, cancel and pause requests. Quick; never
  // calls the store.
  void OnCommit(const std::vector<store::JobChange>& changes);

  // A number for a StreamCommands call, taken when the call arrives:
  // later calls get larger numbers.
  uint64_t NextStreamGeneration();
  // A worker's StreamCommands call (numbered `generation`) is ready for
  // commands. The newest call wins, whatever order the calls' set-up tasks
  // finish in: an older stream of the same worker is replaced and ended
  // with ABORTED; if the attached one is newer, `stream` itself is ended
  // with ABORTED instead. `stream` must stay valid until Detach() returns.
  void Attach(const std::string& worker_id, CommandStream* stream,
              uint64_t generation);
  // The stream ended; no more calls reach it after this returns.
  void Detach(const std::string& worker_id, CommandStream* stream);
  // Ends the worker's stream (it was found LOST / unknown).
  void CloseStream(const std::string& worker_id, const absl::Status& status);

  // The commands a worker holding `held` must have: an AssignJobCommand for
  // every held attempt, plus a cancel or pause where one is pending.
  std::vector<v1::WorkerCommand> CommandsFor(
      const std::vector<store::HeldAttempt>& held) const;
  // The AssignJobCommand for a granted attempt. INTERNAL when the stored
  // spec or references cannot be read.
  absl::StatusOr<v1::AssignJobCommand> BuildAssignment(
      const store::HeldAttempt& held) const;

  // Rounds run so far (for tests).
  int64_t rounds() const;

  // One round, synchronously (the background thread calls this).
  void RunRound();

 private:
  void Loop();
  void SendTo(const std::string& worker_id, const v1::WorkerCommand& command);
  // Free GPU indices of `worker` given what it holds.
  absl::StatusOr<std::vector<int32_t>> FreeGpus(const core::Worker& worker);

  store::Store* const store_;
  Clock* const clock_;
  const DispatcherOptions options_;

  mutable absl::Mutex mu_;
  bool wake_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  int64_t rounds_ ABSL_GUARDED_BY(mu_) = 0;
  struct AttachedStream {
    CommandStream* stream;
    uint64_t generation;
  };
  std::map<std::string, AttachedStream> streams_ ABSL_GUARDED_BY(mu_);
  uint64_t next_generation_ ABSL_GUARDED_BY(mu_) = 1;
  absl::Time last_expiry_ = absl::InfinitePast();  // RunRound's thread only.
  std::thread thread_;
};

}  // namespace ftune::server::engine

#endif  // FTUNE_SERVER_ENGINE_DISPATCHER_H_
