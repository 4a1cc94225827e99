// The trainer contract for try jobs (JobService.TryModel): the spec
// `ftune-train --spec FILE` runs when it generates instead of training.
//
// The file is a training spec (train_spec.h, parsed by ParseTrainSpec with
// all its rules: model_dir, method, lora, quantization, dtype, device,
// threads, data.chat_template say how to load the model) plus one more
// member, "generate":
//
//   "generate": {"weights": "adapter"|"checkpoint"|"base",  default base
//                "weights_dir": "/storage/jobs/t/j/adapter", not with base
//                "prompts": [{"prompt": "..."} |
//                            {"messages": [{"role", "content"}, ...]}],
//                                                   1-32, required
//                "generation": {"max_new_tokens": 64, "temperature": 0,
//                               "top_k": 0, "top_p": 1,
//                               "repetition_penalty": 1, "seed": 0,
//                               "stop": []}}       limits.h ranges
//
// The trainer then trains nothing and writes nothing to storage: it loads
// the model, applies the weights (a PEFT adapter directory; a checkpoint's
// LoRA weights with the spec's "lora" shape; or none), prints one "samples"
// line (step 0, one sample per prompt, in order) and a "done" line
// (worker/train/try_model.h). The training members that do not apply
// (train_data, output_dir, hyperparameters) are still checked as usual.
//
// Errors are INVALID_ARGUMENT naming the field ("generate.prompts[2]").
// Plain C++ (no gRPC, no LibTorch). Thread-compatible value types.
#ifndef FTUNE_COMMON_CONTRACT_TRY_SPEC_H_
#define FTUNE_COMMON_CONTRACT_TRY_SPEC_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/contract/generation.h"
#include "common/contract/train_spec.h"

namespace ftune::contract {

struct GenerateSpec {
  enum class Weights { kAdapter, kCheckpoint, kBase };
  Weights weights = Weights::kBase;
  // A PEFT adapter directory (kAdapter) or a checkpoint directory
  // (kCheckpoint); "" for kBase.
  std::string weights_dir;
  // Each one JSON object in a dataset's prompt form: {"prompt": ...} or
  // {"messages": [...]} (worker/train/text/prompts.h).
  std::vector<std::string> prompts;
  // The sample completions' defaults (greedy, at most 64 new tokens).
  GenerationSpec generation = SampleSpec::DefaultSampleGeneration();
};

struct TrySpec {
  TrainSpec train;  // how to load the model
  GenerateSpec generate;
};

// "adapter", "checkpoint", "base".
const char* Name(GenerateSpec::Weights v);

// Whether `json_text` is a JSON object with a "generate" member (a try
// spec rather than a training spec).
bool IsTrySpec(absl::string_view json_text);
std::string TrySpecToJson(const TrySpec& spec);
absl::StatusOr<TrySpec> ParseTrySpec(absl::string_view json_text);

}  // namespace ftune::contract

#endif  // FTUNE_COMMON_CONTRACT_TRY_SPEC_H_
