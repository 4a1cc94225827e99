#include "worker/train/model_config.h"

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status.h"
#include "nlohmann/json.hpp"

namespace ftune::train {
namespace {

using nlohmann::json;

absl::Status Bad(absl::string_view label, absl::string_view field,
                 absl::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat(label, ": field \"", field, "\" ", why));
}

absl::Status GetInt(const json& j, absl::string_view label, const char* field,
                    bool required, int64_t* out) {
  auto it = j.find(field);
  if (it == j.end() || it->is_null()) {
    if (required) return Bad(label, field, "is missing");
    return absl::OkStatus();
  }
  if (!it->is_number_integer() || it->get<int64_t>() <= 0)
    return Bad(label, field, "must be a positive integer");
  *out = it->get<int64_t>();
  return absl::OkStatus();
}

absl::Status GetDouble(const json& j, absl::string_view label,
                       const char* field, double* out) {
  auto it = j.find(field);
  if (it == j.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_number() || it->get<double>() <= 0)
    return Bad(label, field, "must be a positive number");
  *out = it->get<double>();
  return absl::OkStatus();
}

absl::Status GetBool(const json& j, absl::string_view label, const char* field,
                     bool* out) {
  auto it = j.find(field);
  if (it == j.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_boolean()) return Bad(label, field, "must be true or false");
  *out = it->get<bool>();
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ModelConfig> ParseModelConfig(absl::string_view text,
                                             absl::string_view label) {
  json j = json::parse(text.begin(), text.end(), nullptr,
                       /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object())
    return absl::InvalidArgumentError(
        absl::StrCat(label, ": not a JSON object"));
  ModelConfig c;
  auto arch = j.find("architectures");
  if (arch == j.end() || !arch->is_array() || arch->size() != 1 ||
      !(*arch)[0].is_string()) {
    return Bad(label, "architectures", "must be a list with one name");
  }
  c.architecture = (*arch)[0].get<std::string>();
  const bool llama = c.architecture == "LlamaForCausalLM";
  const bool mistral = c.architecture == "MistralForCausalLM";
  const bool qwen2 = c.architecture == "Qwen2ForCausalLM";
  if (!llama && !mistral && !qwen2) {
    return absl::InvalidArgumentError(
        absl::StrCat(label, ": architecture \"", c.architecture,
                     "\" is not supported (supported: LlamaForCausalLM, "
                     "MistralForCausalLM, Qwen2ForCausalLM)"));
  }
  FTUNE_RETURN_IF_ERROR(GetInt(j, label, "vocab_size", true, &c.vocab_size));
  FTUNE_RETURN_IF_ERROR(GetInt(j, label, "hidden_size", true, &c.hidden_size));
  FTUNE_RETURN_IF_ERROR(
      GetInt(j, label, "intermediate_size", true, &c.intermediate_size));
  FTUNE_RETURN_IF_ERROR(
      GetInt(j, label, "num_hidden_layers", true, &c.num_hidden_layers));
  FTUNE_RETURN_IF_ERROR(
      GetInt(j, label, "num_attention_heads", true, &c.num_attention_heads));
  c.num_key_value_heads = c.num_attention_heads;
  FTUNE_RETURN_IF_ERROR(
      GetInt(j, label, "num_key_value_heads", false, &c.num_key_value_heads));
  FTUNE_RETURN_IF_ERROR(GetInt(j, label, "max_position_embeddings", false,
                               &c.max_position_embeddings));
  if (c.hidden_size % c.num_attention_heads != 0 && !j.contains("head_dim"))
    return Bad(label, "hidden_size",
               "is not a multiple of num_attention_heads");
  c.head_dim = c.hidden_size / c.num_attention_heads;
  FTUNE_RETURN_IF_ERROR(GetInt(j, label, "head_dim", false, &c.head_dim));
  if (c.head_dim % 2 != 0) return Bad(label, "head_dim", "must be even (RoPE)");
  if (c.num_attention_heads % c.num_key_value_heads != 0)
    return Bad(label, "num_key_value_heads", "must divide num_attention_heads");
  FTUNE_RETURN_IF_ERROR(GetDouble(j, label, "rms_norm_eps", &c.rms_norm_eps));
  FTUNE_RETURN_IF_ERROR(GetDouble(j, label, "rope_theta", &c.rope_theta));
  FTUNE_RETURN_IF_ERROR(
      GetBool(j, label, "tie_word_embeddings", &c.tie_word_embeddings));
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
    std::string type = rs->value("rope_type", rs->value("type", std::string()));
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
  return c;
}

absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& model_dir) {
  const std::string path = JoinPath(model_dir, "config.json");
  FTUNE_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  return ParseModelConfig(text, path);
}

std::string ModelConfig::ToJson() const {
  json j = {{"architectures", {architecture}},
            {"model_type", architecture == "Qwen2ForCausalLM"     ? "qwen2"
                           : architecture == "MistralForCausalLM" ? "mistral"
                                                                  : "llama"},
            {"vocab_size", vocab_size},
            {"hidden_size", hidden_size},
            {"intermediate_size", intermediate_size},
            {"num_hidden_layers", num_hidden_layers},
            {"num_attention_heads", num_attention_heads},
            {"num_key_value_heads", num_key_value_heads},
            {"head_dim", head_dim},
            {"max_position_embeddings", max_position_embeddings},
            {"rms_norm_eps", rms_norm_eps},
            {"rope_theta", rope_theta},
            {"tie_word_embeddings", tie_word_embeddings},
            {"hidden_act", "silu"}};
  if (architecture == "LlamaForCausalLM") j["attention_bias"] = qkv_bias;
  if (rope_scaling.type == "llama3") {
    j["rope_scaling"] = {{"rope_type", "llama3"},
                         {"factor", rope_scaling.factor},
                         {"low_freq_factor", rope_scaling.low_freq_factor},
                         {"high_freq_factor", rope_scaling.high_freq_factor},
                         {"original_max_position_embeddings",
                          rope_scaling.original_max_position_embeddings}};
  }
  return j.dump(2);
}

}  // namespace ftune::train
