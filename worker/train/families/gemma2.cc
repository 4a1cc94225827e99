// Gemma 2 (Gemma2ForCausalLM): RMSNorm scaled by (1 + weight) and computed
// in fp32, embeddings scaled by sqrt(hidden_size), a norm before and after
// both attention and the MLP, GeGLU (tanh GELU), the softmax scale
// query_pre_attn_scalar^-0.5, attention scores and final logits soft-capped
// (c * tanh(x / c)), and sliding-window attention on alternating layers
// (layer_types when given, else layers 0, 2, 4, ...). Tied head.
#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "worker/train/families/config_fields.h"
#include "worker/train/families/family.h"

namespace ftune::train {
namespace {

using nlohmann::json;
using namespace config_fields;  // NOLINT: the family files' vocabulary

absl::Status ParseGemma2(const json& j, absl::string_view label,
                         ModelConfig& c) {
  FTUNE_RETURN_IF_ERROR(ParseDecoderSizes(j, label, /*tied_default=*/true, c));
  for (const char* field : {"hidden_activation", "hidden_act"}) {
    std::string act;
    FTUNE_RETURN_IF_ERROR(
        GetEnum(j, label, field, {"gelu_pytorch_tanh"}, &act));
  }
  bool bias = false;
  FTUNE_RETURN_IF_ERROR(GetBool(j, label, "attention_bias", &bias));
  c.qkv_bias = c.o_bias = bias;
  FTUNE_RETURN_IF_ERROR(RefuseRopeScaling(j, label, "\"default\""));
  c.arch = Architecture();
  Architecture& a = c.arch;
  a.norm = NormKind::kRmsOnePlus;
  a.sandwich_norms = true;
  a.activation = Activation::kGeluTanh;
  a.scale_embeddings = true;
  // HF's defaults when a field is absent; null turns a soft-cap off.
  double scalar = 256;
  FTUNE_RETURN_IF_ERROR(GetDouble(j, label, "query_pre_attn_scalar", &scalar));
  a.query_scale = 1.0 / std::sqrt(scalar);
  a.attn_softcap = 50.0;
  if (j.contains("attn_logit_softcapping"))
    FTUNE_RETURN_IF_ERROR(
        GetOptionalCap(j, label, "attn_logit_softcapping", &a.attn_softcap));
  a.final_softcap = 30.0;
  if (j.contains("final_logit_softcapping"))
    FTUNE_RETURN_IF_ERROR(
        GetOptionalCap(j, label, "final_logit_softcapping", &a.final_softcap));
  int64_t window = 4096;
  FTUNE_RETURN_IF_ERROR(GetInt(j, label, "sliding_window", false, &window));
  a.sliding_windows.assign(c.num_hidden_layers, 0);
  auto types = j.find("layer_types");
  if (types != j.end() && !types->is_null()) {
    if (!types->is_array() ||
        static_cast<int64_t>(types->size()) != c.num_hidden_layers)
      return Bad(label, "layer_types",
                 "must list one type per layer (num_hidden_layers)");
    for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
      const json& t = (*types)[i];
      if (t == "sliding_attention") {
        a.sliding_windows[i] = window;
      } else if (t != "full_attention") {
        return Bad(label, absl::StrCat("layer_types[", i, "]"),
                   absl::StrCat(t.dump(),
                                " is not supported (supported: "
                                "\"sliding_attention\", \"full_attention\")"));
      }
    }
  } else {
    for (int64_t i = 0; i < c.num_hidden_layers; i += 2)
      a.sliding_windows[i] = window;
  }
  a.names.post_attn_norm = "post_attention_layernorm";
  a.names.mlp_norm = "pre_feedforward_layernorm";
  a.names.post_mlp_norm = "post_feedforward_layernorm";
  a.modules = Architecture::LlamaModules(c.qkv_bias, c.o_bias);
  return absl::OkStatus();
}

}  // namespace

extern const Family kGemma2Family = {
    "gemma2", {"Gemma2ForCausalLM"}, &ParseGemma2};

}  // namespace ftune::train
