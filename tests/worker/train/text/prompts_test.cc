#include "worker/train/text/prompts.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace ftune::train {
namespace {

using ::ftune::testing::StatusIs;
using ::testing::HasSubstr;

TEST(PromptsTest, EveryFormatAndTheExpectedCompletion) {
  ASSERT_OK_AND_ASSIGN(std::vector<GenerationPrompt> p,
                       ParsePrompts(R"({"prompt": "2+2=", "completion": "4"}

{"prompt": "hello"}
{"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}
{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}], "id": 7}
{"text": "Once upon"}
)"));
  ASSERT_EQ(p.size(), 5u);
  EXPECT_EQ(p[0].example.format, DatasetFormat::kPromptCompletion);
  EXPECT_EQ(p[0].display, "2+2=");
  EXPECT_EQ(p[0].expected, "4");
  EXPECT_TRUE(p[0].example.completion.empty());
  EXPECT_EQ(p[1].expected, std::nullopt);
  EXPECT_EQ(p[1].example.line_number, 3);
  // A trailing assistant message is the expectation, not the prompt.
  EXPECT_EQ(p[2].example.messages.size(), 2u);
  EXPECT_EQ(p[2].display, "hi");
  EXPECT_EQ(p[2].expected, "yo");
  EXPECT_EQ(p[3].display, "user: a\nassistant: b\nuser: c");
  EXPECT_EQ(p[3].expected, std::nullopt);
  EXPECT_EQ(p[4].example.format, DatasetFormat::kText);
  EXPECT_EQ(p[4].display, "Once upon");
}

TEST(PromptsTest, BadLinesNameTheLineAndField) {
  EXPECT_THAT(ParsePrompts("{\"prompt\": \"a\"}\n{\"prompt\": 3}\n").status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("line 2: prompt: must be a string")));
  EXPECT_THAT(
      ParsePrompts(R"({"messages": [{"role": "bot", "content": "x"}]})")
          .status(),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("line 1: messages[0].role: unknown role \"bot\"")));
  EXPECT_THAT(ParsePrompts(R"({"prompt": "a", "text": "b"})").status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("exactly one of")));
  EXPECT_THAT(
      ParsePrompts("\n  \n").status(),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no prompts")));
  EXPECT_THAT(ParsePrompts("[1]").status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("line 1: not a JSON object")));
}

}  // namespace
}  // namespace ftune::train
