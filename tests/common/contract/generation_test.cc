#include "common/contract/generation.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ftune::contract {
namespace {

TEST(GenerationTest, DefaultsAreInRangeAndEachBadSettingIsNamed) {
  EXPECT_EQ(CheckGeneration(GenerationSpec()), std::nullopt);
  auto bad = [](auto change) {
    GenerationSpec g;
    change(g);
    std::optional<FieldViolation> v = CheckGeneration(g);
    return v ? v->field + ": " + v->why : std::string("ok");
  };
  EXPECT_EQ(bad([](GenerationSpec& g) { g.temperature = -1; }),
            "temperature: must be in [0, 100], got -1");
  EXPECT_EQ(bad([](GenerationSpec& g) { g.top_p = 0; }),
            "top_p: must be in (0, 1], got 0");
  EXPECT_EQ(bad([](GenerationSpec& g) { g.top_p = 1.5; }),
            "top_p: must be in (0, 1], got 1.5");
  EXPECT_EQ(bad([](GenerationSpec& g) { g.max_new_tokens = 4097; }),
            "max_new_tokens: must be in [1, 4096], got 4097");
  EXPECT_EQ(bad([](GenerationSpec& g) { g.max_new_tokens = 0; }),
            "max_new_tokens: must be in [1, 4096], got 0");
  EXPECT_EQ(bad([](GenerationSpec& g) { g.repetition_penalty = 0; }),
            "repetition_penalty: must be in (0, 100], got 0");
  EXPECT_EQ(bad([](GenerationSpec& g) { g.top_k = -1; }),
            "top_k: must be in [0, 1048576], got -1");
  EXPECT_EQ(bad([](GenerationSpec& g) {
              g.stop = {"a", "b", "c", "d", "e"};
            }),
            "stop: at most 4 stop sequences, got 5");
  EXPECT_EQ(bad([](GenerationSpec& g) {
              g.stop = {"a", ""};
            }),
            "stop[1]: length in bytes must be in [1, 256], got 0");
  EXPECT_EQ(bad([](GenerationSpec& g) { g.temperature = 0.7; }), "ok");
}

TEST(GenerationTest, TruncateTextKeepsWholeCharactersAndMarksTheCut) {
  const std::string marker = defaults::kTruncationMarker;
  EXPECT_EQ(TruncateText("short", 100), "short");
  const std::string cut = TruncateText(std::string(100, 'x'), 40);
  EXPECT_EQ(cut, std::string(40 - marker.size(), 'x') + marker);
  // "é" is two bytes: a cut inside it keeps neither byte.
  std::string accents;
  for (int i = 0; i < 30; ++i) accents += "\xC3\xA9";
  const std::string a = TruncateText(accents, marker.size() + 5);
  EXPECT_EQ(a, "\xC3\xA9\xC3\xA9" + marker);
  EXPECT_EQ(TruncateText(accents, 3), marker);
}

}  // namespace
}  // namespace ftune::contract
