// The trainer contract, part 1: the spec `ftune-train --spec FILE` runs.
//
// Declared once, here. The worker agent fills a TrainSpec from the job's
// resolved JobSpec and writes it with TrainSpecToJson
// (worker/agent/spec_translation.cc); ftune-train reads it back with
// ParseTrainSpec; the scheduler checks API requests against the same ranges
// and resolves the same defaults (limits.h). JSON, one object, every key
// optional unless marked (docs/trainer.md#the-spec):
//
// {
//   "model_dir": "/storage/models/tinyllama",       required
//   "base_model_name": "tinyllama",                  default: model_dir
//   "train_data": "train.jsonl",                     required
//   "validation_data": "val.jsonl",
//   "data": {"format": "text"|"pretokenized", "chat_template": "auto",
//            "overlength": "truncate"|"drop", "validation_split": 0},
//   "method": "lora"|"qlora"|"full",                full: every weight
//                                                     trained, no "lora"
//   "objective": "sft"|"dpo"|"orpo",                 default sft
//   "preference": {"loss": "sigmoid"|"ipo", "beta": 0.1,
//                  "label_smoothing": 0, "orpo_lambda": 0.1},
//                                                     dpo/orpo only
//   "samples": {"eval_samples": 4, "max_new_tokens": 64, "temperature": 0,
//               "top_k": 0, "top_p": 1, "repetition_penalty": 1,
//               "seed": 0, "stop": []},             sft with validation
//   "task_metrics": {"eval_task_examples": 32, "max_new_tokens": 64,
//                    "eval_pattern": "", "select_best_by": "eval_loss"},
//                                                     sft with validation
//   "lora": {"rank": 16, "alpha": 32, "dropout": 0,
//            "target_modules": ["all-linear"]},
//   "quantization": {"quant_type": "nf4"|"fp4", "double_quant": true,
//                    "block_size": 64},                qlora only
//   "hyperparameters": {"epochs": 3 (may be fractional) | "max_steps": N,
//     "learning_rate": 2e-4, "lr_scheduler": "linear"|"cosine"|"constant",
//     "warmup_steps": 0 | "warmup_ratio": 0.03, "batch_size": 4,
//     "gradient_accumulation_steps": 1, "max_seq_length": 0 (= min(2048,
//     the model's)), "packing": false, "weight_decay": 0,
//     "max_grad_norm": 1.0, "seed": 42, "eval_every_steps": 0 (= every
//     epoch, or max_steps / 10), "checkpoint_every_steps": 500,
//     "early_stopping_patience": 0, "eval_on_start": false,
//     "gradient_checkpointing": true,
//     "oom_retry": true},
//   "output_dir": "/storage/jobs/t/j/adapter",       required; must not exist
//   "checkpoint_dir": "...",                          needed to checkpoint or
//   "resume_from": "" | "auto" | "<checkpoint dir>",  resume
//   "merge_output_dir": "",
//   "threads": 0 (= all cores),
//   "dtype": "fp32"|"bf16"|"fp16"|"fp64" (default: bf16 on CUDA, else fp32;
//            with qlora it is the compute dtype),
//   "device": "cpu"|"cuda"|"cuda:N",
//   "job_id": ""                                      lineage in a published
//                                                     full model's manifest
// }
//
// Unknown keys are errors (a typo must not be silently ignored). Errors are
// INVALID_ARGUMENT naming the field path: spec field "lora.rank": must be in
// [1, 256], got 0.
//
// Plain C++ (no gRPC, no LibTorch). Thread-compatible value types.
#ifndef FTUNE_COMMON_CONTRACT_TRAIN_SPEC_H_
#define FTUNE_COMMON_CONTRACT_TRAIN_SPEC_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/contract/generation.h"
#include "common/contract/limits.h"
#include "common/contract/task_metrics.h"

