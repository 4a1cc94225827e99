// Conversions between server/core records and ftune.v1 protos, in one place
// so every service shows a job, tenant or key the same way, and the
// dispatcher's worker commands use the same timestamps and adapter names.
// Plain protobuf, no gRPC: the engine and the gRPC front ends share it
// (server/rpc/convert.h gives the front ends the short names).
//
// Thread-safe: pure functions.
#ifndef FTUNE_SERVER_ENGINE_CONVERT_H_
#define FTUNE_SERVER_ENGINE_CONVERT_H_

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/contract/capabilities.h"
#include "common/contract/memory_plan.h"
#include "ftune/v1/admin.pb.h"
#include "ftune/v1/job.pb.h"
#include "ftune/v1/model.pb.h"
#include "ftune/v1/worker.pb.h"
#include "google/protobuf/duration.pb.h"
#include "google/protobuf/timestamp.pb.h"
#include "server/core/spec_validation.h"
#include "server/core/types.h"

namespace ftune::server::engine {

// Leaves `out` cleared when `t` is InfinitePast (unset).
void SetTimestamp(absl::Time t, google::protobuf::Timestamp* out);
absl::Time FromTimestamp(const google::protobuf::Timestamp& ts);
void SetDuration(absl::Duration d, google::protobuf::Duration* out);

// Adapter.name: "<model>-<suffix>-<job id>", or "<model>-<job id>".
std::string AdapterName(absl::string_view model, absl::string_view suffix,
                        absl::string_view job_id);

v1::JobState JobStateToProto(core::JobState state);
// UNSPECIFIED and unknown values give nullopt.
std::optional<core::JobState> JobStateFromProto(v1::JobState state);
// "JOB_STATE_RUNNING": the ErrorInfo.current_state spelling.
std::string JobStateEnumName(core::JobState state);

// The stored spec (serialized JobSpec) is parsed into Job.spec.
v1::Job JobToProto(const core::Job& job);
v1::JobEvent JobEventToProto(const core::JobEvent& event);
v1::JobEventType JobEventTypeToProto(core::JobEventType type);
v1::MetricPoint MetricPointToProto(const core::MetricPoint& point);
v1::Checkpoint CheckpointToProto(const core::Checkpoint& checkpoint);
v1::JobSample JobSampleToProto(const core::JobSample& sample);

v1::Tenant TenantToProto(const core::Tenant& tenant);
v1::Quota QuotaToProto(const core::Quota& quota);
v1::ApiKey ApiKeyToProto(const core::ApiKey& key);

// Model metadata keys written by the model registry (server/model_registry.h:
// architecture, family, lora_modules, the sizes, default_chat_template,
// supported_methods, ...) and read here.
v1::Model ModelToProto(const core::Model& model);
core::ModelFacts ModelFactsFromModel(const core::Model& model);
// The memory planner's view of the model: the registry's "memory_shape"
// entry, or (a row registered before it was written) the Llama-family
// shape of its sizes; nullopt when the sizes are unknown.
std::optional<contract::ModelShape> ModelShapeFromModel(
    const core::Model& model);

// What a job with this resolved spec asks of a worker's trainer: its
// method, its model's architecture (as registered) and its compute dtype
// (nullopt when the worker chooses).
contract::TrainerRequirement TrainerRequirementOf(const v1::JobSpec& resolved,
                                                  const core::Model& model);

// A worker's trainer capabilities, as registered (`field` is the request
// path, "capabilities.trainer"): INVALID_ARGUMENT naming the entry for a
// list longer than 64 entries or an entry longer than 128 bytes.
// (To proto: ftune::TrainerCapabilitiesToProto, proto/convert.)
absl::StatusOr<contract::TrainerCapabilities> TrainerCapabilitiesFromProto(
    const v1::TrainerCapabilities& caps, absl::string_view field);

core::FileFacts FileFactsFromRecord(const core::FileRecord& file);

}  // namespace ftune::server::engine

#endif  // FTUNE_SERVER_ENGINE_CONVERT_H_
