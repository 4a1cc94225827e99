// The JobSpec enums as the trainer contract spells them: one mapping for the
// worker agent (which builds the trainer's spec) and the scheduler (which
// records what a job asks of a trainer).
#ifndef FTUNE_PROTO_CONVERT_JOB_SPEC_H_
#define FTUNE_PROTO_CONVERT_JOB_SPEC_H_

#include <optional>

#include "absl/status/statusor.h"
#include "common/contract/train_spec.h"
#include "ftune/v1/job_spec.pb.h"

namespace ftune {

// UNSPECIFIED is LoRA. INVALID_ARGUMENT "spec.method: unknown value N" for a
// value this build does not know.
absl::StatusOr<contract::Method> MethodFromProto(v1::TrainingMethod method);

// UNSPECIFIED is SFT. INVALID_ARGUMENT "spec.objective: unknown value N".
absl::StatusOr<contract::Objective> ObjectiveFromProto(
    v1::TrainingObjective objective);

// The preference settings of `spec` (objective DPO or ORPO) with the
// contract's defaults for unset fields. INVALID_ARGUMENT naming the field
// for an unknown loss value.
absl::StatusOr<contract::PreferenceSpec> PreferenceFromProto(
    const v1::PreferenceConfig& preference);

// The sample completions of a job (JobSpec.samples) as the trainer spec's
// SampleSpec: unset generation settings take the contract's defaults; an
// unset eval_samples is 0 (a spec resolved by the scheduler always sets it;
// one stored before samples existed asked for none). No range checks
// (spec_validation and ParseTrainSpec do them).
contract::SampleSpec SampleSpecFromProto(const v1::SampleConfig& samples);

// The task metrics of a job (JobSpec.task_metrics) as the trainer spec's
// TaskMetricsSpec: an unset eval_task_examples is 0 (a spec resolved by the
// scheduler always sets it; one stored before task metrics existed asked
// for none), an unset max_new_tokens the contract's default. INVALID_ARGUMENT
// naming spec.task_metrics.select_best_by for an unknown value; no range
// checks (spec_validation and ParseTrainSpec do them).
absl::StatusOr<contract::TaskMetricsSpec> TaskMetricsSpecFromProto(
    const v1::TaskMetricsConfig& task_metrics);
// The API's value for `by`.
v1::SelectBestBy SelectBestByToProto(contract::SelectBestBy by);

// UNSPECIFIED is nullopt (the trainer's default for its device).
// INVALID_ARGUMENT "spec.quantization.compute_dtype: unknown value N".
absl::StatusOr<std::optional<contract::Dtype>> ComputeDtypeFromProto(
    v1::ComputeDtype dtype);

}  // namespace ftune

#endif  // FTUNE_PROTO_CONVERT_JOB_SPEC_H_
