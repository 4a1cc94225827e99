// The scheduler's config file (--config, JSON) and the base models it
// registers. Format (docs/operations.md):
//
//   {"models": [{"name": "llama-3.2-1b",
//                "directory": "models/llama-3.2-1b",      // optional
//                "supported_methods": ["lora", "qlora"]}]} // optional
//
// `directory` is relative to the storage root (default "models/<name>") and
// must hold the model's config.json, which the trainer's family code
// (worker/train/families) must accept. Everything else a Model shows
// (architecture, family, LoRA module names, sizes, chat template, parameter
// count) is read from the directory at start-up.
//
// Thread-safe: pure functions over the file system.
#ifndef FTUNE_SERVER_MODEL_REGISTRY_H_
#define FTUNE_SERVER_MODEL_REGISTRY_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/core/types.h"

namespace ftune::server {

struct SchedulerConfig {
  std::vector<core::Model> models;
};

// Parses the config file's text (`config_path` names it in errors) without
// touching the file system: models with name, directory and
// supported_methods (metadata["supported_methods"]). INVALID_ARGUMENT as
// below, never an exception, whatever the bytes.
absl::StatusOr<SchedulerConfig> ParseSchedulerConfig(
    absl::string_view text, const std::string& config_path);

// Reads and parses `config_path` and inspects every model directory under
// `storage_root`. INVALID_ARGUMENT naming the file, the model and the
// problem (bad JSON, unknown key, bad name, duplicate name, missing
// directory or config.json, an architecture or config option the trainer
// does not support: the field and the supported values).
absl::StatusOr<SchedulerConfig> LoadSchedulerConfig(
    const std::string& config_path, const std::string& storage_root);

// Reads one model directory (absolute `path`) into `model.metadata`
// (keys in server/engine/convert.h). INVALID_ARGUMENT as above.
absl::Status InspectModelDirectory(const std::string& path, core::Model& model);

// The parts of InspectModelDirectory that read untrusted bytes, each total
// (no exception, no overflow) so a fuzzer can drive them:
// config.json's architecture, family, LoRA module names and sizes into
// `model.metadata`, parsed by the trainer's family code (INVALID_ARGUMENT,
// prefixed with `label`, if not a JSON object or not a model the trainer
// runs: the field and the supported values);
absl::Status ReadModelConfigJson(absl::string_view text, core::Model& model,
                                 absl::string_view label = "config.json");
// the chat template a tokenizer_config.json names ("" if none recognised);
std::string ChatTemplateOfTokenizerConfig(absl::string_view text);
// the parameter count of a safetensors header's JSON (-1 if malformed).
int64_t SafetensorsHeaderParameters(absl::string_view header);

// "chatml", "llama3", "gemma", "phi3", "llama2", "alpaca" or "" from a
// tokenizer_config.json chat_template string.
std::string DetectChatTemplate(const std::string& jinja);

}  // namespace ftune::server

#endif  // FTUNE_SERVER_MODEL_REGISTRY_H_
