// JobService.TryModel (proto/ftune/v1/job_service.proto): creates a try
// job (server/engine/try_jobs.h) and streams it: a `job` snapshot first,
// another at each state change, then every completion (`sample`) as the
// store commits it, and the terminal snapshot before OK.
//
// How: the session validates and creates the job on the WatchHub's thread
// (reads there, the write through the store's writer), then subscribes to
// the job's committed changes; every change schedules one re-read of the
// job and its samples (at most 32 rows), so nothing committed after the
// subscription is missed, and the first read after it covers what
// committed before. A try job is small: there is no replay cursor and no
// truncation (at most 32 samples and a few snapshots are queued).
//
// Ends: the client cancelling (CANCELLED; the try job goes on and can be
// read with GetJob / ListJobSamples), WatchHub::Shutdown() (UNAVAILABLE).
//
// Thread-safety: StartTryModel may be called from any gRPC thread.
#ifndef FTUNE_SERVER_RPC_TRY_MODEL_H_
#define FTUNE_SERVER_RPC_TRY_MODEL_H_

#include <grpcpp/grpcpp.h>

#include "ftune/v1/job_service.pb.h"
#include "server/engine/tenant_limits.h"
#include "server/engine/watch_hub.h"
#include "server/rpc/principal.h"
#include "server/store/store.h"

namespace ftune::server::rpc {

// `hub` and `store` must outlive the call; `limits` (may be null) bounds
// the tenant's open streams as for WatchJob. The reactor deletes itself.
grpc::ServerWriteReactor<v1::TryModelResponse>* StartTryModel(
    engine::WatchHub* hub, store::Store* store,
    grpc::CallbackServerContext* ctx, const v1::TryModelRequest* request,
    const Principal& principal, engine::TenantLimits* limits);

}  // namespace ftune::server::rpc

#endif  // FTUNE_SERVER_RPC_TRY_MODEL_H_
