// The decoder architectures the trainer runs, as data. A Hugging Face
// config.json is parsed by its family (one file per family in this
// directory: llama.cc, phi3.cc, gpt2.cc, gemma2.cc, qwen3.cc) into a
// ModelConfig: the sizes, plus a declarative description of the block
// (norm kind, activation, positional scheme, fused projections, soft-caps,
// sliding windows, ...) and the HF names of every weight. The LibTorch
// decoder (worker/train/model.h) composes its shared pieces from that
// description; the scheduler (which never links LibTorch) validates a
// model's config.json and a job's LoRA target modules with the same code.
//
// Plain C++ (no LibTorch, no gRPC). Thread-compatible value types; the
// functions are pure.
#ifndef FTUNE_WORKER_TRAIN_FAMILIES_MODEL_CONFIG_H_
#define FTUNE_WORKER_TRAIN_FAMILIES_MODEL_CONFIG_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace ftune::train {

enum class NormKind {
  kRms,         // x / rms(x) * w (Llama: normalised in fp32, cast, then * w)
  kRmsOnePlus,  // x / rms(x) * (1 + w), all in fp32, then cast (Gemma)
  kLayerNorm,   // (x - mean) / std * w + b (GPT-2)
};

enum class Activation {
  kSilu,      // SwiGLU with a gated MLP
  kGeluTanh,  // GELU, tanh approximation (gelu_new, gelu_pytorch_tanh)
  kGelu,      // GELU, exact (erf)
};

enum class PositionKind {
  kRope,     // rotary embeddings on q and k (rotate-half layout)
  kLearned,  // absolute position embeddings added to the token embeddings
};

// What a projection does in the decoder block. Fused roles carry several
// outputs side by side: kQkv = [q | k | v], kGateUp = [gate | up].
enum class ProjRole { kQ, kK, kV, kQkv, kO, kGate, kUp, kGateUp, kDown };

// One linear module of a decoder layer, as HF stores it and PEFT names it.
struct LinearModule {
  ProjRole role = ProjRole::kQ;
  std::string name;  // PEFT module name ("q_proj", "qkv_proj", "c_attn")
  std::string path;  // below the layer prefix ("self_attn.q_proj")
  bool bias = false;
  // Stored as [in, out] (GPT-2's Conv1D); PEFT's fan_in_fan_out.
  bool conv1d = false;
};

struct RopeScaling {
  // "" (none), "llama3" or "longrope".
  std::string type;
  double factor = 1.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 8192;
  // longrope: per-frequency divisors for sequences up to / beyond
  // original_max_position_embeddings, and the cos/sin scale.
  std::vector<double> short_factor, long_factor;
  double attention_factor = 1.0;
};

// The HF names of a model's non-projection weights. Per-layer names are
// below "<layer_prefix><i>."; "" = the family has no such weight. Norm
// names get ".weight" (and ".bias" for LayerNorm).
struct WeightNames {
  std::string embed = "model.embed_tokens.weight";
  std::string positions;  // learned position embeddings
  std::string final_norm = "model.norm";
  std::string lm_head = "lm_head.weight";
  std::string layer_prefix = "model.layers.";
  std::string attn_norm = "input_layernorm";
  std::string mlp_norm = "post_attention_layernorm";
  std::string post_attn_norm, post_mlp_norm;  // Gemma 2's sandwich norms
  std::string q_norm, k_norm;                 // per-head norms (Qwen3)
  // A prefix that checkpoints may leave out (GPT-2's "transformer." is
  // absent from files saved from the bare GPT2Model).
  std::string optional_prefix;
};

// How the shared decoder block is put together. Defaults are Llama's.
struct Architecture {
  NormKind norm = NormKind::kRms;
  bool sandwich_norms = false;  // a norm after attention and after the MLP
  Activation activation = Activation::kSilu;
  bool gated_mlp = true;  // down(act(gate) * up); else down(act(up))
  PositionKind positions = PositionKind::kRope;
  int64_t rotary_dim = 0;  // dims of each head that RoPE rotates (0: all)
  bool qk_norm = false;    // RMSNorm over head_dim on q and k, before RoPE
  bool scale_embeddings = false;  // embeddings * sqrt(hidden_size)
  double attn_softcap = 0;        // scores = c * tanh(scores / c); 0 = off
  double final_softcap = 0;       // the same on the logits
  double query_scale = 0;         // softmax scale; 0 = 1 / sqrt(head_dim)
  // Per layer: how many tokens (itself included) a query sees; 0 = all
  // earlier tokens. Empty = 0 for every layer.
  std::vector<int64_t> sliding_windows;
  // The layer's projections, in the order LoRA tensors are listed.
  std::vector<LinearModule> modules = LlamaModules(false, false);
  WeightNames names;

  // q, k, v, o, gate, up, down as Llama/Mistral/Qwen2/Gemma 2/Qwen3 name
  // them, with biases on q/k/v and on o as given.
  static std::vector<LinearModule> LlamaModules(bool qkv_bias, bool o_bias);
};

struct ModelConfig {
  std::string architecture = "LlamaForCausalLM";  // config.json's
  std::string family = "llama";                   // the file that parsed it
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;
  int64_t head_dim = 0;  // hidden_size / num_attention_heads unless given
  int64_t max_position_embeddings = 2048;
  double rms_norm_eps = 1e-6;  // the epsilon of every norm (also LayerNorm)
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  bool tie_word_embeddings = false;
  bool qkv_bias = false;  // Qwen2; Llama's attention_bias sets it with o_bias
  bool o_bias = false;
  Architecture arch;
  // The config.json text it was parsed from ("" when built in code).
  std::string source_json;

  // The PEFT names LoRA can target, each once, in the order "all-linear"
  // expands to: every linear module of a layer (PEFT leaves the output
  // head out of all-linear).
  std::vector<std::string> LoraModuleNames() const;
  // True when PEFT's adapter_config.json must say fan_in_fan_out (the
  // family stores its projections as Conv1D).
  bool fan_in_fan_out() const;
  // The sliding window of layer `i` (0 = none).
  int64_t sliding_window(int64_t i) const;
  // HF config.json text: for the Llama family synthesised from the fields
  // (merged models, bench configs), for the others source_json.
  std::string ToJson() const;
};

// Parses and validates `text` (the contents of config.json) with the family
// of its "architectures" entry. `label` names the source in errors.
// INVALID_ARGUMENT names the field, the problem and, for an unsupported
// architecture or option, the supported values.
absl::StatusOr<ModelConfig> ParseModelConfig(absl::string_view text,
                                             absl::string_view label);
absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& model_dir);

// The architectures ("LlamaForCausalLM", ...) the trainer runs, in order.
std::vector<std::string> SupportedArchitectures();

// Expands "all-linear" to `known` and checks `names` against it; the result
// is in `known`'s order. INVALID_ARGUMENT names an unknown or duplicate
// entry and lists the known names.
absl::StatusOr<std::vector<std::string>> ResolveTargetModules(
    const std::vector<std::string>& names,
    const std::vector<std::string>& known);

}  // namespace ftune::train

#endif  // FTUNE_WORKER_TRAIN_FAMILIES_MODEL_CONFIG_H_
