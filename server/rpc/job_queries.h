// The read-only listings of a tenant's jobs, without transport: jobs (by
// state and labels), a job's events, metric points and checkpoints, each a
// page of the proto listing bound to its filters by an opaque page token
// (server/rpc/pagination.h). JobService (server/rpc/job_service.h) and the
// OpenAI-compatible HTTP API (server/http/) both answer through these.
//
// Errors: INVALID_ARGUMENT naming the field (page_size, page_token,
// filters); NOT_FOUND with the id for a missing or another tenant's job.
//
// Thread-safe: the Store and the JobEngine are.
#ifndef FTUNE_SERVER_RPC_JOB_QUERIES_H_
#define FTUNE_SERVER_RPC_JOB_QUERIES_H_

#include <string>

#include "absl/status/status.h"
#include "ftune/v1/job_service.pb.h"
#include "server/store/store.h"

namespace ftune::server::engine {
class JobEngine;
}  // namespace ftune::server::engine

namespace ftune::server::rpc {

absl::Status ListJobs(store::Store& store, const std::string& tenant,
                      const v1::ListJobsRequest& request,
                      v1::ListJobsResponse* response);
absl::Status ListJobEvents(store::Store& store, engine::JobEngine& jobs,
                           const std::string& tenant,
                           const v1::ListJobEventsRequest& request,
                           v1::ListJobEventsResponse* response);
absl::Status ListJobMetrics(store::Store& store, engine::JobEngine& jobs,
                            const std::string& tenant,
                            const v1::ListJobMetricsRequest& request,
                            v1::ListJobMetricsResponse* response);
absl::Status ListCheckpoints(store::Store& store, engine::JobEngine& jobs,
                             const std::string& tenant,
                             const v1::ListCheckpointsRequest& request,
                             v1::ListCheckpointsResponse* response);
absl::Status ListJobSamples(store::Store& store, engine::JobEngine& jobs,
                            const std::string& tenant,
                            const v1::ListJobSamplesRequest& request,
                            v1::ListJobSamplesResponse* response);

}  // namespace ftune::server::rpc

#endif  // FTUNE_SERVER_RPC_JOB_QUERIES_H_
