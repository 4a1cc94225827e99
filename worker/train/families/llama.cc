// The Llama family: LlamaForCausalLM (Llama 2/3, TinyLlama, SmolLM),
// MistralForCausalLM without a sliding window, Qwen2ForCausalLM (q/k/v
// bias). RMSNorm, rotate-half RoPE (optionally Llama-3 frequency scaling),
// grouped-query attention, SwiGLU; q/k/v/o and gate/up/down projections.
// The block is Architecture's defaults.
#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "worker/train/families/config_fields.h"
#include "worker/train/families/family.h"

namespace ftune::train {
namespace {

using nlohmann::json;
using namespace config_fields;  // NOLINT: the family files' vocabulary

absl::Status ParseLlama(const json& j, absl::string_view label,
                        ModelConfig& c) {
  const bool llama = c.architecture == "LlamaForCausalLM";
  const bool mistral = c.architecture == "MistralForCausalLM";
  const bool qwen2 = c.architecture == "Qwen2ForCausalLM";
  FTUNE_RETURN_IF_ERROR(ParseDecoderSizes(j, label, /*tied_default=*/false, c));
  if (j.contains("hidden_act") && j["hidden_act"] != "silu")
    return Bad(label, "hidden_act", "must be \"silu\" (SwiGLU)");
  if (j.contains("mlp_bias") && j["mlp_bias"] == true)
    return Bad(label, "mlp_bias", "true is not supported");
  if (llama) {
    bool bias = false;
    FTUNE_RETURN_IF_ERROR(GetBool(j, label, "attention_bias", &bias));
    c.qkv_bias = c.o_bias = bias;
  }
  if (qwen2) {
    c.qkv_bias = true;
    bool sliding = false;
    FTUNE_RETURN_IF_ERROR(GetBool(j, label, "use_sliding_window", &sliding));
    if (sliding)
      return Bad(label, "use_sliding_window", "true is not supported");
  }
  if (mistral) {
    auto sw = j.find("sliding_window");
    if (sw != j.end() && !sw->is_null() &&
        !(sw->is_number_integer() &&
          sw->get<int64_t>() >= c.max_position_embeddings)) {
      return Bad(label, "sliding_window",
                 "must be null (sliding-window attention is not supported)");
    }
  }
  auto rs = j.find("rope_scaling");
  if (rs != j.end() && !rs->is_null()) {
    if (!rs->is_object())
      return Bad(label, "rope_scaling", "must be an object");
    std::string type = RopeType(*rs);
    if (type == "default") {
      // no scaling
    } else if (type == "llama3") {
      c.rope_scaling.type = type;
      FTUNE_RETURN_IF_ERROR(
          GetDouble(*rs, label, "factor", &c.rope_scaling.factor));
      FTUNE_RETURN_IF_ERROR(GetDouble(*rs, label, "low_freq_factor",
                                      &c.rope_scaling.low_freq_factor));
      FTUNE_RETURN_IF_ERROR(GetDouble(*rs, label, "high_freq_factor",
                                      &c.rope_scaling.high_freq_factor));
      FTUNE_RETURN_IF_ERROR(
          GetInt(*rs, label, "original_max_position_embeddings", true,
                 &c.rope_scaling.original_max_position_embeddings));
      if (c.rope_scaling.high_freq_factor <= c.rope_scaling.low_freq_factor)
        return Bad(label, "rope_scaling.high_freq_factor",
                   "must exceed low_freq_factor");
    } else {
      return Bad(label, "rope_scaling",
                 absl::StrCat("type \"", type,
                              "\" is not supported (only \"llama3\")"));
    }
  }
  c.arch = Architecture();
  c.arch.modules = Architecture::LlamaModules(c.qkv_bias, c.o_bias);
  return absl::OkStatus();
}

}  // namespace

extern const Family kLlamaFamily = {
    "llama",
    {"LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM"},
    &ParseLlama};

}  // namespace ftune::train
