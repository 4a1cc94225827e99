#include "common/dataset.h"

#include <fstream>
#include <string>

#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace ftune {
namespace {

using ::ftune::testing::StatusIs;
using ::testing::HasSubstr;

absl::Status LineStatus(absl::string_view line, int64_t n = 1) {
  return ParseExampleLine(line, n).status();
}

void ExpectBad(absl::string_view line, absl::string_view message,
               int64_t n = 3) {
  EXPECT_THAT(LineStatus(line, n), StatusIs(absl::StatusCode::kInvalidArgument,
                                            HasSubstr(std::string(message))))
      << line;
}

TEST(ParseExampleLineTest, Messages) {
  ASSERT_OK_AND_ASSIGN(
      Example ex,
      ParseExampleLine(R"({"messages":[{"role":"system","content":"be brief"},)"
                       R"({"role":"user","content":"hi","name":"bob"},)"
                       R"({"role":"assistant","content":"hello","weight":0},)"
                       R"({"role":"user","content":"again"},)"
                       R"({"role":"assistant","content":"yo"}],"id":7})",
                       5));
  EXPECT_EQ(ex.format, DatasetFormat::kMessages);
  EXPECT_EQ(ex.line_number, 5);
  ASSERT_EQ(ex.messages.size(), 5u);
  EXPECT_EQ(ex.messages[0].role, Role::kSystem);
  EXPECT_EQ(ex.messages[0].content, "be brief");
  EXPECT_EQ(ex.messages[1].role, Role::kUser);
  EXPECT_EQ(ex.messages[2].role, Role::kAssistant);
  EXPECT_FALSE(ex.messages[2].trainable);
  EXPECT_TRUE(ex.messages[4].trainable);
  EXPECT_EQ(ex.messages[4].content, "yo");
}

TEST(ParseExampleLineTest, PromptCompletionAndText) {
  ASSERT_OK_AND_ASSIGN(
      Example pc,
      ParseExampleLine(R"({"prompt":"","completion":"x\u00e9"})", 1));
  EXPECT_EQ(pc.format, DatasetFormat::kPromptCompletion);
  EXPECT_EQ(pc.prompt, "");
  EXPECT_EQ(pc.completion, "x\xC3\xA9");
  ASSERT_OK_AND_ASSIGN(Example t, ParseExampleLine(R"({"text":"a\nb"})", 1));
  EXPECT_EQ(t.format, DatasetFormat::kText);
  EXPECT_EQ(t.text, "a\nb");
}

TEST(ParseExampleLineTest, BomOnlyOnFirstLine) {
  ASSERT_OK_AND_ASSIGN(Example t,
                       ParseExampleLine("\xEF\xBB\xBF{\"text\":\"a\"}", 1));
  EXPECT_EQ(t.text, "a");
  ExpectBad("\xEF\xBB\xBF{\"text\":\"a\"}", "line 3: byte order mark");
}

TEST(ParseExampleLineTest, CrlfStripped) {
  ASSERT_OK_AND_ASSIGN(Example t, ParseExampleLine("{\"text\":\"a\"}\r", 2));
  EXPECT_EQ(t.text, "a");
}

TEST(ParseExampleLineTest, BlankLinesAreSkipped) {
  EXPECT_THAT(LineStatus(""),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("blank")));
  EXPECT_THAT(LineStatus(" \t\r"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("blank")));
}

TEST(ParseExampleLineTest, UnknownRole) {
  ExpectBad(
      R"({"messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b"},{"role":"bot","content":"c"}]})",
      "line 3: messages[2].role: unknown role \"bot\" (expected system, "
      "user, assistant)");
}

