#include "worker/train/task_eval.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status.h"
#include "worker/train/generate.h"
#include "worker/train/text/dataset_builder.h"
#include "worker/train/text/prompts.h"

namespace ftune::train {

static_assert(kMaxValidationExamplesKept >=
                  static_cast<size_t>(contract::range::kEvalTaskExamples.hi),
              "the data keeps every validation example task metrics may use");

absl::StatusOr<std::unique_ptr<TaskEvaluator>> TaskEvaluator::Create(
    const contract::TrainSpec& spec, bool validates,
    const std::vector<Example>& validation_examples, const Model& model) {
  const contract::TaskMetricsSpec& t = spec.task_metrics;
  const bool needed = t.select_best_by != contract::SelectBestBy::kEvalLoss;
  if (t.eval_task_examples <= 0 || !validates ||
      spec.objective != contract::Objective::kSft ||
      validation_examples.empty()) {
    if (needed)
      return absl::InvalidArgumentError(absl::StrCat(
          "spec field \"task_metrics.select_best_by\": \"",
          contract::Name(t.select_best_by),
          "\" needs text validation data (it has no examples to complete)"));
    return std::unique_ptr<TaskEvaluator>();
  }
  std::unique_ptr<TaskEvaluator> out(new TaskEvaluator());
  FTUNE_ASSIGN_OR_RETURN(out->generator_,
                         TextGenerator::Create(spec.model_dir, spec.model_dir,
                                               spec.data.chat_template));
  out->generation_.max_new_tokens = t.max_new_tokens;
  out->generation_.temperature = 0;  // greedy
  if (!t.eval_pattern.empty()) {
    FTUNE_ASSIGN_OR_RETURN(
        contract::CompletionPattern p,
        contract::CompletionPattern::Compile(t.eval_pattern));
    out->pattern_ = std::move(p);
  }
  const int64_t context = ContextLength(model);
  int64_t without_reference = 0, too_long = 0;
  for (const Example& ex : validation_examples) {
    if (static_cast<int64_t>(out->prompts_.size()) >= t.eval_task_examples)
      break;
    GenerationPrompt p = PromptFromExample(ex);
    if (!p.expected) {
      ++without_reference;
      continue;
    }
    FTUNE_ASSIGN_OR_RETURN(std::vector<int32_t> ids,
                           out->generator_->Render(p));
    if (ids.empty() || static_cast<int64_t>(ids.size()) >= context) {
      ++too_long;
      continue;
    }
    out->prompts_.push_back(std::move(p));
  }
  if (without_reference + too_long > 0) {
    FTUNE_LOG(WARNING) << "task metrics: " << without_reference
                       << " validation examples without a reference "
                          "completion and "
                       << too_long << " whose prompt fills the model's context "
                       << context << " left out";
  }
  if (out->prompts_.empty()) {
    if (needed)
      return absl::InvalidArgumentError(absl::StrCat(
          "spec field \"task_metrics.select_best_by\": \"",
          contract::Name(t.select_best_by),
          "\" needs validation examples with a reference completion "
          "(prompt/completion or chat ending in an assistant message) that "
          "fit the model's context; none do"));
    return std::unique_ptr<TaskEvaluator>();
  }
  return out;
}

absl::StatusOr<contract::TaskMetrics> TaskEvaluator::Evaluate(
    Model& model, Distributed& dist) {
  const auto [first, end] = dist.ShardOf(examples());
  contract::TaskCounts counts;
  if (end > first) {
    const std::vector<GenerationPrompt> mine(prompts_.begin() + first,
                                             prompts_.begin() + end);
    FTUNE_ASSIGN_OR_RETURN(
        std::vector<Completion> completions,
        generator_->Run(
            model, mine, generation_,
            std::min<int64_t>(end - first,
                              contract::defaults::kGenerateBatchSize),
            nullptr));
    for (size_t i = 0; i < completions.size(); ++i) {
      counts.Add(
          contract::ScoreCompletion(completions[i].text, *mine[i].expected));
      if (pattern_ && pattern_->Matches(completions[i].text)) ++counts.pattern;
    }
  }
  std::vector<double> sums{
      static_cast<double>(counts.examples), static_cast<double>(counts.exact),
      static_cast<double>(counts.normalized), counts.token_f1_sum,
      static_cast<double>(counts.pattern)};
  FTUNE_RETURN_IF_ERROR(dist.SumDoubles(sums));
  const double n = std::max(1.0, sums[0]);
  contract::TaskMetrics m;
  m.examples = static_cast<int64_t>(sums[0]);
  m.exact_match = sums[1] / n;
  m.normalized_match = sums[2] / n;
  m.token_f1 = sums[3] / n;
  if (pattern_) m.pattern_match = sums[4] / n;
  return m;
}

std::optional<double> SelectionScore(
    contract::SelectBestBy by, double eval_loss,
    const std::optional<contract::TaskMetrics>& task) {
  switch (by) {
    case contract::SelectBestBy::kEvalLoss:
      return -eval_loss;
    case contract::SelectBestBy::kExactMatch:
      if (!task) return std::nullopt;
      return task->exact_match;
    case contract::SelectBestBy::kPatternMatch:
      if (!task) return std::nullopt;
      return task->pattern_match;
  }
  return std::nullopt;
}

}  // namespace ftune::train
