// Spec translation: an AssignJobCommand (JobSpec + storage-relative paths)
// becomes the JSON spec that `ftune-train --spec FILE` runs (docs/trainer.md).
//
// Every JobSpec field either maps onto a trainer field, is carried out by the
// agent itself (checkpoints_to_keep, log_every_steps,
// auto_reduce_batch_on_oom), is a scheduler concern (priority, labels,
// max_restarts, suffix, resources other than gpus/cpu_threads), or makes the
// translation fail with INVALID_ARGUMENT naming the field: the attempt then
// fails as bad input instead of training something the tenant did not ask for.
// Settings that change only memory use, not results (gradient_checkpointing),
// become a warning the agent reports as a WARNING event.
//
// Thread-safety: pure functions.
#ifndef FTUNE_WORKER_AGENT_SPEC_TRANSLATION_H_
#define FTUNE_WORKER_AGENT_SPEC_TRANSLATION_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "ftune/v1/worker.pb.h"
#include "nlohmann/json.hpp"

namespace ftune::agent {

struct TrainerSpec {
  // The ftune-train spec: every path absolute under the storage root.
  nlohmann::json json;
  // Absolute paths (also in `json`).
  std::string adapter_dir;
  std::string checkpoint_dir;
  std::string log_path;
  // Done by the agent, not the trainer.
  int64_t log_every_steps = 1;
  int32_t checkpoints_to_keep = 2;
  bool auto_reduce_batch_on_oom = true;
  // Settings ftune-train does not implement that cannot change the result;
  // reported to the tenant as WARNING events.
  std::vector<std::string> warnings;
};

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