TEST(ParseExampleLineTest, EachKindOfBadInput) {
  ExpectBad("{\"text\":\"a\xFF\"}", "line 3: invalid UTF-8 at byte 11");
  ExpectBad("{\"text\":\"\xED\xA0\x80\"}",
            "invalid UTF-8 at byte 10");                  // surrogate
  ExpectBad("{\"text\":\"\xC0\xAF\"}", "invalid UTF-8");  // overlong
  ExpectBad("{\"text\":\"\xE2\x82\"}", "invalid UTF-8");  // truncated
  ExpectBad(R"({"text":"a")", "line 3: invalid JSON: parse error");
  ExpectBad(R"(["text"])", "line 3: expected a JSON object, got an array");
  ExpectBad(R"({"txt":"a"})",
            "no \"messages\", \"prompt\"/\"completion\", \"text\", "
            "\"prompt\"/\"chosen\"/\"rejected\" or "
            "\"input\"/\"preferred_output\"/\"non_preferred_output\" key");
  ExpectBad(R"({"text":"a","prompt":"b","completion":"c"})", "mixes the keys");
  ExpectBad(R"({"text":5})", "line 3: text: expected a string, got a number");
  ExpectBad(R"({"text":""})", "line 3: text: empty");
  ExpectBad(R"({"prompt":"a"})", "line 3: completion: missing");
  ExpectBad(R"({"completion":"a"})", "line 3: prompt: missing");
  ExpectBad(R"({"prompt":"a","completion":""})", "completion: empty");
  ExpectBad(R"({"prompt":null,"completion":"b"})",
            "prompt: expected a string, got null");
  ExpectBad(R"({"messages":{}})", "messages: expected an array, got an object");
  ExpectBad(R"({"messages":[]})", "messages: empty array");
  ExpectBad(R"({"messages":["hi"]})",
            "messages[0]: expected an object, got a string");
  ExpectBad(R"({"messages":[{"content":"a"}]})", "messages[0].role: missing");
  ExpectBad(R"({"messages":[{"role":"user"}]})",
            "messages[0].content: missing");
  ExpectBad(R"({"messages":[{"role":"user","content":["a"]}]})",
            "messages[0].content: expected a string, got an array");
  ExpectBad(
      R"({"messages":[{"role":"user","content":"a"},{"role":"system","content":"s"},{"role":"assistant","content":"b"}]})",
      "messages[1].role: a system message may only be the first message");
  ExpectBad(R"({"messages":[{"role":"user","content":"a"}]})",
            "messages: no assistant message");
  ExpectBad(
      R"({"messages":[{"role":"user","content":"a"},{"role":"assistant","content":""}]})",
      "messages[1].content: empty assistant message");
  ExpectBad(
      R"({"messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b","weight":0}]})",
      "every assistant message has weight 0");
  ExpectBad(
      R"({"messages":[{"role":"user","content":"a","weight":1},{"role":"assistant","content":"b"}]})",
      "messages[0].weight: only assistant messages");
  ExpectBad(
      R"({"messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b","weight":0.5}]})",
      "messages[1].weight: expected 0 or 1, got 0.5");
}

TEST(ParseExampleLineTest, PreferencePairs) {
  absl::StatusOr<Example> ex =
      ParseExampleLine(R"({"prompt":"2+2?","chosen":"4","rejected":"5"})", 7);
  ASSERT_TRUE(ex.ok()) << ex.status();
  EXPECT_EQ(ex->format, DatasetFormat::kPreference);
  EXPECT_TRUE(IsPreferenceFormat(ex->format));
  EXPECT_EQ(ex->prompt, "2+2?");
  EXPECT_EQ(ex->chosen, "4");
  EXPECT_EQ(ex->rejected, "5");

  ex = ParseExampleLine(
      R"({"input":{"messages":[{"role":"system","content":"s"},{"role":"user","content":"q"}]},"preferred_output":[{"role":"assistant","content":"yes"}],"non_preferred_output":[{"role":"assistant","content":"no"}]})",
      8);
  ASSERT_TRUE(ex.ok()) << ex.status();
  EXPECT_EQ(ex->format, DatasetFormat::kChatPreference);
  EXPECT_TRUE(IsPreferenceFormat(ex->format));
  ASSERT_EQ(ex->messages.size(), 2u);
  EXPECT_EQ(ex->messages[1].content, "q");
  ASSERT_EQ(ex->chosen_messages.size(), 1u);
  EXPECT_EQ(ex->chosen_messages[0].content, "yes");
  ASSERT_EQ(ex->rejected_messages.size(), 1u);
  EXPECT_EQ(ex->rejected_messages[0].content, "no");
  EXPECT_FALSE(IsPreferenceFormat(DatasetFormat::kMessages));
}

