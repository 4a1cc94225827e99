// Qwen3 (Qwen3ForCausalLM): the Llama block with an RMSNorm over head_dim
// on every query and key head (self_attn.q_norm / k_norm, before RoPE), no
// q/k/v bias unless attention_bias, and head_dim given explicitly.
#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "worker/train/families/config_fields.h"
#include "worker/train/families/family.h"

namespace ftune::train {
namespace {

using nlohmann::json;
using namespace config_fields;  // NOLINT: the family files' vocabulary

absl::Status ParseQwen3(const json& j, absl::string_view label,
                        ModelConfig& c) {
  FTUNE_RETURN_IF_ERROR(ParseDecoderSizes(j, label, /*tied_default=*/false, c));
  std::string act = "silu";
  FTUNE_RETURN_IF_ERROR(GetEnum(j, label, "hidden_act", {"silu"}, &act));
  bool bias = false;
  FTUNE_RETURN_IF_ERROR(GetBool(j, label, "attention_bias", &bias));
  c.qkv_bias = c.o_bias = bias;
  FTUNE_RETURN_IF_ERROR(RequireFalse(j, label, "use_sliding_window"));
  FTUNE_RETURN_IF_ERROR(RequireFalse(j, label, "mlp_bias"));
  FTUNE_RETURN_IF_ERROR(RefuseRopeScaling(j, label, "\"default\""));
  c.arch = Architecture();
  c.arch.qk_norm = true;
  c.arch.names.q_norm = "self_attn.q_norm";
  c.arch.names.k_norm = "self_attn.k_norm";
  c.arch.modules = Architecture::LlamaModules(c.qkv_bias, c.o_bias);
  return absl::OkStatus();
}

}  // namespace

extern const Family kQwen3Family = {"qwen3", {"Qwen3ForCausalLM"}, &ParseQwen3};

}  // namespace ftune::train
