#include "proto/convert/job_spec.h"

#include "absl/strings/str_cat.h"

namespace ftune {

absl::StatusOr<contract::Method> MethodFromProto(v1::TrainingMethod method) {
  switch (method) {
    case v1::TRAINING_METHOD_UNSPECIFIED:
    case v1::TRAINING_METHOD_LORA:
      return contract::Method::kLora;
    case v1::TRAINING_METHOD_QLORA:
      return contract::Method::kQlora;
    case v1::TRAINING_METHOD_FULL:
      return contract::Method::kFull;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("spec.method: unknown value ", method));
  }
}

absl::StatusOr<contract::Objective> ObjectiveFromProto(
    v1::TrainingObjective objective) {
  switch (objective) {
    case v1::TRAINING_OBJECTIVE_UNSPECIFIED:
    case v1::TRAINING_OBJECTIVE_SFT:
      return contract::Objective::kSft;
    case v1::TRAINING_OBJECTIVE_DPO:
      return contract::Objective::kDpo;
    case v1::TRAINING_OBJECTIVE_ORPO:
      return contract::Objective::kOrpo;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("spec.objective: unknown value ", objective));
  }
}

absl::StatusOr<contract::PreferenceSpec> PreferenceFromProto(
    const v1::PreferenceConfig& p) {
  contract::PreferenceSpec out;
  switch (p.loss()) {
    case v1::PREFERENCE_LOSS_UNSPECIFIED:
    case v1::PREFERENCE_LOSS_SIGMOID:
      out.loss = contract::PreferenceLossKind::kSigmoid;
      break;
    case v1::PREFERENCE_LOSS_IPO:
      out.loss = contract::PreferenceLossKind::kIpo;
      break;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("spec.preference.loss: unknown value ", p.loss()));
  }
  if (p.has_beta()) out.beta = p.beta();
  out.label_smoothing = p.label_smoothing();
  if (p.has_orpo_lambda()) out.orpo_lambda = p.orpo_lambda();
  return out;
}

contract::SampleSpec SampleSpecFromProto(const v1::SampleConfig& c) {
  contract::SampleSpec out;
  out.eval_samples = c.has_eval_samples() ? c.eval_samples() : 0;
  contract::GenerationSpec& g = out.generation;
  if (c.has_max_new_tokens()) g.max_new_tokens = c.max_new_tokens();
  g.temperature = c.temperature();
  g.top_k = c.top_k();
  if (c.has_top_p()) g.top_p = c.top_p();
  if (c.has_repetition_penalty()) g.repetition_penalty = c.repetition_penalty();
  g.seed = c.seed();
  g.stop = {c.stop().begin(), c.stop().end()};
  return out;
}

absl::StatusOr<contract::TaskMetricsSpec> TaskMetricsSpecFromProto(
    const v1::TaskMetricsConfig& c) {
  contract::TaskMetricsSpec out;
  out.eval_task_examples =
      c.has_eval_task_examples() ? c.eval_task_examples() : 0;
  if (c.has_max_new_tokens()) out.max_new_tokens = c.max_new_tokens();
  out.eval_pattern = c.eval_pattern();
  switch (c.select_best_by()) {
    case v1::SELECT_BEST_BY_UNSPECIFIED:
    case v1::SELECT_BEST_BY_EVAL_LOSS:
      out.select_best_by = contract::SelectBestBy::kEvalLoss;
      break;
    case v1::SELECT_BEST_BY_EXACT_MATCH:
      out.select_best_by = contract::SelectBestBy::kExactMatch;
      break;
    case v1::SELECT_BEST_BY_PATTERN_MATCH:
      out.select_best_by = contract::SelectBestBy::kPatternMatch;
      break;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("spec.task_metrics.select_best_by: unknown value ",
                       c.select_best_by()));
  }
  return out;
}

v1::SelectBestBy SelectBestByToProto(contract::SelectBestBy by) {
  switch (by) {
    case contract::SelectBestBy::kEvalLoss:
      return v1::SELECT_BEST_BY_EVAL_LOSS;
    case contract::SelectBestBy::kExactMatch:
      return v1::SELECT_BEST_BY_EXACT_MATCH;
    case contract::SelectBestBy::kPatternMatch:
      return v1::SELECT_BEST_BY_PATTERN_MATCH;
  }
  return v1::SELECT_BEST_BY_UNSPECIFIED;
}

absl::StatusOr<std::optional<contract::Dtype>> ComputeDtypeFromProto(
    v1::ComputeDtype dtype) {
  switch (dtype) {
    case v1::COMPUTE_DTYPE_UNSPECIFIED:
      return std::optional<contract::Dtype>();
    case v1::COMPUTE_DTYPE_FP32:
      return contract::Dtype::kFp32;
    case v1::COMPUTE_DTYPE_BF16:
      return contract::Dtype::kBf16;
    case v1::COMPUTE_DTYPE_FP16:
      return contract::Dtype::kFp16;
    default:
      return absl::InvalidArgumentError(absl::StrCat(
          "spec.quantization.compute_dtype: unknown value ", dtype));
  }
}

}  // namespace ftune
