// The trainer contract, part 2: what ftune-train reports while it runs.
//
// One JSON object a line on stdout ({"type": "metrics", "step": 12, ...}),
// written with ToJsonLine by the trainer (and the tests' stand-in trainer)
// and read back with ParseProgressLine by the worker agent
// (worker/agent/progress.cc), so every key is spelled once, here. The exit
// code that ends the process is part of the same contract
// (worker/train/exit_codes.h, which the agent includes too).
//
// Lines in the order a run prints them:
//   data        one per split: examples, rows, tokens, what was dropped
//   resumed     the checkpoint a resumed run continues from
//   start       the plan: total steps, rows, trainable parameters, threads
//   metrics     after every optimizer step
//   oom_retry   a step that ran out of memory is run again, smaller
//   eval        after an evaluation; best_* so far
//   samples     completions of validation prompts: at step 0 (before any
//               update) and after every evaluation
//   early_stop  no improvement for early_stopping_patience evaluations
//   checkpoint  a checkpoint directory was written (complete)
//   interrupted SIGTERM: the run stopped after writing a checkpoint
//   done        the adapter is published
//   error       why the run failed (before a non-zero exit)
// A type this version does not know parses as UnknownEvent, so an older
// agent passes a newer trainer's lines on rather than failing.
//
// Plain C++ (no gRPC, no LibTorch). Thread-compatible value types.
#ifndef FTUNE_COMMON_CONTRACT_PROGRESS_H_
#define FTUNE_COMMON_CONTRACT_PROGRESS_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace ftune::contract {

struct DataEvent {
  std::string split;  // "train" or "validation"
  int64_t examples = 0;
  int64_t rows = 0;
  int64_t tokens = 0;
  int64_t trained_tokens = 0;
  int64_t truncated = 0;
  int64_t dropped_overlength = 0;
  int64_t dropped_no_target = 0;
  // How the data was read (format, chat template, ...), string values.
  std::map<std::string, std::string> description;
};

struct ResumedEvent {
  int64_t step = 0;
  std::string path;
};

struct StartEvent {
  int64_t total_steps = 0;
  int64_t train_rows = 0;
  int64_t train_examples = 0;
  int64_t validation_rows = 0;
  int64_t trainable_parameters = 0;
  int64_t threads = 0;
};

// The statistics of a preference objective (DPO, IPO, ORPO) over a step's
// or an evaluation's pairs, means over the pairs (docs/hyperparameters.md
// "Preference optimisation"). Written as a nested "preference" object.
struct PreferenceMetrics {
  double rewards_chosen = 0;    // DPO/IPO: beta (log-ratio to reference)
  double rewards_rejected = 0;  // ORPO: lambda x average log-prob
  double reward_accuracy = 0;   // share of pairs with chosen > rejected
  double reward_margin = 0;     // rewards_chosen - rewards_rejected
  double logps_chosen = 0;      // policy log p of the answer, summed
  double logps_rejected = 0;
};

struct MetricsEvent {
  int64_t step = 0;  // optimizer steps done, >= 1
  int64_t total_steps = 0;
  double epoch = 0;  // passes over the training rows so far
  double loss = 0;   // mean over the step's target tokens
  double lr = 0;
  double grad_norm = 0;  // before clipping
  double tokens_per_s = 0;
  int64_t peak_memory_bytes = 0;  // RSS on CPU, the allocator's on CUDA
  // Preference objectives only; `loss` is then the objective's.
  std::optional<PreferenceMetrics> preference;
  // The memory planner's prediction (memory_plan.h) and the measured peak
  // of live tensor bytes over the steps so far (the CUDA allocator's
  // allocated bytes, or the CPU allocator's count): docs/memory.md. 0 when
  // not reported (an older trainer).
  int64_t predicted_peak_memory_bytes = 0;
  int64_t tensor_peak_memory_bytes = 0;
  // Padding positions / all positions of the step's micro-batches (each is
  // padded to its longest row), over every rank. 0 for lines that predate it.
  double padding_share = 0;
};

struct OomRetryEvent {
  int64_t step = 0;
  int64_t micro_batch_size = 0;
  int64_t gradient_accumulation_steps = 0;
  std::string message;
};

// Task metrics of an evaluation (task_metrics.h): shares over the
// `examples` validation examples whose greedy completions were scored.
// Written as a nested "task" object.
struct TaskMetrics {
  int64_t examples = 0;
  double exact_match = 0;
  double normalized_match = 0;
  double token_f1 = 0;
  std::optional<double> pattern_match;  // with an eval_pattern only
};

struct EvalEvent {
  int64_t step = 0;
  double eval_loss = 0;
  // The evaluation whose adapter is published so far (select_best_by):
  // its eval_loss and step.
  double best_eval_loss = 0;
  int64_t best_step = 0;
  // Preference objectives only (over the validation pairs).
  std::optional<PreferenceMetrics> preference;
  // With task metrics (sft on text data with a validation source).
  std::optional<TaskMetrics> task;
};

struct EarlyStopEvent {
  int64_t step = 0;
  int64_t best_step = 0;
};

struct CheckpointEvent {
  int64_t step = 0;
  std::string path;
};

struct InterruptedEvent {
  int64_t step = 0;
  std::string path;  // the checkpoint written; "" if none
};

struct DoneEvent {
  int64_t step = 0;
  std::string output_dir;
  double final_loss = 0;
  std::optional<double> best_eval_loss;  // with evaluation only
};

// The `reason` of an ErrorEvent, one per non-zero exit code.
inline constexpr char kReasonBadInput[] = "bad_input";
inline constexpr char kReasonOutOfMemory[] = "out_of_memory";
inline constexpr char kReasonDiverged[] = "diverged";
inline constexpr char kReasonRetryable[] = "retryable";
// A multi-rank run lost a peer rank (exit 6, retryable).
inline constexpr char kReasonPeerLost[] = "peer_lost";

struct ErrorEvent {
  std::string reason;
  std::string message;
};

// One validation prompt and what the model made of it. Each text is at most
// defaults::kSampleTextBytes bytes (longer ones are cut, ending with
// kTruncationMarker), so a samples line stays bounded.
struct SampleText {
  std::string prompt;  // GenerationPrompt::display (text/prompts.h)
  // The reference completion; nullopt when the example has none.
  std::optional<std::string> expected;
  std::string completion;
  std::string finish_reason;  // "end", "stop" or "length"
};

// Sample completions at `step` (0: the model before any update), one per
// validation prompt, in the validation data's order (docs/trainer.md).
struct SamplesEvent {
  int64_t step = 0;
  std::vector<SampleText> samples;
};

// A line whose type this version does not know.
struct UnknownEvent {
  std::string type;
};

using ProgressEvent =
    std::variant<DataEvent, ResumedEvent, StartEvent, MetricsEvent,
                 OomRetryEvent, EvalEvent, EarlyStopEvent, CheckpointEvent,
                 InterruptedEvent, DoneEvent, ErrorEvent, SamplesEvent,
                 UnknownEvent>;

// The "type" of `event` ("metrics", ...).
const char* TypeName(const ProgressEvent& event);

// One JSON object, without the newline. Non-finite numbers (a diverged
// loss) are written as null and read back as NaN.
std::string ToJsonLine(const ProgressEvent& event);

// INVALID_ARGUMENT when `line` is not a JSON object with a string "type", or
// a known type's field has the wrong JSON type; missing fields keep their
// defaults.
absl::StatusOr<ProgressEvent> ParseProgressLine(absl::string_view line);

}  // namespace ftune::contract

#endif  // FTUNE_COMMON_CONTRACT_PROGRESS_H_
