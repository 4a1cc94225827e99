// WorkerService (proto/ftune/v1/worker.proto): the scheduler's side of the
// protocol with the ftune-worker agents: registration, heartbeats with
// reconciliation, the command stream, fenced progress reports and attempt
// outcomes. Leases and fencing are the store's compare-and-sets; what to run
// where is the Dispatcher's.
//
// Unary calls run on the Executor (they write to the store), like
// JobService's. Every call needs the cluster's worker credential.
//
// Thread-safety: called concurrently by gRPC; immutable after construction.
#ifndef FTUNE_SERVER_RPC_WORKER_SERVICE_H_
#define FTUNE_SERVER_RPC_WORKER_SERVICE_H_

#include <functional>
#include <string>

#include "absl/status/status.h"
#include "common/clock.h"
#include "ftune/v1/worker.grpc.pb.h"
#include "server/core/types.h"
#include "server/rpc/principal.h"

namespace ftune::store {
class Store;
}  // namespace ftune::store

namespace ftune::server::engine {
class Dispatcher;
}  // namespace ftune::server::engine

namespace ftune::server::rpc {

class Executor;

class WorkerServiceImpl final : public v1::WorkerService::CallbackService {
 public:
  // Nothing is owned; all must outlive the service. `executor` null = unary
  // calls run inline.
  // `storage_root`: where a full fine-tuning job's published model
  // directory is read (and registered as the tenant's model) when it
  // succeeds; empty: such a job fails at its end, its model unreadable.
  WorkerServiceImpl(store::Store* store, Authenticator* auth,
                    engine::Dispatcher* dispatcher, Clock* clock,
                    Executor* executor, std::string storage_root = {});

  grpc::ServerUnaryReactor* RegisterWorker(
      grpc::CallbackServerContext* ctx,
      const v1::RegisterWorkerRequest* request,
      v1::RegisterWorkerResponse* response) override;
  grpc::ServerUnaryReactor* Heartbeat(grpc::CallbackServerContext* ctx,
                                      const v1::HeartbeatRequest* request,
                                      v1::HeartbeatResponse* response) override;
  grpc::ServerWriteReactor<v1::WorkerCommand>* StreamCommands(
      grpc::CallbackServerContext* ctx,
      const v1::StreamCommandsRequest* request) override;
  grpc::ServerUnaryReactor* ReportProgress(
      grpc::CallbackServerContext* ctx,
      const v1::ReportProgressRequest* request,
      v1::ReportProgressResponse* response) override;
  grpc::ServerUnaryReactor* FinishAttempt(
      grpc::CallbackServerContext* ctx, const v1::FinishAttemptRequest* request,
      v1::FinishAttemptResponse* response) override;

 private:
  grpc::ServerUnaryReactor* Unary(grpc::CallbackServerContext* ctx,
                                  std::function<absl::Status()> fn);
  absl::Status DoRegister(const v1::RegisterWorkerRequest& request,
                          v1::RegisterWorkerResponse* response);
  absl::Status DoHeartbeat(const v1::HeartbeatRequest& request,
                           v1::HeartbeatResponse* response);
  absl::Status DoReport(const v1::ReportProgressRequest& request,
                        v1::ReportProgressResponse* response);
  absl::Status DoFinish(const v1::FinishAttemptRequest& request,
                        v1::FinishAttemptResponse* response);
  // Checks the (worker_id, job_id, attempt) of a report; the job.
  template <typename Request>
  absl::StatusOr<core::Job> ReportedJob(const Request& request);
  // FAILED_PRECONDITION from a fenced write, with the job's state attached.
  absl::Status Fenced(absl::Status status, const std::string& job_id);

  store::Store* const store_;
  Authenticator* const auth_;
  engine::Dispatcher* const dispatcher_;
  Clock* const clock_;
  Executor* const executor_;
  const std::string storage_root_;
};

}  // namespace ftune::server::rpc

#endif  // FTUNE_SERVER_RPC_WORKER_SERVICE_H_
