#include "worker/train/families/config_fields.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status.h"

namespace ftune::train::config_fields {

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

absl::Status GetEnum(const json& j, absl::string_view label, const char* field,
                     const std::vector<std::string>& allowed,
                     std::string* out) {
  auto it = j.find(field);
  if (it == j.end() || it->is_null()) return absl::OkStatus();
  const std::string v = it->is_string() ? it->get<std::string>() : it->dump();
  for (const std::string& a : allowed) {
    if (v == a) {
      *out = v;
      return absl::OkStatus();
    }
  }
  return Bad(label, field,
             absl::StrCat("\"", v, "\" is not supported (supported: \"",
                          absl::StrJoin(allowed, "\", \""), "\")"));
}

absl::Status GetOptionalCap(const json& j, absl::string_view label,
                            const char* field, double* out) {
  *out = 0;
  auto it = j.find(field);
  if (it == j.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_number() || it->get<double>() <= 0)
    return Bad(label, field, "must be a positive number or null");
  *out = it->get<double>();
  return absl::OkStatus();
}

absl::Status RequireFalse(const json& j, absl::string_view label,
                          const char* field) {
  auto it = j.find(field);
  if (it == j.end() || it->is_null()) return absl::OkStatus();
  if ((it->is_boolean() && it->get<bool>()) ||
      (it->is_number() && it->get<double>() != 0))
    return Bad(label, field,
               absl::StrCat(it->dump(), " is not supported (supported: ",
                            it->is_boolean() ? "false" : "0", ")"));
  return absl::OkStatus();
}

absl::Status ParseDecoderSizes(const json& j, absl::string_view label,
                               bool tied_default, ModelConfig& c) {
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
  c.tie_word_embeddings = tied_default;
  return GetBool(j, label, "tie_word_embeddings", &c.tie_word_embeddings);
}

std::string RopeType(const json& rope_scaling) {
  for (const char* key : {"rope_type", "type"}) {
    auto it = rope_scaling.find(key);
    if (it != rope_scaling.end())
      return it->is_string() ? it->get<std::string>() : it->dump();
  }
  return "";
}

absl::Status RefuseRopeScaling(const json& j, absl::string_view label,
                               absl::string_view supported) {
  auto rs = j.find("rope_scaling");
  if (rs == j.end() || rs->is_null()) return absl::OkStatus();
  if (!rs->is_object()) return Bad(label, "rope_scaling", "must be an object");
  const std::string type = RopeType(*rs);
  if (type == "default") return absl::OkStatus();
  return Bad(label, "rope_scaling",
             absl::StrCat("type \"", type,
                          "\" is not supported (supported: ", supported, ")"));
}

}  // namespace ftune::train::config_fields
