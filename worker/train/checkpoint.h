// Checkpoints of a training run: everything a resumed run needs to continue
// bit for bit.
//
// <checkpoint_dir>/step-<8 digits>/
//   trainer_state.json        {"format","version","step","consumed_rows",...}
//   adapter_model.safetensors LoRA weights (PEFT names)
//   optimizer.safetensors     AdamW moments + "rng.cpu_state"
//   best_adapter.safetensors  best-eval LoRA weights, when there is one
// A full fine-tune's (`full`) holds model.safetensors (every base weight by
// its HF name, in the compute dtype) and best_model.safetensors instead,
// and its optimizer.safetensors also the fp32 masters of half-precision
// weights (optimizer.h): docs/trainer.md gives the bytes per parameter.
// Each is staged in a temp dir and published with PublishDirectory, so a
// reader sees a whole checkpoint or none.
//
// Thread-compatible free functions; they touch LibTorch's global CPU RNG
// (saved, and restored on load).
#ifndef FTUNE_WORKER_TRAIN_CHECKPOINT_H_
#define FTUNE_WORKER_TRAIN_CHECKPOINT_H_

#include <cstdint>
#include <limits>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/contract/train_spec.h"
#include "worker/train/adapter.h"
#include "worker/train/optimizer.h"

namespace ftune::train {

// The loop's position, saved in trainer_state.json.
struct LoopState {
  int64_t step = 0;
  int64_t consumed_rows = 0;
  // Which rows consumed_rows counts in: a resume must see the same data.
  std::string train_sha256;
  int64_t train_rows = 0;
  double best_eval_loss = std::numeric_limits<double>::infinity();
  int64_t best_step = -1;
  // select_best_by's value at best_step when it is a task metric (higher
  // is better; task_eval.h SelectionScore); -inf before any.
  double best_score = -std::numeric_limits<double>::infinity();
  int64_t evals_without_improvement = 0;
  // Ranks of the run that wrote it (1 for checkpoints from before it was
  // recorded). Any world size resumes it: the global batch and the data
  // position do not depend on it (docs/distributed.md).
  int64_t world_size = 1;
};

// Detached copies of `params`.
NamedTensors Snapshot(const NamedTensors& params);
// Copies `values` into `params` by name (in place, no grad).
// INVALID_ARGUMENT, prefixed by `what`, names a missing or mis-shaped tensor.
absl::Status CopyInto(NamedTensors& params, const NamedTensors& values,
                      const std::string& what);

// Writes <checkpoint_dir>/step-<st.step> (replacing one a previous attempt
// published) and returns its path. `best` may be null.
absl::StatusOr<std::string> SaveCheckpoint(
    const std::string& checkpoint_dir, const LoopState& st,
    const NamedTensors& params, const AdamW& opt, const NamedTensors* best,
    const std::string& spec_sha, bool full = false);

// Resolves resume_from: a step directory, a directory of step-* dirs (the
// latest wins), or "auto" (latest in checkpoint_dir, or none). Returns ""
// when there is nothing to resume; NOT_FOUND when a named one is missing.
absl::StatusOr<std::string> ResolveResume(const contract::TrainSpec& spec);

// Restores `st`, `params`, the optimizer, the CPU RNG and (when the
// checkpoint has one) the best adapter from `dir`. INVALID_ARGUMENT for a
// directory that is not a checkpoint of this version or does not fit.
absl::Status LoadCheckpoint(const std::string& dir, LoopState& st,
                            NamedTensors& params, AdamW& opt,
                            NamedTensors* best, bool* has_best,
                            bool full = false);

}  // namespace ftune::train

#endif  // FTUNE_WORKER_TRAIN_CHECKPOINT_H_
