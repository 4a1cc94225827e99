// The scheduler's config file and model directory inspection
// (server/model_registry.h) on hostile or malformed input: a clean
// INVALID_ARGUMENT (or an ignored value), never an exception that would stop
// the scheduler, never an overflow. Regression tests of what
// tests/fuzz/fuzz_model_registry and fuzz_scheduler_config guard.
// Model registration reads config.json with the trainer's family code
// (worker/train/families): the family and its LoRA module names are
// recorded, sizes are read under the family's field names, and a model the
// trainer cannot run is refused, naming the field and the supported values.
#include "server/model_registry.h"

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace ftune::server {
namespace {

using ::ftune::testing::StatusIs;
using ::testing::HasSubstr;

TEST(SchedulerConfigTest, WrongTypesAreRefusedNotThrown) {
  for (const char* text : {
           R"({"models": [{"name": 5}]})",
           R"({"models": [{"name": "m", "directory": ["models/m"]}]})",
           R"({"models": [{"name": "m", "supported_methods": "lora"}]})",
           R"({"models": [{"name": "m", "directory": "../etc"}]})",
           R"({"models": [{"name": "m", "directory": "/abs"}]})",
           R"({"models": [{"name": "m", "directory": "models//m"}]})",
           R"({"models": {"name": "m"}})",
           R"([1, 2])",
       }) {
    SCOPED_TRACE(text);
    EXPECT_THAT(ParseSchedulerConfig(text, "c.json"),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr("config c.json")));
  }
}

TEST(SchedulerConfigTest, ParsesModelsWithDefaults) {
  ASSERT_OK_AND_ASSIGN(
      SchedulerConfig c,
      ParseSchedulerConfig(
          R"({"server": {"rpc_threads": 2}, "models": [{"name": "a"},
              {"name": "b", "directory": "models/x.y",
               "supported_methods": ["lora"]}]})",
          "c.json"));
  ASSERT_EQ(c.models.size(), 2u);
  EXPECT_EQ(c.models[0].directory, "models/a");
  EXPECT_EQ(c.models[0].metadata.at("supported_methods"), "lora,qlora,full");
  EXPECT_EQ(c.models[1].directory, "models/x.y");
  EXPECT_EQ(c.models[1].metadata.at("supported_methods"), "lora");
  // "full" (full-parameter fine-tuning) is a method; anything else is
  // refused naming the three.
  ASSERT_OK_AND_ASSIGN(
      c, ParseSchedulerConfig(
             R"({"models": [{"name": "f", "supported_methods": ["full"]}]})",
             "c.json"));
  EXPECT_EQ(c.models[0].metadata.at("supported_methods"), "full");
  EXPECT_THAT(
      ParseSchedulerConfig(
          R"({"models": [{"name": "f", "supported_methods": ["fulll"]}]})",
          "c.json"),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr(R"(expected "lora", "qlora" or "full", got )")));
}

TEST(SchedulerConfigTest, LongValuesAreQuotedShort) {
  const std::string key(70000, 'k');
  absl::Status st =
      ParseSchedulerConfig("{\"" + key + "\": 1}", "c.json").status();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_LT(st.message().size(), 300u);
  EXPECT_THAT(st.message(), HasSubstr("(70000 bytes)"));
}

TEST(ModelDirectoryTest, TokenizerConfigTemplatesOfAnyShape) {
  EXPECT_EQ(ChatTemplateOfTokenizerConfig(
                R"({"chat_template": [{"name": 5, "template": "[INST]"},
                    {"name": "default", "template": 7},
                    {"name": "default", "template": "<|im_start|>"}]})"),
            "chatml");
  EXPECT_EQ(ChatTemplateOfTokenizerConfig(R"({"chat_template": [1, null]})"),
            "");
  EXPECT_EQ(ChatTemplateOfTokenizerConfig("not json"), "");
}

TEST(ModelDirectoryTest, SafetensorsHeadersThatWouldThrowOrOverflow) {
  EXPECT_EQ(SafetensorsHeaderParameters(
                R"({"a": {"shape": [2, 3]}, "b": {"shape": []},
                    "__metadata__": {"x": "y"}})"),
            7);
  EXPECT_EQ(SafetensorsHeaderParameters(R"({"a": {"shape": ["2"]}})"), -1);
  EXPECT_EQ(SafetensorsHeaderParameters(R"({"a": {"shape": "23"}})"), -1);
  EXPECT_EQ(SafetensorsHeaderParameters(R"({"a": {"shape": [2.5]}})"), -1);
  EXPECT_EQ(SafetensorsHeaderParameters(R"({"a": {"shape": [-1]}})"), -1);
  EXPECT_EQ(SafetensorsHeaderParameters(R"({"a": 5})"), -1);
  EXPECT_EQ(SafetensorsHeaderParameters(
                R"({"a": {"shape": [4294967296, 4294967296]}})"),
            -1);
  EXPECT_EQ(SafetensorsHeaderParameters(
                R"({"a": {"shape": [4611686018427387904]},
                    "b": {"shape": [4611686018427387904]}})"),
            -1);
}

TEST(ModelDirectoryTest, ConfigJsonOfTheWrongShapeIsRefusedNamingTheField) {
  core::Model m;
  EXPECT_THAT(ReadModelConfigJson("[]", m),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("config.json is not a JSON object")));
  EXPECT_THAT(
      ReadModelConfigJson(R"({"architectures": [5]})", m),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("architectures")));
  EXPECT_THAT(
      ReadModelConfigJson(
          R"({"architectures": ["LlamaForCausalLM"], "vocab_size": 256,
              "hidden_size": "64", "intermediate_size": 128,
              "num_hidden_layers": 2, "num_attention_heads": 4})",
          m),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("hidden_size")));
  EXPECT_TRUE(m.metadata.empty());
}

