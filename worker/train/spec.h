// The training spec: what `ftune-train --spec FILE` runs. JSON, one object:
//
// {
//   "model_dir": "/storage/models/tinyllama",      required
//   "base_model_name": "tinyllama",                 default: model_dir
//   "train_data": "train.jsonl",                    required
//   "validation_data": "val.jsonl",                 optional
//   "data": {"format": "text"|"pretokenized",       default "text"
//            "chat_template": "auto"|"chatml"|"llama3"|"llama2"|"alpaca",
//            "overlength": "truncate"|"drop",       default "truncate"
//            "validation_split": 0.0},              [0, 1); text only, and
//                                                   not with validation_data
//   "method": "lora"|"qlora",                       default "lora"
//   "lora": {"rank": 8, "alpha": 16, "dropout": 0.05,
//            "target_modules": ["q_proj", "v_proj"] | ["all-linear"]},
//   "quantization": {"quant_type": "nf4"|"fp4",     qlora only; default nf4
//                    "double_quant": true, "block_size": 64,
//                    "compute_dtype": "fp32"|"bf16"},  fp16: GPU only
//                    (compute_dtype is the model dtype; "dtype" may be
//                    omitted or must agree)
//   "hyperparameters": {
//     "epochs": 1, "max_steps": 0,        max_steps > 0 overrides epochs
//     "learning_rate": 2e-4, "lr_scheduler": "cosine"|"linear"|"constant",
//     "warmup_steps": 0, "batch_size": 4, "gradient_accumulation_steps": 1,
//     "max_seq_length": 512, "packing": true, "weight_decay": 0.0,
//     "max_grad_norm": 1.0 (0 = no clipping), "seed": 42,
//     "eval_every_steps": 0, "checkpoint_every_steps": 0,
//     "early_stopping_patience": 0 (0 = off; counts evals without improvement)
//     "gradient_checkpointing": false, "oom_retry": false
//   },
//   "output_dir": "/storage/jobs/t/j/adapter",     required; must not exist
//   "checkpoint_dir": "/storage/jobs/t/j/checkpoints",  required if
//                                                   checkpointing or resuming
//   "resume_from": "" | "auto" | "<checkpoint dir>",
//   "merge_output_dir": "",                         optional merged model
//   "threads": 0,                                   0 = all cores
//   "dtype": "float32"|"float64"|"bfloat16",  "device": "cpu"
// }
//
// Unknown fields are errors (typos must not be silently ignored). Errors are
// INVALID_ARGUMENT naming the field path ("hyperparameters.batch_size").
// Plain C++; thread-compatible value type.
#ifndef FTUNE_WORKER_TRAIN_SPEC_H_
#define FTUNE_WORKER_TRAIN_SPEC_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace ftune::train {

struct LoraSpec {
  int64_t rank = 8;
  double alpha = 16;
  double dropout = 0.0;
  std::vector<std::string> target_modules = {"q_proj", "v_proj"};
};

// How the data files are read (docs/trainer.md).
struct DataSpec {
  std::string format = "text";  // "text" (JSONL examples) or "pretokenized"
  std::string chat_template = "auto";
  std::string overlength = "truncate";  // or "drop"
  double validation_split = 0;
};

struct HyperParameters {
  int64_t epochs = 1;
  int64_t max_steps = 0;
  double learning_rate = 2e-4;
  std::string lr_scheduler = "cosine";
  int64_t warmup_steps = 0;
  // Warmup as a fraction of the total optimizer steps, resolved once the
  // data is packed (epochs jobs); exclusive with warmup_steps.
  double warmup_ratio = 0;
  int64_t batch_size = 4;
  int64_t gradient_accumulation_steps = 1;
  int64_t max_seq_length = 512;
  bool packing = true;
  double weight_decay = 0.0;
  double max_grad_norm = 1.0;
  uint64_t seed = 42;
  int64_t eval_every_steps = 0;
  // Evaluate at the end of every epoch (when eval_every_steps is 0).
  bool eval_every_epoch = false;
  int64_t checkpoint_every_steps = 0;
  int64_t early_stopping_patience = 0;
  // Recompute each decoder layer in backward instead of keeping its
  // activations (same gradients, less memory, ~1/3 more compute).
  bool gradient_checkpointing = false;
  // On out-of-memory in a step: halve the micro-batch (down to 1 row) and
  // run the step again with twice the accumulation, so the effective batch
  // (batch_size * gradient_accumulation_steps rows) is unchanged. Off: an
  // out-of-memory step fails the run (exit code 4).
  bool oom_retry = false;
};

// QLoRA's 4-bit base weights (worker/train/nf4.h; proto QuantizationConfig).
struct QuantizationSpec {
  std::string quant_type = "nf4";  // or "fp4"
  bool double_quant = true;
  int64_t block_size = 64;             // power of two in [32, 4096]
  std::string compute_dtype = "fp32";  // "fp32" or "bf16" on CPU
};

struct TrainSpec {
  std::string model_dir;
  std::string base_model_name;
  std::string train_data;
  std::string validation_data;
  DataSpec data;
  std::string method = "lora";
  LoraSpec lora;
  QuantizationSpec quantization;  // used when method == "qlora"
  HyperParameters hp;
  std::string output_dir;
  std::string checkpoint_dir;
  std::string resume_from;
  std::string merge_output_dir;
  int threads = 0;
  std::string dtype = "float32";
  std::string device = "cpu";
  // The JSON text it was parsed from (recorded in the manifest).
  std::string source_json;
};

absl::StatusOr<TrainSpec> ParseTrainSpec(absl::string_view json_text);
// "cpu", "cuda" or "cuda:N" (N >= 0): the device names the trainer takes.
bool IsDeviceName(const std::string& name);

absl::StatusOr<TrainSpec> LoadTrainSpec(const std::string& path);

}  // namespace ftune::train

#endif  // FTUNE_WORKER_TRAIN_SPEC_H_
