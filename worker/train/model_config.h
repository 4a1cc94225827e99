// Hugging Face `config.json` of the decoder architectures the trainer runs:
// LlamaForCausalLM (Llama 2/3, TinyLlama, SmolLM), MistralForCausalLM without
// a sliding window, Qwen2ForCausalLM (q/k/v bias). Anything else is refused
// by name. Plain C++ (no LibTorch). Thread-compatible value types.
#ifndef FTUNE_WORKER_TRAIN_MODEL_CONFIG_H_
#define FTUNE_WORKER_TRAIN_MODEL_CONFIG_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace ftune::train {

struct RopeScaling {
  // "" (none) or "llama3".
  std::string type;
  double factor = 1.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 8192;
};

struct ModelConfig {
  std::string architecture = "LlamaForCausalLM";
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;
  int64_t head_dim = 0;  // hidden_size / num_attention_heads unless given
  int64_t max_position_embeddings = 2048;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  bool tie_word_embeddings = false;
  bool qkv_bias = false;  // Qwen2; Llama's attention_bias sets it with o_bias
  bool o_bias = false;
  // Serialises back to HF form (for merged models and bench configs).
  std::string ToJson() const;
};

// Parses and validates `text` (the contents of config.json). `label` names
// the source in errors. INVALID_ARGUMENT names the field and the problem;
// an unsupported architecture is named.
absl::StatusOr<ModelConfig> ParseModelConfig(absl::string_view text,
                                             absl::string_view label);
absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& model_dir);

}  // namespace ftune::train

#endif  // FTUNE_WORKER_TRAIN_MODEL_CONFIG_H_
