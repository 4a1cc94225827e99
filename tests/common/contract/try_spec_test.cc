// The try job's trainer spec (common/contract/try_spec.h): a training spec
// plus "generate", both ways, and its checks naming the field.
#include "common/contract/try_spec.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/status_matchers.h"

namespace ftune::contract {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

TrainSpec Train() {
  TrainSpec t;
  t.model_dir = "/m";
  t.train_data = "/t.jsonl";
  t.output_dir = "/o";
  t.checkpoint_dir = "/c";
  return t;
}

TEST(TrySpecTest, SurvivesTheRoundTrip) {
  TrySpec want{Train(), {}};
  want.train.lora.rank = 4;
  GenerateSpec& g = want.generate;
  g.weights = GenerateSpec::Weights::kCheckpoint;
  g.weights_dir = "/ck/step-00000008";
  g.prompts = {R"({"prompt":"hello"})",
               R"({"messages":[{"content":"hi","role":"user"}]})"};
  g.generation.max_new_tokens = 9;
  g.generation.temperature = 0.5;
  g.generation.stop = {"###"};
  const std::string text = TrySpecToJson(want);
  EXPECT_TRUE(IsTrySpec(text));
  EXPECT_FALSE(IsTrySpec(TrainSpecToJson(want.train)));
  absl::StatusOr<TrySpec> back = ParseTrySpec(text);
  ASSERT_TRUE(back.ok()) << back.status() << "\n" << text;
  EXPECT_EQ(back->train.lora.rank, 4);
  EXPECT_EQ(back->generate.weights, GenerateSpec::Weights::kCheckpoint);
  EXPECT_EQ(back->generate.weights_dir, "/ck/step-00000008");
  EXPECT_EQ(back->generate.prompts, g.prompts);
  EXPECT_EQ(back->generate.generation.max_new_tokens, 9);
  EXPECT_EQ(back->generate.generation.temperature, 0.5);
  EXPECT_EQ(back->generate.generation.stop, g.generation.stop);
  // The sample completions' defaults: greedy, 64 new tokens.
  json minimal = json::parse(TrainSpecToJson(Train()));
  minimal["generate"] = {{"prompts", json::array({{{"prompt", "x"}}})}};
  absl::StatusOr<TrySpec> d = ParseTrySpec(minimal.dump());
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->generate.weights, GenerateSpec::Weights::kBase);
  EXPECT_EQ(d->generate.generation.max_new_tokens,
            defaults::kSampleMaxNewTokens);
  EXPECT_EQ(d->generate.generation.temperature, 0);
}

TEST(TrySpecTest, BadSectionsNameTheField) {
  auto error = [](const json& gen) {
    json j = json::parse(TrainSpecToJson(Train()));
    j["generate"] = gen;
    return ParseTrySpec(j.dump()).status().ToString();
  };
  const json one = json::array({{{"prompt", "x"}}});
  EXPECT_THAT(error({{"prompts", json::array()}}),
              HasSubstr("\"generate.prompts\": must hold 1 to 32 prompts"));
  EXPECT_THAT(
      error({{"prompts", json(std::vector<json>(33, {{"prompt", "x"}}))}}),
      HasSubstr("got 33"));
  EXPECT_THAT(error({{"prompts", json::array({1})}}),
              HasSubstr("\"generate.prompts[0]\": must be an object"));
  EXPECT_THAT(error({{"weights", "adapter"}, {"prompts", one}}),
              HasSubstr("\"generate.weights_dir\": is required"));
  EXPECT_THAT(
      error({{"weights", "base"}, {"weights_dir", "/a"}, {"prompts", one}}),
      HasSubstr("\"generate.weights_dir\": must be empty"));
  EXPECT_THAT(error({{"weights", "lora"}, {"prompts", one}}),
              HasSubstr("\"generate.weights\": must be"));
  EXPECT_THAT(error({{"prompts", one}, {"generation", {{"top_p", 0}}}}),
              HasSubstr("\"generate.generation.top_p\": must be in (0, 1]"));
  EXPECT_THAT(error({{"prompts", one}, {"generation", {{"eval_samples", 2}}}}),
              HasSubstr("\"generate.generation.eval_samples\": unknown"));
  EXPECT_THAT(error({{"prompts", one}, {"extra", 1}}),
              HasSubstr("\"generate.extra\": unknown field"));
  // The training part is checked as ever.
  json j = json::parse(TrainSpecToJson(Train()));
  j.erase("train_data");
  j["generate"] = {{"prompts", one}};
  EXPECT_THAT(ParseTrySpec(j.dump()).status().ToString(),
              HasSubstr("\"train_data\": is required"));
}

}  // namespace
}  // namespace ftune::contract