class ModelRegistryTest : public ::testing::Test {
 protected:
  // A model directory `name` with this config.json; returns its path.
  std::string Model(const std::string& name, const std::string& config) {
    const std::string dir = dir_.Sub("storage/models/" + name);
    std::filesystem::create_directories(dir);
    std::ofstream(dir + "/config.json") << config;
    return dir;
  }
  absl::StatusOr<core::Model> Inspect(const std::string& name,
                                      const std::string& config) {
    core::Model m;
    m.name = name;
    absl::Status st = InspectModelDirectory(Model(name, config), m);
    if (!st.ok()) return st;
    return m;
  }
  ftune::testing::TempDir dir_;
};

constexpr char kLlama[] =
    R"({"architectures": ["LlamaForCausalLM"], "vocab_size": 256,
        "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "max_position_embeddings": 512)";

TEST_F(ModelRegistryTest, RecordsTheFamilyAndItsModuleNames) {
  ASSERT_OK_AND_ASSIGN(core::Model llama,
                       Inspect("l", std::string(kLlama) + "}"));
  EXPECT_EQ(llama.metadata["family"], "llama");
  EXPECT_EQ(llama.metadata["lora_modules"],
            "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj");
  EXPECT_EQ(llama.metadata["num_key_value_heads"], "4");

  ASSERT_OK_AND_ASSIGN(
      core::Model phi,
      Inspect("p", R"({"architectures": ["Phi3ForCausalLM"], "vocab_size": 256,
          "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
          "num_attention_heads": 4, "max_position_embeddings": 4096,
          "sliding_window": 2047})"));
  EXPECT_EQ(phi.metadata["architecture"], "Phi3ForCausalLM");
  EXPECT_EQ(phi.metadata["family"], "phi3");
  EXPECT_EQ(phi.metadata["lora_modules"],
            "qkv_proj,o_proj,gate_up_proj,down_proj");

  // GPT-2 names its sizes differently; the registry reports them all.
  ASSERT_OK_AND_ASSIGN(
      core::Model gpt2,
      Inspect("g",
              R"({"architectures": ["GPT2LMHeadModel"], "vocab_size": 50257,
          "n_embd": 768, "n_layer": 12, "n_head": 12, "n_positions": 1024})"));
  EXPECT_EQ(gpt2.metadata["family"], "gpt2");
  EXPECT_EQ(gpt2.metadata["lora_modules"], "c_attn,c_proj,c_fc");
  EXPECT_EQ(gpt2.metadata["hidden_size"], "768");
  EXPECT_EQ(gpt2.metadata["intermediate_size"], "3072");
  EXPECT_EQ(gpt2.metadata["num_hidden_layers"], "12");
  EXPECT_EQ(gpt2.metadata["max_position_embeddings"], "1024");
}

TEST_F(ModelRegistryTest, RefusesWhatTheTrainerCannotRunNamingTheField) {
  EXPECT_THAT(
      Inspect("m", R"({"architectures": ["MambaForCausalLM"]})").status(),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("model m: " + dir_.Sub("storage/models/m") +
                         "/config.json: architecture \"MambaForCausalLM\" is "
                         "not supported (supported: LlamaForCausalLM, "
                         "MistralForCausalLM, Qwen2ForCausalLM, "
                         "Qwen3ForCausalLM, Phi3ForCausalLM, "
                         "Gemma2ForCausalLM, GPT2LMHeadModel)")));
  EXPECT_THAT(Inspect("y", std::string(kLlama) +
                               R"(, "rope_scaling": {"rope_type": "yarn"}})")
                  .status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("field \"rope_scaling\" type \"yarn\" is not "
                                 "supported (only \"llama3\")")));
  EXPECT_THAT(
      Inspect("q", R"({"architectures": ["Phi3ForCausalLM"], "vocab_size": 256,
          "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
          "num_attention_heads": 4, "rope_scaling": {"type": "yarn"}})")
          .status(),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("field \"rope_scaling\" type \"yarn\" is not "
                         "supported (supported: \"default\", \"longrope\")")));
  EXPECT_THAT(Inspect("e", "{}").status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("field \"architectures\" must be a list")));

  // Through the scheduler's config file, as at start-up.
  Model("g2", R"({"architectures": ["Gemma2ForCausalLM"], "vocab_size": 256,
      "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
      "num_attention_heads": 4, "hidden_activation": "gelu"})");
  std::ofstream(dir_.Sub("scheduler.json"))
      << R"({"models": [{"name": "g2"}]})";
  EXPECT_THAT(
      LoadSchedulerConfig(dir_.Sub("scheduler.json"), dir_.Sub("storage"))
          .status(),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("model g2: " + dir_.Sub("storage/models/g2") +
                         "/config.json: field \"hidden_activation\" \"gelu\" "
                         "is not supported (supported: "
                         "\"gelu_pytorch_tanh\")")));
}

TEST(DetectChatTemplateTest, KnowsEveryTemplateTheTrainerRenders) {
  EXPECT_EQ(DetectChatTemplate("{{ '<start_of_turn>' + role + '\\n' }}"),
            "gemma");
  EXPECT_EQ(DetectChatTemplate(
                "{{'<|user|>\\n' + m['content'] + '<|end|>\\n'}}"
                "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}"),
            "phi3");
  EXPECT_EQ(DetectChatTemplate("<|im_start|>"), "chatml");
  EXPECT_EQ(DetectChatTemplate("<|start_header_id|>"), "llama3");
  EXPECT_EQ(DetectChatTemplate("{{ x }}"), "");
}

}  // namespace
}  // namespace ftune::server
