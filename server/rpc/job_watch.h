// JobService.WatchJob (proto/ftune/v1/job_service.proto): a job's snapshot,
// then its stored events and metric points after the client's cursor, then
// live ones, each exactly once and in sequence order.
//
// How a stream works (one WatchSession per call):
//  1. It subscribes to the WatchHub *before* it reads anything, so every
//     change committed after its reads is also delivered live.
//  2. Replay round (on the hub's thread): read the job (snapshot J with
//     last_sequence L), then the store's events/metrics with
//     cursor < sequence <= L in pages. Live changes that arrive meanwhile are
//     parked. The first round's J is the stream's first message.
//  3. Live: parked and new changes are sent record by record; a record at or
//     below the cursor is dropped (already sent by the replay), and a record
//     beyond cursor + 1 (a gap: parked changes were dropped, see below)
//     starts another replay round from the store. Sequences are dense per
//     job, so this gives no gap and no duplicate across the switch.
//  4. After a live change with a STATE_CHANGED event, a snapshot follows.
//     Replayed history has no per-transition snapshots: a round that
//     replayed a state change ends with one snapshot of the job as read at
//     the start of the round.
//  5. The stream ends with OK after the snapshot of a terminal job once all
//     its records are sent.
//
// Bounds: at most max_buffered_messages (default 1024) messages wait to be
// written per stream. Replay reads only when fewer than a quarter of that
// are waiting, so a slow reader slows the replay instead of growing memory.
// Live changes that would overflow the queue end the stream: the queued
// messages, then `truncated` {resume_after_sequence = the last record queued,
// skipped_records = records committed after it}, then OK. Parked live
// changes (during a replay) are capped too; beyond the cap they are dropped
// and the next round re-reads them from the store.
//
// Ends: the client cancelling (CANCELLED), WatchHub::Shutdown() (UNAVAILABLE
// "server shutting down"; an in-flight write is cancelled so it is prompt).
//
// Thread-safety: StartWatchJob may be called from any gRPC thread.
#ifndef FTUNE_SERVER_RPC_JOB_WATCH_H_
#define FTUNE_SERVER_RPC_JOB_WATCH_H_

#include <cstdint>

#include <grpcpp/grpcpp.h>

#include "ftune/v1/job_service.pb.h"
#include "server/engine/tenant_limits.h"
#include "server/engine/watch_hub.h"
#include "server/rpc/principal.h"
#include "server/store/store.h"

namespace ftune::server::rpc {

struct WatchJobOptions {
  // Messages waiting to be written per stream before it is truncated.
  int64_t max_buffered_messages = 1024;
  // Records read from the store per replay page (capped at a quarter of
  // max_buffered_messages).
  int replay_page_size = 256;
  // Live changes parked during a replay before they are dropped (re-read).
  int64_t max_parked_records = 4096;
  // Per-tenant stream limit (not owned; null = none): a stream holds one
  // of its tenant's slots until it ends.
  engine::TenantLimits* limits = nullptr;
};

// Implements WatchJob for JobService::CallbackService::WatchJob: validates
// the request (INVALID_ARGUMENT for a malformed job_id or negative
// after_sequence; PERMISSION_DENIED unless `principal` is a tenant), then
// streams as described above (NOT_FOUND for an unknown or foreign job,
// OUT_OF_RANGE for after_sequence > last_sequence; RESOURCE_EXHAUSTED with
// ErrorInfo quota "max_streams_per_tenant" when the tenant holds its most
// streams already). `hub` and `store` must
// outlive the call. The returned reactor deletes itself when done.
grpc::ServerWriteReactor<v1::WatchJobResponse>* StartWatchJob(
    engine::WatchHub* hub, store::Store* store,
    grpc::CallbackServerContext* ctx, const v1::WatchJobRequest* request,
    const Principal& principal, const WatchJobOptions& options = {});

}  // namespace ftune::server::rpc

#endif  // FTUNE_SERVER_RPC_JOB_WATCH_H_
