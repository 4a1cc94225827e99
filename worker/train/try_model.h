// Try jobs in the trainer: `ftune-train --spec FILE` whose spec has a
// "generate" section (common/contract/try_spec.h) loads the model,
// applies the weights it names (a PEFT adapter directory, a checkpoint's
// LoRA weights, or none), generates a completion of every prompt with the
// same TextGenerator the sample completions and `ftune-train generate` use,
// and reports them as one "samples" progress line (step 0, in the prompts'
// order) followed by a "done" line. Nothing is trained or published.
//
// A prompt that, rendered with the chat template, leaves fewer than
// max_new_tokens tokens of the model's context is INVALID_ARGUMENT naming
// the prompt ("generate.prompts[2]") and the lengths, before anything is
// generated.
//
// Thread-compatible; LibTorch exceptions escape as they do from
// RunTraining (ftune-train's caller maps them to exit codes).
#ifndef FTUNE_WORKER_TRAIN_TRY_MODEL_H_
#define FTUNE_WORKER_TRAIN_TRY_MODEL_H_

#include "absl/status/status.h"
#include "common/contract/try_spec.h"
#include "worker/train/trainer.h"

namespace ftune::train {

// Emits through `hooks.emit`.
absl::Status RunTryModel(const contract::TrySpec& spec,
                         const TrainerHooks& hooks);

}  // namespace ftune::train

#endif  // FTUNE_WORKER_TRAIN_TRY_MODEL_H_