namespace ftune::contract {

// kFull: every base weight trained (worker/train/full_finetune.h).
enum class Method { kLora, kQlora, kFull };
enum class Dtype { kFp32, kBf16, kFp16, kFp64 };
enum class QuantType { kNf4, kFp4 };
enum class LrScheduler { kConstant, kLinear, kCosine };
enum class Overlength { kTruncate, kDrop };
enum class DataFormat { kText, kPretokenized };
// What the job optimises: supervised next-token loss on the targets, or a
// preference objective over (prompt, chosen, rejected) pairs
// (worker/train/objectives/preference.h).
enum class Objective { kSft, kDpo, kOrpo };
// DPO's loss: the DPO paper's log-sigmoid (with label smoothing:
// conservative DPO) or IPO's squared loss.
enum class PreferenceLossKind { kSigmoid, kIpo };

// The one spelling of each value ("qlora", "bf16", "nf4", "cosine",
// "truncate", "pretokenized").
const char* Name(Method v);
const char* Name(Dtype v);
const char* Name(QuantType v);
const char* Name(LrScheduler v);
const char* Name(Overlength v);
const char* Name(DataFormat v);
const char* Name(Objective v);
const char* Name(PreferenceLossKind v);
// The value spelled `name`; nullopt when there is none. Defined for the
// enums above.
template <typename E>
std::optional<E> FromName(absl::string_view name);
// Every spelling of E, quoted and joined: "\"lora\", \"qlora\"".
template <typename E>
std::string AllNames();

struct LoraSpec {
  int64_t rank = defaults::kLoraRank;
  double alpha = defaults::kLoraAlphaPerRank * defaults::kLoraRank;
  double dropout = defaults::kLoraDropout;
  // Module names of the model's family (PEFT's spelling), or "all-linear".
  std::vector<std::string> target_modules = {defaults::kAllLinear};
};

// QLoRA's 4-bit base weights (worker/train/nf4.h). The compute dtype is
// TrainSpec::dtype.
struct QuantizationSpec {
  QuantType quant_type = QuantType::kNf4;
  bool double_quant = defaults::kDoubleQuant;
  int64_t block_size = defaults::kQuantBlockSize;  // power of two
};

// How the data files are read (docs/trainer.md).
struct DataSpec {
  DataFormat format = DataFormat::kText;
  // "auto" (the model's template) or a name the text pipeline knows.
  std::string chat_template = "auto";
  Overlength overlength = Overlength::kTruncate;
  // Fraction of the training examples held out, [0, 0.5]; 0 = none. Not
  // with validation_data.
  double validation_split = 0;
};

// Settings of the preference objectives (Objective::kDpo, kOrpo).
struct PreferenceSpec {
  PreferenceLossKind loss = PreferenceLossKind::kSigmoid;  // dpo only
  double beta = defaults::kPreferenceBeta;                 // dpo
  // dpo with the sigmoid loss: the assumed share of flipped labels.
  double label_smoothing = defaults::kLabelSmoothing;
  double orpo_lambda = defaults::kOrpoLambda;  // orpo
};

// Sample completions of the first `eval_samples` validation prompts at
// step 0 (before any update) and at every evaluation, reported as
// "samples" progress lines (progress.h). Only for the sft objective on
// text data with a validation source; 0 = off.
struct SampleSpec {
  int32_t eval_samples = defaults::kEvalSamples;
  // Greedy by default; max_new_tokens defaults to kSampleMaxNewTokens.
  GenerationSpec generation = DefaultSampleGeneration();
  static GenerationSpec DefaultSampleGeneration() {
    GenerationSpec g;
    g.max_new_tokens = defaults::kSampleMaxNewTokens;
    return g;
  }
};

// Task metrics (task_metrics.h) at every evaluation: the greedy
// completions of the first `eval_task_examples` validation examples scored
// against their reference completions, and the share matching
// `eval_pattern` when there is one. Only for the sft objective on text data
// with a validation source; 0 = off. `select_best_by` chooses the
// evaluation whose adapter is published (and what early stopping watches).
struct TaskMetricsSpec {
  int32_t eval_task_examples = defaults::kEvalTaskExamples;
  int64_t max_new_tokens = defaults::kTaskMaxNewTokens;
  std::string eval_pattern;  // RE2 syntax; "" = none
  SelectBestBy select_best_by = SelectBestBy::kEvalLoss;
};

struct HyperParameters {
  // Passes over the data, may be fractional: ceil(epochs * steps per
  // epoch) steps. Ignored when max_steps > 0.
  double epochs = defaults::kEpochs;
  int64_t max_steps = 0;
  double learning_rate = defaults::kLearningRate;
  LrScheduler lr_scheduler = LrScheduler::kLinear;
  // warmup_steps > 0: that many steps; otherwise warmup_ratio of the total
  // (rounded up). At most one of them is non-zero.
  int64_t warmup_steps = 0;
  double warmup_ratio = defaults::kWarmupRatio;
  int64_t batch_size = defaults::kBatchSize;
  int64_t gradient_accumulation_steps = defaults::kGradientAccumulationSteps;
  // 0: DefaultMaxSeqLength(the model's max_position_embeddings).
  int64_t max_seq_length = 0;
  bool packing = defaults::kPacking;
  double weight_decay = defaults::kWeightDecay;
  double max_grad_norm = defaults::kMaxGradNorm;  // 0 = no clipping
  uint64_t seed = defaults::kStandaloneSeed;
  // With a validation source: evaluate every this many steps and at the
  // end; 0 = DefaultEvalEverySteps (every epoch, or max_steps / 10).
  int64_t eval_every_steps = 0;
  // With checkpoint_dir: a checkpoint every this many steps (0 = none).
  int64_t checkpoint_every_steps = defaults::kCheckpointEverySteps;
  // Evaluations without improvement before stopping; 0 = off.
  int64_t early_stopping_patience = defaults::kEarlyStoppingPatience;
  // Also evaluate at step 0, before any update (a baseline; never the
  // best). Needs a validation source.
  bool eval_on_start = false;
  // Recompute each decoder layer in backward instead of keeping its
  // activations: the same gradients, less memory, ~1/3 more compute.
  bool gradient_checkpointing = defaults::kGradientCheckpointing;
  // On out-of-memory in a step: halve the micro-batch (down to 1 row) and
  // run the step again with twice the accumulation (same rows, same
  // effective batch). Off: an out-of-memory step fails the run.
  bool oom_retry = defaults::kAutoReduceBatchOnOom;
};

struct TrainSpec {
  std::string model_dir;
  std::string base_model_name;  // "" = model_dir
  std::string train_data;
  std::string validation_data;
  DataSpec data;
  Method method = Method::kLora;
  // The job this run belongs to ("" outside the system): the lineage of a
  // published full model.
  std::string job_id;
  LoraSpec lora;
  QuantizationSpec quantization;  // used when method is kQlora
  Objective objective = Objective::kSft;
  PreferenceSpec preference;  // used when objective is kDpo or kOrpo
  SampleSpec samples;         // used with a validation source (sft, text data)
  TaskMetricsSpec task_metrics;  // likewise
  HyperParameters hp;
  std::string output_dir;
  std::string checkpoint_dir;
  std::string resume_from;  // "", "auto" or a checkpoint directory
  std::string merge_output_dir;
  int threads = 0;  // 0 = every core
  // Compute dtype (frozen weights, activations; LoRA weights and optimizer
  // state stay fp32). nullopt: DefaultDtype(device).
  std::optional<Dtype> dtype;
  std::string device = "cpu";
  // The JSON text it was parsed from (recorded in the adapter's manifest);
  // not part of TrainSpecToJson.
  std::string source_json;
};

// The chat templates the trainer implements by name (worker/train/text/
// chat_template.cc), besides "auto"; the scheduler accepts the same.
const std::vector<std::string>& ChatTemplateNames();

// "cpu", "cuda" or "cuda:N" (N >= 0): the device names the trainer takes.
bool IsDeviceName(absl::string_view name);
// bf16 on a CUDA device, fp32 on CPU.
Dtype DefaultDtype(absl::string_view device);
// spec.dtype, else DefaultDtype(spec.device).
Dtype ComputeDtype(const TrainSpec& spec);

// Every field of `spec` (dtype only when set), as ParseTrainSpec reads it.
std::string TrainSpecToJson(const TrainSpec& spec);
// Parses and checks `json_text`: types, ranges (limits.h), and the rules
// between fields. INVALID_ARGUMENT naming the field.
absl::StatusOr<TrainSpec> ParseTrainSpec(absl::string_view json_text);
// ParseTrainSpec of the file at `path`; errors name the path.
absl::StatusOr<TrainSpec> LoadTrainSpec(const std::string& path);

}  // namespace ftune::contract

#endif  // FTUNE_COMMON_CONTRACT_TRAIN_SPEC_H_
