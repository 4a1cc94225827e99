// JobEngine: the business rules of a tenant's jobs, without transport:
// creating one (validation against the registered model, files, quotas and
// workers; idempotency on request_id) and the cancel / pause / resume
// state changes. The gRPC JobService (server/rpc/job_service.h) translates
// requests into these calls and their results into replies.
//
// Errors are absl::Status with ftune.v1.ErrorInfo detail
// (server/engine/error_info.h): INVALID_ARGUMENT with the field, NOT_FOUND
// for a job that does not exist or is another tenant's (the same answer),
// FAILED_PRECONDITION with the current state, RESOURCE_EXHAUSTED with the
// quota, ALREADY_EXISTS for a reused request_id with another spec.
//
// Thread-safe: immutable after construction; the store serializes writes.
#ifndef FTUNE_SERVER_ENGINE_JOB_ENGINE_H_
#define FTUNE_SERVER_ENGINE_JOB_ENGINE_H_

#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "ftune/v1/job_service.pb.h"
#include "server/core/types.h"
#include "server/store/store.h"

namespace ftune::server::engine {

// The state a client sees (a pending pause shows as RUNNING), as its enum
// name ("JOB_STATE_RUNNING").
std::string ApiStateName(const core::Job& job);

class JobEngine {
 public:
  // `store` is not owned and must outlive the engine.
  explicit JobEngine(store::Store* store);

  // Validates `request` for `tenant_id` against one read of the store and
  // queues the job's write; `done` is called exactly once: at once when
  // the request is refused or is validate_only, else from the store's
  // writer once the job is committed (or found: a retry with the same
  // request_id). `response` (estimate, job) must stay valid until then.
  void CreateJob(const std::string& tenant_id,
                 const v1::CreateJobRequest& request,
                 v1::CreateJobResponse* response,
                 std::function<void(absl::Status)> done);

  // The tenant's job. INVALID_ARGUMENT for a malformed id; NOT_FOUND (with
  // ErrorInfo.resource_id) for a missing or foreign one.
  absl::StatusOr<core::Job> GetJob(const std::string& tenant_id,
                                   const std::string& job_id);

  // A request that already reached its goal succeeds without change
  // (docs/api.md "Idempotency"); one the state forbids is
  // FAILED_PRECONDITION naming the state.
  absl::StatusOr<core::Job> CancelJob(const std::string& tenant_id,
                                      const std::string& job_id);
  absl::StatusOr<core::Job> PauseJob(const std::string& tenant_id,
                                     const std::string& job_id);
  absl::StatusOr<core::Job> ResumeJob(const std::string& tenant_id,
                                      const std::string& job_id);

 private:
  struct PreparedCreate;  // job_engine.cc
  // Validates and fills `prepared` (or all of `response` for validate_only,
  // setting prepared->answered).
  absl::Status PrepareCreateJob(const std::string& tenant_id,
                                const v1::CreateJobRequest& request,
                                v1::CreateJobResponse* response,
                                PreparedCreate* prepared);
  // Maps the store's answer to the API's and completes `response`.
  static absl::Status FinishCreateJob(
      absl::StatusOr<store::CreateJobResult> created,
      const PreparedCreate& prepared, v1::CreateJobResponse* response);
  // Cancel/Pause/Resume share the read-decide-write shape.
  enum class Control { kCancel, kPause, kResume };
  absl::StatusOr<core::Job> DoControl(const std::string& tenant_id,
                                      Control control,
                                      const std::string& job_id);

  store::Store* const store_;
};

}  // namespace ftune::server::engine

#endif  // FTUNE_SERVER_ENGINE_JOB_ENGINE_H_
