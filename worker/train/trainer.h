// The training loop: one spec in, one published PEFT adapter out.
//
//   RunTraining(spec, data_source, hooks)
//     load model + LoRA -> load data -> (resume) -> for each step:
//     micro-batches -> loss/backward -> clip -> AdamW -> metrics ->
//     eval / best / early stop -> checkpoint -> SIGTERM check
//     -> publish adapter (+ manifest, + optional merged model).
//
// Errors (absl::Status; ExitCodeFor() maps them to exit_codes.h):
//   INVALID_ARGUMENT / NOT_FOUND / FAILED_PRECONDITION / ALREADY_EXISTS:
//       bad spec, model, data or output location (not retryable).
//   RESOURCE_EXHAUSTED: out of memory.
//   DATA_LOSS: the loss or gradient norm became NaN/Inf (diverged).
//   UNAVAILABLE: a multi-rank run lost a peer (kExitPeerLost, retryable).
//   anything else: retryable.
// An interrupted run (hooks.stop set) writes a checkpoint and returns OK with
// result.interrupted = true.
//
// Not thread-safe: one RunTraining per process (it sets LibTorch's global
// thread count and RNG).
#ifndef FTUNE_WORKER_TRAIN_TRAINER_H_
#define FTUNE_WORKER_TRAIN_TRAINER_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/contract/progress.h"
#include "common/contract/train_spec.h"
#include "nlohmann/json.hpp"
#include "worker/train/data.h"

namespace ftune::train {

// The spec ftune-train runs is the contract's, read and written by the same
// code on both sides of the process boundary.
using contract::TrainSpec;

// Learning rate at optimizer step `step` (0-based): linear warmup from 0 over
// `warmup` steps, then constant, linear decay to 0, or half-cosine to 0 at
// `total` steps (Hugging Face's schedules).
double LearningRate(contract::LrScheduler schedule, double base_lr,
                    int64_t warmup, int64_t total, int64_t step);

struct TrainerHooks {
  // Progress events (common/contract/progress.h); ftune-train prints each
  // as one JSON line.
  std::function<void(const contract::ProgressEvent&)> emit;
  // Polled after every optimizer step; when true, checkpoint and return.
  const std::atomic<bool>* stop = nullptr;
  // Tests: behave as if `stop` became true after this many steps (0 = off).
  int64_t stop_after_steps = 0;
  // Tests (fault injection): called before each training micro-batch's
  // forward pass with its number of rows; may throw (e.g. an out-of-memory
  // c10::Error) as the forward pass would.
  std::function<void(int64_t rows)> before_micro_batch;
};

struct TrainResult {
  int64_t steps = 0;  // optimizer steps done, including resumed ones
  int64_t total_steps = 0;
  std::vector<double> losses;  // per step run in THIS process
  std::vector<int64_t> loss_steps;
  double final_loss = 0;
  double best_eval_loss = -1;  // -1 without validation
  int64_t best_step = -1;
  bool interrupted = false;
  bool early_stopped = false;
  std::string last_checkpoint;
};

absl::StatusOr<TrainResult> RunTraining(const TrainSpec& spec, DataSource& data,
                                        const TrainerHooks& hooks);

// The same, as one rank of `dist`'s process group (distributed.h): this
// rank trains on its slice of every global batch; only rank 0 emits
// progress, checkpoints and publishes. UNAVAILABLE when a peer is lost.
class Distributed;
absl::StatusOr<TrainResult> RunTraining(const TrainSpec& spec, DataSource& data,
                                        const TrainerHooks& hooks,
                                        Distributed& dist);

// DATA_LOSS is the trainer's code for a diverged run, UNAVAILABLE for a
// lost peer rank.
int ExitCodeFor(const absl::Status& status);

}  // namespace ftune::train

#endif  // FTUNE_WORKER_TRAIN_TRAINER_H_
