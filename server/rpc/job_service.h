// JobService (ftune.v1, proto/ftune/v1/job_service.proto) on the gRPC
// callback API: a thin front end. Creating, cancelling, pausing and
// resuming a job are the engine's rules (server/engine/job_engine.h); the
// read-only listings page through the Store.
//
// WatchJob and StreamJobLog are served by handlers given in
// JobStreamHandlers (server/rpc/job_watch.h provides them); the service
// authenticates the tenant first and hands the handler the Principal. A
// handler left empty answers UNIMPLEMENTED.
//
// Unary calls (authentication included) run on the Executor given at
// construction, not on gRPC's callback threads: they read the store and
// writes wait for a group commit. CreateJob does not wait: it queues its
// write and the store's writer finishes the call once it is committed. A
// full executor queue answers UNAVAILABLE ("server overloaded"). Without an
// executor they run inline.
//
// Thread-safety: all methods are called concurrently by gRPC; the object is
// immutable after construction.
#ifndef FTUNE_SERVER_RPC_JOB_SERVICE_H_
#define FTUNE_SERVER_RPC_JOB_SERVICE_H_

#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "ftune/v1/job_service.grpc.pb.h"
#include "server/rpc/principal.h"

namespace ftune::store {
class Store;
}  // namespace ftune::store

namespace ftune::server::engine {
class JobEngine;
}  // namespace ftune::server::engine

namespace ftune::server::rpc {

class Executor;

// Factories for the streaming rpcs. Each returns a reactor that owns itself
// (deletes itself in OnDone). Called after authentication, with the caller's
// tenant Principal; the request stays valid until the reactor's OnDone.
struct JobStreamHandlers {
  std::function<grpc::ServerWriteReactor<v1::WatchJobResponse>*(
      grpc::CallbackServerContext* ctx, const v1::WatchJobRequest* request,
      const Principal& caller)>
      watch_job;
  std::function<grpc::ServerWriteReactor<v1::StreamJobLogResponse>*(
      grpc::CallbackServerContext* ctx, const v1::StreamJobLogRequest* request,
      const Principal& caller)>
      stream_job_log;
  std::function<grpc::ServerWriteReactor<v1::TryModelResponse>*(
      grpc::CallbackServerContext* ctx, const v1::TryModelRequest* request,
      const Principal& caller)>
      try_model;
};

class JobServiceImpl final : public v1::JobService::CallbackService {
 public:
  // `store`, `jobs`, `auth` and `executor` are not owned and must outlive
  // the service; `executor` null = unary calls run on gRPC's thread.
  // `storage_root` is where adapters are read from for DownloadAdapterFile
  // ("" = that rpc answers UNIMPLEMENTED).
  JobServiceImpl(store::Store* store, engine::JobEngine* jobs,
                 Authenticator* auth, JobStreamHandlers streams = {},
                 Executor* executor = nullptr, std::string storage_root = "");

  grpc::ServerUnaryReactor* CreateJob(grpc::CallbackServerContext* ctx,
                                      const v1::CreateJobRequest* request,
                                      v1::CreateJobResponse* response) override;
  grpc::ServerUnaryReactor* GetJob(grpc::CallbackServerContext* ctx,
                                   const v1::GetJobRequest* request,
                                   v1::Job* response) override;
  grpc::ServerUnaryReactor* ListJobs(grpc::CallbackServerContext* ctx,
                                     const v1::ListJobsRequest* request,
                                     v1::ListJobsResponse* response) override;
  grpc::ServerUnaryReactor* CancelJob(grpc::CallbackServerContext* ctx,
                                      const v1::CancelJobRequest* request,
                                      v1::Job* response) override;
  grpc::ServerUnaryReactor* PauseJob(grpc::CallbackServerContext* ctx,
                                     const v1::PauseJobRequest* request,
                                     v1::Job* response) override;
  grpc::ServerUnaryReactor* ResumeJob(grpc::CallbackServerContext* ctx,
                                      const v1::ResumeJobRequest* request,
                                      v1::Job* response) override;
  grpc::ServerUnaryReactor* ListJobEvents(
      grpc::CallbackServerContext* ctx, const v1::ListJobEventsRequest* request,
      v1::ListJobEventsResponse* response) override;
  grpc::ServerUnaryReactor* ListJobMetrics(
      grpc::CallbackServerContext* ctx,
      const v1::ListJobMetricsRequest* request,
      v1::ListJobMetricsResponse* response) override;
  grpc::ServerUnaryReactor* ListCheckpoints(
      grpc::CallbackServerContext* ctx,
      const v1::ListCheckpointsRequest* request,
      v1::ListCheckpointsResponse* response) override;
  grpc::ServerUnaryReactor* ListJobSamples(
      grpc::CallbackServerContext* ctx,
      const v1::ListJobSamplesRequest* request,
      v1::ListJobSamplesResponse* response) override;
  grpc::ServerWriteReactor<v1::WatchJobResponse>* WatchJob(
      grpc::CallbackServerContext* ctx,
      const v1::WatchJobRequest* request) override;
  grpc::ServerWriteReactor<v1::StreamJobLogResponse>* StreamJobLog(
      grpc::CallbackServerContext* ctx,
      const v1::StreamJobLogRequest* request) override;
  grpc::ServerWriteReactor<v1::TryModelResponse>* TryModel(
      grpc::CallbackServerContext* ctx,
      const v1::TryModelRequest* request) override;
  grpc::ServerWriteReactor<v1::DownloadAdapterFileResponse>*
  DownloadAdapterFile(grpc::CallbackServerContext* ctx,
                      const v1::DownloadAdapterFileRequest* request) override;

 private:
  // Cancel/Pause/Resume: one engine call each.
  enum class Control { kCancel, kPause, kResume };
  absl::Status DoControl(const Principal& caller, Control control,
                         const std::string& job_id, v1::Job* response);
  // Authenticates a tenant, runs `fn`, finishes the call with its status;
  // on the executor when there is one.
  grpc::ServerUnaryReactor* Unary(
      grpc::CallbackServerContext* ctx,
      std::function<absl::Status(const Principal&)> fn);

  store::Store* store_;
  engine::JobEngine* jobs_;
  Authenticator* auth_;
  JobStreamHandlers streams_;
  Executor* executor_;
  std::string storage_root_;
};

}  // namespace ftune::server::rpc

#endif  // FTUNE_SERVER_RPC_JOB_SERVICE_H_
