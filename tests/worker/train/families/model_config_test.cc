// The families' config.json parsing (worker/train/families): what each
// family reads into the block description, what "all-linear" means for it
// (PEFT's meaning: every linear module of the layers, not the output head),
// and that every unsupported architecture or option is refused naming the
// field and the supported values. Plain C++: the scheduler runs this code at
// model registration and job creation.
#include "worker/train/families/model_config.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/status_matchers.h"
#include "worker/train/families/family.h"

namespace ftune::train {
namespace {

using ::ftune::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using json = nlohmann::json;

json Llamaish(const char* arch) {
  return {{"architectures", {arch}}, {"vocab_size", 64},
          {"hidden_size", 32},       {"intermediate_size", 72},
          {"num_hidden_layers", 3},  {"num_attention_heads", 4},
          {"num_key_value_heads", 2}};
}

json Gpt2() {
  return {{"architectures", {"GPT2LMHeadModel"}},
          {"vocab_size", 64},
          {"n_embd", 32},
          {"n_layer", 2},
          {"n_head", 4},
          {"n_positions", 128},
          {"n_inner", nullptr},
          {"activation_function", "gelu_new"}};
}

absl::StatusOr<ModelConfig> Parse(const json& j) {
  return ParseModelConfig(j.dump(), "config.json");
}

absl::Status Refusal(json j, const std::string& field, json value) {
  if (field.find('.') == std::string::npos) {
    j[field] = value;
  } else {
    j[field.substr(0, field.find('.'))][field.substr(field.find('.') + 1)] =
        value;
  }
  return Parse(j).status();
}

TEST(ModelFamiliesTest, EveryArchitectureHasOneFamily) {
  EXPECT_THAT(
      SupportedArchitectures(),
      ElementsAre("LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM",
                  "Qwen3ForCausalLM", "Phi3ForCausalLM", "Gemma2ForCausalLM",
                  "GPT2LMHeadModel"));
  EXPECT_EQ(std::string(FindFamily("Phi3ForCausalLM")->name), "phi3");
  EXPECT_EQ(FindFamily("Phi3SmallForCausalLM"), nullptr);
  EXPECT_THAT(Parse({{"architectures", {"MixtralForCausalLM"}}}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("architecture \"MixtralForCausalLM\" is not "
                                 "supported (supported: LlamaForCausalLM, "
                                 "MistralForCausalLM, Qwen2ForCausalLM, "
                                 "Qwen3ForCausalLM, Phi3ForCausalLM, "
                                 "Gemma2ForCausalLM, GPT2LMHeadModel)")));
}

TEST(ModelFamiliesTest, AllLinearIsEveryLinearModuleOfTheFamily) {
  struct Case {
    json config;
    std::vector<std::string> modules;
    bool fan_in_fan_out;
  } cases[] = {
      {Llamaish("LlamaForCausalLM"),
       {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
        "down_proj"},
       false},
      {Llamaish("Qwen3ForCausalLM"),
       {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
        "down_proj"},
       false},
      {Llamaish("Gemma2ForCausalLM"),
       {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
        "down_proj"},
       false},
      {Llamaish("Phi3ForCausalLM"),
       {"qkv_proj", "o_proj", "gate_up_proj", "down_proj"},
       false},
      {Gpt2(), {"c_attn", "c_proj", "c_fc"}, true},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.config.dump());
    ASSERT_OK_AND_ASSIGN(ModelConfig m, Parse(c.config));
    EXPECT_EQ(m.LoraModuleNames(), c.modules);
    EXPECT_EQ(m.fan_in_fan_out(), c.fan_in_fan_out);
    ASSERT_OK_AND_ASSIGN(std::vector<std::string> all,
                         ResolveTargetModules({"all-linear"}, c.modules));
    EXPECT_EQ(all, c.modules);
  }
  // Names outside the family are refused, listing the family's.
  EXPECT_THAT(ResolveTargetModules({"q_proj"}, {"qkv_proj", "o_proj"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("unknown module \"q_proj\" (known: "
                                 "qkv_proj, o_proj, or all-linear)")));
  ASSERT_OK_AND_ASSIGN(
      std::vector<std::string> ordered,
      ResolveTargetModules({"o_proj", "qkv_proj"}, {"qkv_proj", "o_proj"}));
  EXPECT_THAT(ordered, ElementsAre("qkv_proj", "o_proj"));
}

TEST(ModelFamiliesTest, Phi3ReadsFusedModulesLongRopeAndWindow) {
  json j = Llamaish("Phi3ForCausalLM");
  j["max_position_embeddings"] = 128;
  j["original_max_position_embeddings"] = 8;
  j["partial_rotary_factor"] = 0.5;
  j["sliding_window"] = 5;
  j["rope_scaling"] = {{"type", "longrope"},
                       {"short_factor", {1.0, 2.0}},
                       {"long_factor", {3.0, 4.0}}};
  ASSERT_OK_AND_ASSIGN(ModelConfig c, Parse(j));
  EXPECT_EQ(c.family, "phi3");
  EXPECT_EQ(c.arch.rotary_dim, 4);
  EXPECT_EQ(c.rope_scaling.type, "longrope");
  EXPECT_EQ(c.rope_scaling.original_max_position_embeddings, 8);
  // sqrt(1 + ln(128 / 8) / ln(8))
  EXPECT_NEAR(c.rope_scaling.attention_factor,
              std::sqrt(1 + std::log(16.0) / std::log(8.0)), 1e-12);
  EXPECT_THAT(c.arch.sliding_windows, ElementsAre(5, 5, 5));
  EXPECT_EQ(c.arch.modules[0].path, "self_attn.qkv_proj");
  EXPECT_EQ(c.arch.modules[2].role, ProjRole::kGateUp);

  EXPECT_THAT(Refusal(j, "rope_scaling.type", "yarn"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("field \"rope_scaling\" type \"yarn\" is not "
                                 "supported (supported: \"default\", "
                                 "\"longrope\")")));
  EXPECT_THAT(Refusal(j, "rope_scaling.long_factor", json::array({1.0})),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("\"rope_scaling.long_factor\" must be a list "
                                 "of 2 numbers")));
  EXPECT_THAT(Refusal(j, "hidden_act", "gelu"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("field \"hidden_act\" \"gelu\" is not "
                                 "supported (supported: \"silu\")")));
  EXPECT_THAT(Refusal(j, "partial_rotary_factor", 0.1),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("partial_rotary_factor")));
}

