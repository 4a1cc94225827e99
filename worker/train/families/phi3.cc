// Phi-3 / Phi-3.5 / Phi-4-mini (Phi3ForCausalLM): the Llama block with q, k
// and v fused into one qkv_proj ([q | k | v] outputs) and gate and up into
// one gate_up_proj ([gate | up]); LoRA goes on the fused modules as PEFT
// puts it (one A/B pair per fused module). RoPE may rotate only the first
// partial_rotary_factor of each head and may use LongRoPE ("longrope":
// per-frequency short/long factors chosen by the batch's longest position,
// cos/sin scaled by the attention factor). A sliding window, when
// configured, applies to every layer. Tied or untied head as configured.
#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "worker/train/families/config_fields.h"
#include "worker/train/families/family.h"

namespace ftune::train {
namespace {

using nlohmann::json;
using namespace config_fields;  // NOLINT: the family files' vocabulary

absl::Status GetFactors(const json& rs, absl::string_view label,
                        const char* field, int64_t n,
                        std::vector<double>* out) {
  const std::string name = absl::StrCat("rope_scaling.", field);
  auto it = rs.find(field);
  if (it == rs.end() || !it->is_array() ||
      static_cast<int64_t>(it->size()) != n)
    return Bad(label, name,
               absl::StrCat("must be a list of ", n,
                            " numbers (one per rotated frequency)"));
  for (const json& v : *it) {
    if (!v.is_number() || v.get<double>() <= 0)
      return Bad(label, name, "entries must be positive numbers");
    out->push_back(v.get<double>());
  }
  return absl::OkStatus();
}

absl::Status ParsePhi3(const json& j, absl::string_view label, ModelConfig& c) {
  FTUNE_RETURN_IF_ERROR(ParseDecoderSizes(j, label, /*tied_default=*/false, c));
  std::string act = "silu";
  FTUNE_RETURN_IF_ERROR(GetEnum(j, label, "hidden_act", {"silu"}, &act));
  c.arch = Architecture();
  // Partial rotary embeddings (Phi-4-mini: 0.75 of each head).
  double partial = 1.0;
  FTUNE_RETURN_IF_ERROR(GetDouble(j, label, "partial_rotary_factor", &partial));
  if (partial > 1.0)
    return Bad(label, "partial_rotary_factor", "must be in (0, 1]");
  c.arch.rotary_dim = static_cast<int64_t>(c.head_dim * partial);
  if (c.arch.rotary_dim <= 0 || c.arch.rotary_dim % 2 != 0)
    return Bad(label, "partial_rotary_factor",
               absl::StrCat("gives ", c.arch.rotary_dim,
                            " rotated dims per head; must be even and > 0"));
  int64_t original = c.max_position_embeddings;
  const bool has_original = j.contains("original_max_position_embeddings") &&
                            !j["original_max_position_embeddings"].is_null();
  FTUNE_RETURN_IF_ERROR(
      GetInt(j, label, "original_max_position_embeddings", false, &original));
  auto rs = j.find("rope_scaling");
  if (rs != j.end() && !rs->is_null()) {
    if (!rs->is_object())
      return Bad(label, "rope_scaling", "must be an object");
    const std::string type = RopeType(*rs);
    if (type == "longrope") {
      RopeScaling& s = c.rope_scaling;
      s.type = type;
      const int64_t n = c.arch.rotary_dim / 2;
      FTUNE_RETURN_IF_ERROR(
          GetFactors(*rs, label, "short_factor", n, &s.short_factor));
      FTUNE_RETURN_IF_ERROR(
          GetFactors(*rs, label, "long_factor", n, &s.long_factor));
      if (!has_original)
        FTUNE_RETURN_IF_ERROR(GetInt(
            *rs, label, "original_max_position_embeddings", false, &original));
      s.original_max_position_embeddings = original;
      // The scale of cos/sin (LongRoPE's "attention factor"): given, or
      // sqrt(1 + ln(f) / ln(original)) for the context extension f (which
      // Phi-3 takes from the two lengths when it has both).
      double factor = 1.0;
      FTUNE_RETURN_IF_ERROR(GetDouble(*rs, label, "factor", &factor));
      if (has_original)
        factor = static_cast<double>(c.max_position_embeddings) /
                 static_cast<double>(original);
      s.factor = factor;
      s.attention_factor =
          factor <= 1.0
              ? 1.0
              : std::sqrt(1 + std::log(factor) /
                                  std::log(static_cast<double>(original)));
      FTUNE_RETURN_IF_ERROR(
          GetDouble(*rs, label, "attention_factor", &s.attention_factor));
    } else if (type != "default") {
      return Bad(label, "rope_scaling",
                 absl::StrCat("type \"", type,
                              "\" is not supported (supported: \"default\", "
                              "\"longrope\")"));
    }
  }
  int64_t window = 0;
  FTUNE_RETURN_IF_ERROR(GetInt(j, label, "sliding_window", false, &window));
  if (window > 0) c.arch.sliding_windows.assign(c.num_hidden_layers, window);
  c.arch.modules = {
      {ProjRole::kQkv, "qkv_proj", "self_attn.qkv_proj"},
      {ProjRole::kO, "o_proj", "self_attn.o_proj"},
      {ProjRole::kGateUp, "gate_up_proj", "mlp.gate_up_proj"},
      {ProjRole::kDown, "down_proj", "mlp.down_proj"},
  };
  return absl::OkStatus();
}

}  // namespace

extern const Family kPhi3Family = {"phi3", {"Phi3ForCausalLM"}, &ParsePhi3};

}  // namespace ftune::train
