// Task metrics of a training run (docs/metrics.md "Task metrics"): at every
// evaluation, the greedy completions of the first eval_task_examples
// validation examples that have a reference completion, scored against it
// (common/contract/task_metrics.h). The completions come from the same
// TextGenerator the sample completions and `ftune-train generate` use.
// With several ranks each generates its slice of the examples and the
// counts are summed, so every rank gets the same metrics.
//
// Thread-compatible; Evaluate may throw c10::Error as Generate does.
#ifndef FTUNE_WORKER_TRAIN_TASK_EVAL_H_
#define FTUNE_WORKER_TRAIN_TASK_EVAL_H_

#include <memory>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "common/contract/progress.h"
#include "common/contract/task_metrics.h"
#include "common/contract/train_spec.h"
#include "common/dataset.h"
#include "worker/train/distributed.h"
#include "worker/train/model.h"
#include "worker/train/text_generation.h"

namespace ftune::train {

class TaskEvaluator {
 public:
  // nullptr when the run has no task metrics: eval_task_examples is 0, no
  // validation source, a preference objective, pre-tokenized data, or no
  // validation example with a reference completion whose prompt fits the
  // model's context (warned; INVALID_ARGUMENT instead when select_best_by
  // needs the metrics). The same on every rank (same examples).
  static absl::StatusOr<std::unique_ptr<TaskEvaluator>> Create(
      const contract::TrainSpec& spec, bool validates,
      const std::vector<Example>& validation_examples, const Model& model);

  // This rank's slice of the examples generated and scored, the counts
  // summed over the ranks of `dist` (every rank must call it).
  absl::StatusOr<contract::TaskMetrics> Evaluate(Model& model,
                                                 Distributed& dist);

  int64_t examples() const { return static_cast<int64_t>(prompts_.size()); }

 private:
  TaskEvaluator() = default;

  std::unique_ptr<TextGenerator> generator_;
  std::vector<GenerationPrompt> prompts_;  // each with `expected`
  contract::GenerationSpec generation_;    // greedy
  std::optional<contract::CompletionPattern> pattern_;
};

// The value select_best_by compares (higher is better): -eval_loss, or the
// evaluation's exact-match or pattern-match share. nullopt when the
// evaluation lacks it.
std::optional<double> SelectionScore(
    contract::SelectBestBy by, double eval_loss,
    const std::optional<contract::TaskMetrics>& task);

}  // namespace ftune::train

#endif  // FTUNE_WORKER_TRAIN_TASK_EVAL_H_
