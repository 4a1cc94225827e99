#include "worker/train/families/model_config.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/file_util.h"
#include "common/status.h"
#include "nlohmann/json.hpp"
#include "worker/train/families/family.h"

namespace ftune::train {

using nlohmann::json;

std::vector<LinearModule> Architecture::LlamaModules(bool qkv_bias,
                                                     bool o_bias) {
  return {{ProjRole::kQ, "q_proj", "self_attn.q_proj", qkv_bias},
          {ProjRole::kK, "k_proj", "self_attn.k_proj", qkv_bias},
          {ProjRole::kV, "v_proj", "self_attn.v_proj", qkv_bias},
          {ProjRole::kO, "o_proj", "self_attn.o_proj", o_bias},
          {ProjRole::kGate, "gate_proj", "mlp.gate_proj", false},
          {ProjRole::kUp, "up_proj", "mlp.up_proj", false},
          {ProjRole::kDown, "down_proj", "mlp.down_proj", false}};
}

std::vector<std::string> ModelConfig::LoraModuleNames() const {
  std::vector<std::string> out;
  for (const LinearModule& m : arch.modules) {
    if (std::find(out.begin(), out.end(), m.name) == out.end())
      out.push_back(m.name);
  }
  return out;
}

bool ModelConfig::fan_in_fan_out() const {
  for (const LinearModule& m : arch.modules)
    if (m.conv1d) return true;
  return false;
}

int64_t ModelConfig::sliding_window(int64_t i) const {
  return i < static_cast<int64_t>(arch.sliding_windows.size())
             ? arch.sliding_windows[i]
             : 0;
}

std::vector<std::string> SupportedArchitectures() {
  std::vector<std::string> out;
  for (const Family* f : Families())
    out.insert(out.end(), f->architectures.begin(), f->architectures.end());
  return out;
}

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
    return absl::InvalidArgumentError(absl::StrCat(
        label, ": field \"architectures\" must be a list with one name"));
  }
  c.architecture = (*arch)[0].get<std::string>();
  const Family* family = FindFamily(c.architecture);
  if (family == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(label, ": architecture \"", c.architecture,
                     "\" is not supported (supported: ",
                     absl::StrJoin(SupportedArchitectures(), ", "), ")"));
  }
  c.family = family->name;
  c.source_json = std::string(text);
  // A family's parser reads optional values with nlohmann's typed getters
  // only after checking the type; this catch is the backstop that keeps a
  // malformed file an INVALID_ARGUMENT rather than an exception.
  try {
    FTUNE_RETURN_IF_ERROR(family->parse(j, label, c));
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(label, ": malformed config: ", e.what()));
  }
  return c;
}

absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& model_dir) {
  const std::string path = JoinPath(model_dir, "config.json");
  FTUNE_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  return ParseModelConfig(text, path);
}

absl::StatusOr<std::vector<std::string>> ResolveTargetModules(
    const std::vector<std::string>& names,
    const std::vector<std::string>& known) {
  if (names.empty())
    return absl::InvalidArgumentError("target_modules is empty");
  for (const std::string& n : names) {
    if (n == "all-linear") {
      if (names.size() != 1)
        return absl::InvalidArgumentError(
            "target_modules: \"all-linear\" must be the only entry");
      return known;
    }
  }
  // Keep the canonical order so key names and configs are stable.
  std::vector<std::string> out;
  for (const std::string& k : known) {
    if (std::find(names.begin(), names.end(), k) != names.end())
      out.push_back(k);
  }
  for (const std::string& n : names) {
    if (std::find(out.begin(), out.end(), n) == out.end()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "target_modules: unknown module \"", n,
          "\" (known: ", absl::StrJoin(known, ", "), ", or all-linear)"));
    }
  }
  if (out.size() != names.size())
    return absl::InvalidArgumentError("target_modules: duplicate entry");
  return out;
}

std::string ModelConfig::ToJson() const {
  if (family != "llama" && !source_json.empty()) return source_json;
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
