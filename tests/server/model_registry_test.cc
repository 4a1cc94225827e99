// The scheduler's config file and model directory inspection
// (server/model_registry.h) on hostile or malformed input: a clean
// INVALID_ARGUMENT (or an ignored value), never an exception that would stop
// the scheduler, never an overflow. Regression tests of what
// tests/fuzz/fuzz_model_registry and fuzz_scheduler_config guard.
#include "server/model_registry.h"

#include <cstdint>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

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
  EXPECT_EQ(c.models[0].metadata.at("supported_methods"), "lora,qlora");
  EXPECT_EQ(c.models[1].directory, "models/x.y");
  EXPECT_EQ(c.models[1].metadata.at("supported_methods"), "lora");
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

TEST(ModelDirectoryTest, ConfigJsonOfTheWrongShapeIsRefused) {
  core::Model m;
  EXPECT_FALSE(ReadModelConfigJson("[]", m).ok());
  ASSERT_OK(ReadModelConfigJson(
      R"({"architectures": [5], "hidden_size": "64", "num_attention_heads": 4})",
      m));
  EXPECT_EQ(m.metadata.count("architecture"), 0u);
  EXPECT_EQ(m.metadata.count("hidden_size"), 0u);
  EXPECT_EQ(m.metadata.at("num_key_value_heads"), "4");
}

}  // namespace
}  // namespace ftune::server