TEST(ModelFamiliesTest, Gemma2ReadsItsBlock) {
  json j = Llamaish("Gemma2ForCausalLM");
  j["head_dim"] = 16;
  j["query_pre_attn_scalar"] = 24;
  j["sliding_window"] = 7;
  j["final_logit_softcapping"] = nullptr;
  ASSERT_OK_AND_ASSIGN(ModelConfig c, Parse(j));
  const Architecture& a = c.arch;
  EXPECT_EQ(a.norm, NormKind::kRmsOnePlus);
  EXPECT_TRUE(a.sandwich_norms && a.scale_embeddings);
  EXPECT_EQ(a.activation, Activation::kGeluTanh);
  EXPECT_DOUBLE_EQ(a.query_scale, 1 / std::sqrt(24.0));
  EXPECT_EQ(a.attn_softcap, 50.0);  // HF's default when absent
  EXPECT_EQ(a.final_softcap, 0.0);  // null: off
  EXPECT_THAT(a.sliding_windows, ElementsAre(7, 0, 7));
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(a.names.mlp_norm, "pre_feedforward_layernorm");
  j["layer_types"] = {"full_attention", "sliding_attention", "full_attention"};
  ASSERT_OK_AND_ASSIGN(c, Parse(j));
  EXPECT_THAT(c.arch.sliding_windows, ElementsAre(0, 7, 0));

  EXPECT_THAT(Refusal(j, "hidden_activation", "gelu"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("field \"hidden_activation\" \"gelu\" is not "
                                 "supported (supported: "
                                 "\"gelu_pytorch_tanh\")")));
  EXPECT_THAT(Refusal(j, "layer_types", {"full_attention", "chunked", "x"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("field \"layer_types[1]\" \"chunked\" is not "
                                 "supported")));
  EXPECT_THAT(Refusal(j, "rope_scaling", {{"rope_type", "linear"}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("type \"linear\" is not supported "
                                 "(supported: \"default\")")));
}

TEST(ModelFamiliesTest, Qwen3ReadsQkNormAndRefusesWhatItLacks) {
  json j = Llamaish("Qwen3ForCausalLM");
  j["head_dim"] = 16;
  ASSERT_OK_AND_ASSIGN(ModelConfig c, Parse(j));
  EXPECT_TRUE(c.arch.qk_norm);
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_FALSE(c.qkv_bias);
  EXPECT_THAT(Refusal(j, "use_sliding_window", true),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("field \"use_sliding_window\" true is not "
                                 "supported (supported: false)")));
  EXPECT_THAT(Refusal(j, "rope_scaling", {{"rope_type", "yarn"}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("\"rope_scaling\" type \"yarn\" is not "
                                 "supported (supported: \"default\")")));
}

TEST(ModelFamiliesTest, Gpt2ReadsItsOwnFieldNames) {
  ASSERT_OK_AND_ASSIGN(ModelConfig c, Parse(Gpt2()));
  EXPECT_EQ(c.family, "gpt2");
  EXPECT_EQ(c.hidden_size, 32);
  EXPECT_EQ(c.intermediate_size, 128);  // n_inner null: 4 * n_embd
  EXPECT_EQ(c.head_dim, 8);
  EXPECT_EQ(c.max_position_embeddings, 128);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(c.arch.norm, NormKind::kLayerNorm);
  EXPECT_EQ(c.arch.positions, PositionKind::kLearned);
  EXPECT_FALSE(c.arch.gated_mlp);
  EXPECT_EQ(c.arch.names.layer_prefix, "transformer.h.");
  for (const LinearModule& m : c.arch.modules) EXPECT_TRUE(m.conv1d && m.bias);
  EXPECT_THAT(Refusal(Gpt2(), "scale_attn_by_inverse_layer_idx", true),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("field \"scale_attn_by_inverse_layer_idx\" "
                                 "true is not supported (supported: false)")));
  EXPECT_THAT(Refusal(Gpt2(), "activation_function", "relu"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("\"relu\" is not supported (supported: "
                                 "\"gelu_new\", \"gelu_pytorch_tanh\"")));
  EXPECT_THAT(Refusal(Gpt2(), "n_embd", nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("field \"n_embd\" is missing")));
}

TEST(ModelFamiliesTest, MalformedValuesAreInvalidArgumentNotExceptions) {
  json j = Llamaish("Phi3ForCausalLM");
  j["rope_scaling"] = {{"type", 7}};
  EXPECT_THAT(Parse(j).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("type \"7\" is not supported")));
  j = Llamaish("Gemma2ForCausalLM");
  j["layer_types"] = "sliding_attention";
  EXPECT_THAT(Parse(j).status(), StatusIs(absl::StatusCode::kInvalidArgument,
                                          HasSubstr("layer_types")));
}

}  // namespace
}  // namespace ftune::train
