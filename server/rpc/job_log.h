// JobService.StreamJobLog (proto/ftune/v1/job_service.proto): the trainer's
// log of one attempt, read from shared storage at
// core::AttemptLogPath(tenant, job, attempt), where the worker agent appends
// it.
//
// Which attempt: the requested one, or (attempt = 0) the one running now,
// else the latest that ran. An attempt "ran" when the store holds its
// QUEUED -> RUNNING event; it is live while the job is still at that attempt
// with a worker holding it.
//
// How a stream works (one LogSession per call; all store reads and file
// I/O run on the streamer's own threads, never on gRPC's):
//  1. With follow it subscribes to the WatchHub before reading the job, so
//     no later change (attempt start, end) is missed.
//  2. It reads the job and its state-change events, picks the attempt and
//     answers the proto's errors (NOT_FOUND for an unknown or foreign job,
//     INVALID_ARGUMENT for attempt > Job.attempt, FAILED_PRECONDITION with
//     ErrorInfo.current_state when the attempt never ran and will not run).
//  3. It opens the log file beneath the storage root one path component at
//     a time, refusing symbolic links and anything but a regular file, so
//     nothing outside the job's log directory is ever read.
//  4. It sends [start, end) in chunks of at most max_chunk_bytes, one write
//     in flight. Without follow `end` is the file's size when the call
//     started. With follow it then polls the size every poll_interval
//     (shared storage may be NFS: no inotify) and sends what was appended;
//     when the hub reports that the attempt ended it reopens the file (NFS
//     close-to-open consistency), sends the rest and ends with OK.
//
// Following a job that has not started waits for its first attempt (or for
// the requested one); if the job ends, or moves past the requested attempt,
// without it running, the stream ends with FAILED_PRECONDITION.
//
// Ends: the client cancelling (CANCELLED), WatchHub::Shutdown() for
// followers (UNAVAILABLE "server shutting down").
//
// Thread-safety: Start may be called from any gRPC thread concurrently.
#ifndef FTUNE_SERVER_RPC_JOB_LOG_H_
#define FTUNE_SERVER_RPC_JOB_LOG_H_

#include <atomic>
#include <cstdint>
#include <string>

#include <grpcpp/grpcpp.h>

#include "absl/time/time.h"
#include "ftune/v1/job_service.pb.h"
#include "server/engine/tenant_limits.h"
#include "server/engine/watch_hub.h"
#include "server/rpc/executor.h"
#include "server/rpc/principal.h"
#include "server/store/store.h"

namespace ftune::server::rpc {

struct JobLogOptions {
  // Root of shared storage (the scheduler's --storage_root).
  std::string storage_root;
  // How often a follower looks for new bytes.
  absl::Duration poll_interval = absl::Milliseconds(250);
  // Largest chunk sent; clamped to [1, 64 KiB] (the proto's bound).
  int64_t max_chunk_bytes = 64 << 10;
  // Threads doing the store reads and file I/O of all streams.
  int io_threads = 2;
  // Concurrent streams; beyond it calls fail with RESOURCE_EXHAUSTED.
  int64_t max_streams = 1024;
  // Per-tenant stream limit, shared with WatchJob (not owned; null = none):
  // a stream holds one of its tenant's slots until it ends.
  engine::TenantLimits* limits = nullptr;
};

class JobLogStreamer {
 public:
  // `store` and `hub` are not owned and must outlive this object; the
  // streamer must outlive every stream it started (destroy it after the
  // gRPC server).
  JobLogStreamer(store::Store* store, engine::WatchHub* hub,
                 JobLogOptions options);
  ~JobLogStreamer();
  JobLogStreamer(const JobLogStreamer&) = delete;
  JobLogStreamer& operator=(const JobLogStreamer&) = delete;

  // The JobStreamHandlers::stream_job_log handler: validates the request
  // (INVALID_ARGUMENT for a malformed job_id or attempt < 0;
  // PERMISSION_DENIED unless `caller` is a tenant; RESOURCE_EXHAUSTED with
  // ErrorInfo quota "max_streams_per_tenant" when the tenant holds its most
  // streams, see JobLogOptions::limits) and starts the stream.
  // The returned reactor deletes itself when done.
  grpc::ServerWriteReactor<v1::StreamJobLogResponse>* Start(
      grpc::CallbackServerContext* ctx, const v1::StreamJobLogRequest* request,
      const Principal& caller);

  // Streams running now (for tests and operators).
  int64_t active_streams() const { return active_.load(); }

  // What the sessions share (internal).
  struct Shared {
    store::Store* store;
    engine::WatchHub* hub;
    Executor* io;
    JobLogOptions options;
    std::atomic<int64_t>* active;
  };

 private:
  std::atomic<int64_t> active_{0};
  Executor io_;
  Shared shared_;
};

}  // namespace ftune::server::rpc

#endif  // FTUNE_SERVER_RPC_JOB_LOG_H_
