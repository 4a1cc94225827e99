// PEFT adapter export and merging.
//
// WriteAdapterFiles writes into `dir` (which must exist):
//   adapter_config.json        PEFT LoraConfig fields (peft_type "LORA",
//                              task_type "CAUSAL_LM", r, lora_alpha, ...)
//   adapter_model.safetensors  base_model.model.<HF module path>.
//                              lora_{A,B}.weight, A [r, in], B [out, r]
//                              (Model::LoraParameters names them; e.g.
//                              ...model.layers.{i}.self_attn.q_proj...,
//                              ...transformer.h.{i}.attn.c_attn... for GPT-2)
// fan_in_fan_out in adapter_config.json comes from LoraOptions (true for a
// family with Conv1D weights, as PEFT writes it).
// PublishAdapter adds ftune_manifest.json (sha256 of each file, base model,
// datasets, spec, seed, metrics) and publishes the directory atomically with
// PublishDirectory (ALREADY_EXISTS if `output_dir` exists).
// MergeModel writes the base model with W + scale * B @ A folded in
// (safetensors + config.json), also published atomically.
//
// Not thread-safe with respect to the model.
#ifndef FTUNE_WORKER_TRAIN_ADAPTER_H_
#define FTUNE_WORKER_TRAIN_ADAPTER_H_

#include <torch/types.h>

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "common/safetensors.h"
#include "nlohmann/json.hpp"
#include "worker/train/model.h"

namespace ftune::train {

using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;

// adapter_config.json content.
nlohmann::json AdapterConfig(const LoraOptions& lora,
                             const std::string& base_model_name);

// Writes `tensors` (any float dtype; stored as is) to a safetensors file.
absl::Status WriteTensors(const std::string& path, const NamedTensors& tensors);
// Adds `t` (copied to the CPU) to `writer` under `name`; INVALID_ARGUMENT
// for a dtype safetensors cannot hold.
absl::Status AddTensor(SafetensorsWriter& writer, const std::string& name,
                       const torch::Tensor& t);
// Reads a safetensors file into CPU tensors (copies).
absl::StatusOr<NamedTensors> ReadTensors(const std::string& path);

absl::Status WriteAdapterFiles(const std::string& dir, const LoraOptions& lora,
                               const std::string& base_model_name,
                               const NamedTensors& lora_tensors);

absl::Status PublishAdapter(const std::string& output_dir,
                            const LoraOptions& lora,
                            const std::string& base_model_name,
                            const NamedTensors& lora_tensors,
                            nlohmann::json manifest_extra);

absl::Status MergeModel(Model& model, const std::string& output_dir);

// Applies the PEFT LoRA adapter in `dir` (adapter_config.json: r,
// lora_alpha, target_modules, fan_in_fan_out; adapter_model.safetensors)
// to `model`, unmerged (Model::ApplyLora, then the tensors by their PEFT
// names). NOT_FOUND for a missing file; INVALID_ARGUMENT naming the field,
// a module the family does not have, or a missing or mis-shaped tensor.
absl::Status LoadAdapter(Model& model, const std::string& dir);

}  // namespace ftune::train

#endif  // FTUNE_WORKER_TRAIN_ADAPTER_H_
