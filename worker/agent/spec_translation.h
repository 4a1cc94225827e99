// Spec translation: an AssignJobCommand (the resolved JobSpec and
// storage-relative paths) becomes the contract::TrainSpec that
// `ftune-train --spec FILE` runs (common/contract/train_spec.h).
//
// Every JobSpec field either maps onto a trainer field, is carried out by the
// agent itself (checkpoints_to_keep, log_every_steps,
// auto_reduce_batch_on_oom's restart), is a scheduler concern (priority,
// labels, max_restarts, suffix, resources.memory_bytes, resources.gpu_type;
// SchedulerOnlyFields()), or makes the translation fail with INVALID_ARGUMENT
// naming the field: the attempt then fails as bad input instead of training
// something the tenant did not ask for. Unset fields take the defaults of
// common/contract/limits.h (the scheduler has normally resolved them).
//
// Thread-safety: pure functions.
#ifndef FTUNE_WORKER_AGENT_SPEC_TRANSLATION_H_
#define FTUNE_WORKER_AGENT_SPEC_TRANSLATION_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/contract/train_spec.h"
#include "common/contract/try_spec.h"
#include "ftune/v1/worker.pb.h"

namespace ftune::agent {

struct TrainerSpec {
  // What ftune-train runs: every path absolute under the storage root.
  contract::TrainSpec spec;
  // Set for a try job (JobSpec.try_model): ftune-train runs {spec,
  // generate} (common/contract/try_spec.h), generating instead of training.
  std::optional<contract::GenerateSpec> generate;
  // Absolute paths (the first two also in `spec`).
  std::string adapter_dir;
  std::string checkpoint_dir;
  std::string log_path;
  // Done by the agent, not the trainer.
  int64_t log_every_steps = contract::defaults::kLogEverySteps;
  int32_t checkpoints_to_keep = contract::defaults::kCheckpointsToKeep;
  bool auto_reduce_batch_on_oom = contract::defaults::kAutoReduceBatchOnOom;
  // Trainer processes (data-parallel ranks) the agent starts, each with
  // `spec` (contract::JobRanks). With N > 1 the JobSpec's batch_size and
  // gradient_accumulation_steps are per rank, as on any data-parallel
  // platform: the trainer's step (one global batch) takes N times the
  // accumulation, and its threads are cpu_threads / N.
  int32_t ranks = 1;
};

// JobSpec fields (paths from JobSpec, as in FieldError) that only the
// scheduler acts on; every other field reaches the trainer or the agent.
const std::vector<std::string>& SchedulerOnlyFields();
// JobSpec fields the agent carries out itself rather than the trainer.
const std::vector<std::string>& AgentFields();

// `path` must be relative, without "." or ".." components; returns
// root + "/" + path. INVALID_ARGUMENT naming `field` otherwise.
absl::StatusOr<std::string> ResolveStoragePath(absl::string_view storage_root,
                                               absl::string_view path,
                                               absl::string_view field);

// INVALID_ARGUMENT naming the field ("spec.hyperparameters.epochs", or
// "checkpoint_dir" for a bad path) when the command asks for something
// ftune-train cannot do.
absl::StatusOr<TrainerSpec> TranslateAssignment(
    const v1::AssignJobCommand& command, absl::string_view storage_root);

}  // namespace ftune::agent

#endif  // FTUNE_WORKER_AGENT_SPEC_TRANSLATION_H_
