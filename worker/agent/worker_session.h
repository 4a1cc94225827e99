// WorkerAgent: the session of one ftune-worker with the scheduler
// (WorkerService, proto/ftune/v1/worker.proto), and the attempts it runs.
//
//   Register -> print worker_id -> Heartbeat every heartbeat_interval
//   (listing every attempt not yet finished; killing those in
//   stop_attempts) + StreamCommands (reconnected with backoff; commands are
//   idempotent by (job_id, attempt)) -> one AttemptRunner per assignment.
//
// Failures:
//   - scheduler unreachable: trainers keep running and reports are retried;
//     heartbeats continue with the same worker_id, so a scheduler restart
//     shorter than the lease changes nothing.
//   - self-fencing (rule 4): no successful Heartbeat for lease_duration,
//     measured from when the last successful one was *sent* -> every
//     trainer is SIGKILLed and the agent registers again with
//     previous_worker_id.
//   - NOT_FOUND / FAILED_PRECONDITION (LOST) from Heartbeat or the stream ->
//     the same.
//   - FAILED_PRECONDITION on an attempt's report: that attempt is killed
//     (attempt_runner.h).
//   - Shutdown(): no new work; every trainer gets SIGTERM (it checkpoints),
//     its progress is reported and its attempt finished as retryable
//     WORKER_LOST; Run() then returns.
//
// Thread-safety: Shutdown() may be called from any thread while Run() runs.
#ifndef FTUNE_WORKER_AGENT_WORKER_SESSION_H_
#define FTUNE_WORKER_AGENT_WORKER_SESSION_H_

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "ftune/v1/worker.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "worker/agent/attempt_runner.h"

namespace ftune::agent {

struct WorkerOptions {
  std::string scheduler_address = "127.0.0.1:50051";
  // The cluster's worker credential ("authorization: Bearer <key>").
  std::string worker_key;
  // Channel credentials (TLS/mTLS); insecure when null.
  std::shared_ptr<grpc::ChannelCredentials> channel_credentials;
  v1::WorkerCapabilities capabilities;
  AttemptRunnerOptions runner;
  absl::Duration rpc_timeout = absl::Seconds(10);
  absl::Duration reconnect_initial = absl::Milliseconds(250);
  absl::Duration reconnect_max = absl::Seconds(10);
  // Called after each successful registration (main prints worker_id=...).
  std::function<void(const std::string& worker_id)> on_registered;
  // Called after each heartbeat with whether it succeeded (for metrics).
  std::function<void(bool ok)> on_heartbeat;
};

// Converts a gRPC status (same code numbers).
absl::Status FromGrpc(const grpc::Status& s);

class WorkerAgent {
 public:
  explicit WorkerAgent(WorkerOptions options);
  ~WorkerAgent();
  WorkerAgent(const WorkerAgent&) = delete;
  WorkerAgent& operator=(const WorkerAgent&) = delete;

  // Runs the session until Shutdown() has finished every attempt. Returns
  // UNAUTHENTICATED / PERMISSION_DENIED / INVALID_ARGUMENT when the
  // scheduler refuses the registration itself (operator error: wrong key,
  // bad capabilities); retries every other error.
  absl::Status Run();

  // Stops taking work and stops the trainers (see above). Idempotent.
  // `hard`: SIGKILL the trainers instead and return from Run() at once.
  void Shutdown(bool hard = false);

 private:
  class Reporter;
  using Key = std::pair<std::string, int32_t>;
  enum class SessionEnd { kLost, kShutdown };

  absl::StatusOr<v1::RegisterWorkerResponse> Register(
      const std::string& previous_id);
  SessionEnd HeartbeatLoop();
  void StreamLoop();
  void Handle(const v1::WorkerCommand& command);
  void SweepDone();
  void KillAll();
  void AddAuth(grpc::ClientContext* ctx) const;
  std::string worker_id() const;

  const WorkerOptions options_;
  Clock* const clock_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::WorkerService::Stub> stub_;
  std::unique_ptr<Reporter> reporter_;

  mutable absl::Mutex mu_;
  std::string worker_id_ ABSL_GUARDED_BY(mu_);
  absl::Duration lease_duration_ ABSL_GUARDED_BY(mu_) = absl::Seconds(30);
  absl::Duration heartbeat_interval_ ABSL_GUARDED_BY(mu_) = absl::Seconds(5);
  absl::Time registered_sent_ ABSL_GUARDED_BY(mu_);
  bool lost_ ABSL_GUARDED_BY(mu_) = false;
  bool stream_stop_ ABSL_GUARDED_BY(mu_) = false;
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
  bool hard_stop_ ABSL_GUARDED_BY(mu_) = false;
  grpc::ClientContext* stream_ctx_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::map<Key, std::shared_ptr<AttemptRunner>> runners_ ABSL_GUARDED_BY(mu_);
  // Attempts that ended here, so a re-delivered AssignJobCommand is ignored.
  std::set<Key> finished_ ABSL_GUARDED_BY(mu_);
  std::deque<Key> finished_order_ ABSL_GUARDED_BY(mu_);
};

}  // namespace ftune::agent

#endif  // FTUNE_WORKER_AGENT_WORKER_SESSION_H_