TEST(ParseExampleLineTest, EachKindOfBadPreferencePair) {
  ExpectBad(R"({"prompt":"q","chosen":"a","rejected":"a"})",
            "line 3: rejected: the same text as chosen");
  ExpectBad(R"({"prompt":"q","chosen":"","rejected":"b"})",
            "line 3: chosen: empty");
  ExpectBad(R"({"prompt":"q","chosen":"a","rejected":""})",
            "line 3: rejected: empty");
  ExpectBad(R"({"prompt":"q","chosen":"a"})", "line 3: rejected: missing");
  ExpectBad(R"({"chosen":"a","rejected":"b"})", "line 3: prompt: missing");
  ExpectBad(R"({"prompt":"q","chosen":"a","rejected":"b","completion":"c"})",
            "mixes the keys");
  ExpectBad(R"({"prompt":"q","chosen":"a","rejected":"b","text":"c"})",
            "mixes the keys");
  ExpectBad(R"({"input":"q","preferred_output":[],"non_preferred_output":[]})",
            "line 3: input: expected an object, got a string");
  ExpectBad(R"({"input":{},"preferred_output":[]})",
            "line 3: input.messages: missing");
  const std::string user =
      R"({"input":{"messages":[{"role":"user","content":"q"}]},)";
  ExpectBad(
      R"({"input":{"messages":[{"role":"user","content":"q"},{"role":"assistant","content":"a"}]},"preferred_output":[{"role":"assistant","content":"x"}],"non_preferred_output":[{"role":"assistant","content":"y"}]})",
      "line 3: input.messages[1].role: the input must end with a user message");
  ExpectBad(
      user + R"("non_preferred_output":[{"role":"assistant","content":"y"}]})",
      "line 3: preferred_output: missing");
  ExpectBad(
      user +
          R"("preferred_output":[],"non_preferred_output":[{"role":"assistant","content":"y"}]})",
      "line 3: preferred_output: empty array");
  ExpectBad(
      user +
          R"("preferred_output":[{"role":"user","content":"x"}],"non_preferred_output":[{"role":"assistant","content":"y"}]})",
      "line 3: preferred_output[0].role: outputs are assistant messages");
  ExpectBad(
      user +
          R"("preferred_output":[{"role":"assistant","content":""}],"non_preferred_output":[{"role":"assistant","content":"y"}]})",
      "line 3: preferred_output[0].content: empty assistant message");
  ExpectBad(
      user +
          R"("preferred_output":[{"role":"assistant","content":"x"}],"non_preferred_output":[{"role":"assistant","content":"x"}]})",
      "line 3: non_preferred_output: the same as preferred_output");
}

TEST(ParseExampleLineTest, LineLengthLimit) {
  DatasetLimits limits;
  limits.max_line_bytes = 19;
  EXPECT_OK(ParseExampleLine(R"({"text":"abcdefgh"})", 1, limits).status());
  EXPECT_THAT(ParseExampleLine(R"({"text":"abcdefghi"})", 4, limits).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("line 4: line is 20 bytes, longer than the "
                                 "limit of 19")));
}

TEST(FindInvalidUtf8Test, ValidAndInvalid) {
  EXPECT_EQ(FindInvalidUtf8("plain"), -1);
  EXPECT_EQ(FindInvalidUtf8("\xF0\x9F\x98\x80 \xE4\xB8\xAD"),
            -1);  // emoji, CJK
  EXPECT_EQ(FindInvalidUtf8("ab\x80"), 2);
  EXPECT_EQ(FindInvalidUtf8("\xF4\x90\x80\x80"), 0);  // > U+10FFFF
  EXPECT_EQ(FindInvalidUtf8("\xF0\x80\x80\x80"), 0);  // overlong
}

TEST(DatasetValidatorTest, ChunkedInputAcrossLineBoundaries) {
  const std::string data =
      "\xEF\xBB\xBF{\"text\":\"one\"}\r\n\n{\"text\":\"two\"}\r\n   "
      "\n{\"text\":\"three\"}";
  for (size_t chunk = 1; chunk <= data.size(); ++chunk) {
    DatasetValidator v;
    for (size_t i = 0; i < data.size(); i += chunk) {
      v.Add(absl::string_view(data).substr(i, chunk));
    }
    ValidationReport r = v.Finish();
    EXPECT_TRUE(r.ok()) << chunk << " " << r.ToStatus();
    EXPECT_EQ(r.format, DatasetFormat::kText);
    EXPECT_EQ(r.examples, 3);
    EXPECT_EQ(r.lines, 5);
  }
}

