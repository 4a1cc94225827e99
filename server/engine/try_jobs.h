// Try jobs (JobService.TryModel): the rules that turn a TryModelRequest
// into a job of kind kTry, without transport. The job is stored and run
// like any other (queued, quota'd, fair-shared, placed, fenced,
// cancellable); its spec is the source job's model, method, LoRA shape,
// quantization, chat template and resources with JobSpec.try_model set,
// and its completions reach the tenant as the job's samples (step 0).
//
// Errors (absl::Status with ErrorInfo, error_info.h): INVALID_ARGUMENT
// naming the field ("prompts[2].messages[0].role", "generation.top_p");
// NOT_FOUND for a missing or foreign source job (the same answer) and for
// a checkpoint step that is not recorded (the message lists those that
// are); FAILED_PRECONDITION (ErrorInfo.current_state) for an adapter of a
// job that is not SUCCEEDED, or a try job as the source.
//
// Thread-safety: pure functions over the store (which is thread-safe).
#ifndef FTUNE_SERVER_ENGINE_TRY_JOBS_H_
#define FTUNE_SERVER_ENGINE_TRY_JOBS_H_

#include <string>

#include "absl/status/statusor.h"
#include "ftune/v1/job_service.pb.h"
#include "server/core/types.h"
#include "server/store/store.h"

namespace ftune::server::engine {

// Most prompts one try request may carry.
inline constexpr int kMaxTryPrompts = 32;

// Validates `request` for `tenant_id` and returns the job to store (id
// empty, kind kTry). Reads the store; writes nothing.
absl::StatusOr<core::Job> PrepareTryJob(store::Store& store,
                                        const std::string& tenant_id,
                                        const v1::TryModelRequest& request);

}  // namespace ftune::server::engine

#endif  // FTUNE_SERVER_ENGINE_TRY_JOBS_H_
