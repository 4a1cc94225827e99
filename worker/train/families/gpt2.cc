// GPT-2 (GPT2LMHeadModel): LayerNorm with bias, learned absolute position
// embeddings, and Conv1D projections stored [in, out] (so PEFT adapters say
// fan_in_fan_out): the fused c_attn ([q | k | v]), attn.c_proj, mlp.c_fc and
// mlp.c_proj, all with bias; a plain (ungated) MLP with tanh GELU; tied
// embeddings. The module name "c_proj" is both attention's output and the
// MLP's down projection, as in PEFT. Files saved from the bare GPT2Model
// lack the "transformer." prefix; both spellings load.
#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "worker/train/families/config_fields.h"
#include "worker/train/families/family.h"

namespace ftune::train {
namespace {

using nlohmann::json;
using namespace config_fields;  // NOLINT: the family files' vocabulary

absl::Status ParseGpt2(const json& j, absl::string_view label, ModelConfig& c) {
  FTUNE_RETURN_IF_ERROR(GetInt(j, label, "vocab_size", true, &c.vocab_size));
  FTUNE_RETURN_IF_ERROR(GetInt(j, label, "n_embd", true, &c.hidden_size));
  FTUNE_RETURN_IF_ERROR(
      GetInt(j, label, "n_layer", true, &c.num_hidden_layers));
  FTUNE_RETURN_IF_ERROR(
      GetInt(j, label, "n_head", true, &c.num_attention_heads));
  c.max_position_embeddings = 1024;
  FTUNE_RETURN_IF_ERROR(
      GetInt(j, label, "n_positions", false, &c.max_position_embeddings));
  if (c.hidden_size % c.num_attention_heads != 0)
    return Bad(label, "n_embd", "is not a multiple of n_head");
  c.num_key_value_heads = c.num_attention_heads;
  c.head_dim = c.hidden_size / c.num_attention_heads;
  c.intermediate_size = 4 * c.hidden_size;
  FTUNE_RETURN_IF_ERROR(
      GetInt(j, label, "n_inner", false, &c.intermediate_size));
  c.rms_norm_eps = 1e-5;
  FTUNE_RETURN_IF_ERROR(
      GetDouble(j, label, "layer_norm_epsilon", &c.rms_norm_eps));
  c.tie_word_embeddings = true;
  FTUNE_RETURN_IF_ERROR(
      GetBool(j, label, "tie_word_embeddings", &c.tie_word_embeddings));
  c.qkv_bias = c.o_bias = true;
  c.arch = Architecture();
  Architecture& a = c.arch;
  std::string act = "gelu_new";
  FTUNE_RETURN_IF_ERROR(
      GetEnum(j, label, "activation_function",
              {"gelu_new", "gelu_pytorch_tanh", "gelu_fast", "gelu"}, &act));
  a.activation = act == "gelu" ? Activation::kGelu : Activation::kGeluTanh;
  bool scale = true;
  FTUNE_RETURN_IF_ERROR(GetBool(j, label, "scale_attn_weights", &scale));
  if (!scale) a.query_scale = 1.0;
  FTUNE_RETURN_IF_ERROR(
      RequireFalse(j, label, "scale_attn_by_inverse_layer_idx"));
  FTUNE_RETURN_IF_ERROR(RequireFalse(j, label, "reorder_and_upcast_attn"));
  FTUNE_RETURN_IF_ERROR(RequireFalse(j, label, "add_cross_attention"));
  a.norm = NormKind::kLayerNorm;
  a.gated_mlp = false;
  a.positions = PositionKind::kLearned;
  WeightNames& n = a.names;
  n.embed = "transformer.wte.weight";
  n.positions = "transformer.wpe.weight";
  n.final_norm = "transformer.ln_f";
  n.lm_head = "lm_head.weight";
  n.layer_prefix = "transformer.h.";
  n.attn_norm = "ln_1";
  n.mlp_norm = "ln_2";
  n.optional_prefix = "transformer.";
  a.modules = {
      {ProjRole::kQkv, "c_attn", "attn.c_attn", true, true},
      {ProjRole::kO, "c_proj", "attn.c_proj", true, true},
      {ProjRole::kUp, "c_fc", "mlp.c_fc", true, true},
      {ProjRole::kDown, "c_proj", "mlp.c_proj", true, true},
  };
  return absl::OkStatus();
}

}  // namespace

extern const Family kGpt2Family = {"gpt2", {"GPT2LMHeadModel"}, &ParseGpt2};

}  // namespace ftune::train