TEST(DatasetValidatorTest, MixedFormatsAreAnError) {
  DatasetValidator v;
  v.Add("{\"text\":\"a\"}\n{\"prompt\":\"p\",\"completion\":\"c\"}\n");
  ValidationReport r = v.Finish();
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.examples, 1);
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(
      r.errors[0],
      "line 2: format \"prompt_completion\" differs from \"text\" of line 1 "
      "(one format per file)");
}

TEST(DatasetValidatorTest, CollectsFirstNErrorsAndCountsAll) {
  DatasetLimits limits;
  limits.max_errors = 2;
  DatasetValidator v(limits);
  v.Add("{\"text\":\"ok\"}\nbad\n{}\n{\"text\":1}\n{\"text\":\"ok\"}\n");
  ValidationReport r = v.Finish();
  EXPECT_EQ(r.examples, 2);
  EXPECT_EQ(r.error_count, 3);
  ASSERT_EQ(r.errors.size(), 2u);
  EXPECT_THAT(r.errors[0], HasSubstr("line 2: invalid JSON"));
  EXPECT_THAT(r.errors[1], HasSubstr("line 3: no \"messages\""));
  EXPECT_THAT(r.ToStatus(), StatusIs(absl::StatusCode::kInvalidArgument,
                                     HasSubstr("(1 more errors)")));
}

TEST(DatasetValidatorTest, OverlongLineIsReportedOnceAndSkipped) {
  DatasetLimits limits;
  limits.max_line_bytes = 16;
  DatasetValidator v(limits);
  v.Add("{\"text\":\"a\"}\n{\"text\":\"");
  v.Add(std::string(100, 'x'));
  v.Add("\"}\n{\"text\":\"b\"}\n");
  ValidationReport r = v.Finish();
  EXPECT_EQ(r.examples, 2);
  EXPECT_EQ(r.lines, 3);
  ASSERT_EQ(r.error_count, 1);
  EXPECT_THAT(r.errors[0],
              HasSubstr("line 2: line is longer than the limit of 16"));
}

TEST(DatasetValidatorTest, EmptyFileHasNoExamples) {
  DatasetValidator v;
  v.Add("\n\n  \n");
  ValidationReport r = v.Finish();
  EXPECT_FALSE(r.ok());
  EXPECT_THAT(r.ToStatus(), StatusIs(absl::StatusCode::kInvalidArgument,
                                     HasSubstr("no examples")));
}

TEST(ValidateDatasetFileTest, ReadsFileAndReportsMissing) {
  testing::TempDir dir;
  const std::string path = dir.Sub("d.jsonl");
  {
    std::ofstream out(path, std::ios::binary);
    for (int i = 0; i < 5000; ++i) {
      out << R"({"messages":[{"role":"user","content":"q)" << i
          << R"("},{"role":"assistant","content":"a"}]})"
          << "\n";
    }
  }
  ASSERT_OK_AND_ASSIGN(ValidationReport r, ValidateDatasetFile(path));
  EXPECT_TRUE(r.ok());
  EXPECT_EQ(r.examples, 5000);
  EXPECT_EQ(r.format, DatasetFormat::kMessages);
  EXPECT_THAT(
      ValidateDatasetFile(dir.Sub("missing.jsonl")).status(),
      StatusIs(absl::StatusCode::kNotFound, HasSubstr("missing.jsonl")));
}

TEST(ParseDatasetTest, KeepsExamplesWithLineNumbers) {
  ASSERT_OK_AND_ASSIGN(ParsedDataset d,
                       ParseDataset("{\"text\":\"a\"}\n\n{\"text\":\"b\"}\n"));
  EXPECT_EQ(d.format, DatasetFormat::kText);
  ASSERT_EQ(d.examples.size(), 2u);
  EXPECT_EQ(d.examples[1].text, "b");
  EXPECT_EQ(d.examples[1].line_number, 3);
  EXPECT_THAT(ParseDataset("{\"text\":\"a\"}\n{\"text\":2}\n").status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("line 2: text: expected a string")));
}

}  // namespace
}  // namespace ftune
