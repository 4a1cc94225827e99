// Full-parameter fine-tuning (spec "method": "full"): every base weight is
// trained, there are no LoRA modules, and the result is a whole Hugging Face
// model directory, not an adapter.
//
// The training loop (trainer.cc) is the one LoRA uses; what differs is here
// and in the pieces it calls:
//   - the trainable tensors are Model::BaseParameters() (a tied embedding
//     once, so it stays tied), made trainable by Model::EnableFullTraining;
//   - AdamW keeps fp32 masters of bf16/fp16 weights (optimizer.h);
//   - checkpoints hold every weight and the optimizer state
//     (checkpoint.h; bytes per parameter in docs/trainer.md);
//   - PublishFullModel writes the output directory:
//
// <output_dir>/
//   config.json                     the base's, byte for byte
//   model.safetensors               every weight, HF names and layout, in
//                                   the compute dtype; or, above
//                                   `shard_bytes` of tensor data,
//   model-0000i-of-0000n.safetensors  + model.safetensors.index.json
//   tokenizer files, generation_config.json   copied from the base when
//                                   it has them (kCopiedBaseFiles)
//   ftune_manifest.json             format "ftune-model", sha256 of every
//                                   other file, lineage (base model, job),
//                                   datasets, spec, seed, metrics
// published atomically (PublishDirectory): a reader sees all of it or none.
//
// Thread-compatible free functions.
#ifndef FTUNE_WORKER_TRAIN_FULL_FINETUNE_H_
#define FTUNE_WORKER_TRAIN_FULL_FINETUNE_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "nlohmann/json.hpp"
#include "worker/train/model.h"

namespace ftune::train {

// The shard size of a published full model: tensor data above it is split
// into model-0000i-of-0000n.safetensors files of at most this much each (a
// tensor larger than it gets a shard of its own).
inline constexpr int64_t kDefaultShardBytes = int64_t{2} << 30;  // 2 GiB

// Files of the base model directory copied into a published full model
// when present (tokenizer and generation settings; the weights are new).
inline constexpr const char* kCopiedBaseFiles[] = {"tokenizer.json",
                                                   "tokenizer_config.json",
                                                   "special_tokens_map.json",
                                                   "tokenizer.model",
                                                   "vocab.json",
                                                   "merges.txt",
                                                   "added_tokens.json",
                                                   "chat_template.jinja",
                                                   "generation_config.json"};

// Writes `model`'s weights as a complete HF model directory at `output_dir`
// (ALREADY_EXISTS if it exists), with config.json and kCopiedBaseFiles from
// `base_dir`. `manifest_extra` becomes ftune_manifest.json with "format",
// "format_version" and "files" added.
absl::Status PublishFullModel(const std::string& base_dir,
                              const std::string& output_dir, Model& model,
                              nlohmann::json manifest_extra,
                              int64_t shard_bytes = kDefaultShardBytes);

}  // namespace ftune::train

#endif  // FTUNE_WORKER_TRAIN_FULL_FINETUNE_H_
