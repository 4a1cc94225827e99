// Task metrics: the scoring functions on hand-computed cases, the
// eval_pattern engine, and the spec's rules for task_metrics.
#include "common/contract/task_metrics.h"

#include <string>

#include "common/contract/train_spec.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace ftune::contract {
namespace {

using ::testing::HasSubstr;

TEST(TaskMetricsTest, NormalizeTrimsCollapsesAndFoldsAsciiCase) {
  EXPECT_EQ(NormalizeAnswer("  The\tCat \n\n SAT  "), "the cat sat");
  EXPECT_EQ(NormalizeAnswer(""), "");
  EXPECT_EQ(NormalizeAnswer(" \r\n\t\v\f"), "");
  // Non-ASCII bytes stay as they are (only ASCII letters fold).
  EXPECT_EQ(NormalizeAnswer("\xC3\x89t\xC3\xA9 OK"), "\xC3\x89t\xC3\xA9 ok");
}

TEST(TaskMetricsTest, TokenF1IsSquadStyleOverNormalisedTokens) {
  // completion "the cat sat" vs reference "the cat": shared 2; precision
  // 2/3, recall 2/2; F1 = 2*(2/3)*1 / (2/3+1) = 0.8.
  EXPECT_DOUBLE_EQ(TokenF1("the cat sat", "the cat"), 0.8);
  // Case and whitespace do not matter.
  EXPECT_DOUBLE_EQ(TokenF1(" THE  cat\n", "the cat"), 1.0);
  // Shared tokens count as a multiset: "a a a b" vs "a b b": shared a, b
  // = 2; precision 2/4, recall 2/3; F1 = 2*(1/2)(2/3)/(1/2+2/3) = 4/7.
  EXPECT_DOUBLE_EQ(TokenF1("a a a b", "a b b"), 4.0 / 7.0);
  // Nothing shared; empty texts.
  EXPECT_EQ(TokenF1("dog", "cat"), 0.0);
  EXPECT_EQ(TokenF1("", ""), 1.0);
  EXPECT_EQ(TokenF1("  ", "cat"), 0.0);
  EXPECT_EQ(TokenF1("cat", ""), 0.0);
  // Order does not matter.
  EXPECT_DOUBLE_EQ(TokenF1("sat cat the", "the cat sat"), 1.0);
}

TEST(TaskMetricsTest, ScoreCompletionSeparatesExactFromNormalised) {
  TaskScore s = ScoreCompletion("tac", "tac");
  EXPECT_TRUE(s.exact_match);
  EXPECT_TRUE(s.normalized_match);
  EXPECT_EQ(s.token_f1, 1.0);
  s = ScoreCompletion(" Tac\n", "tac");
  EXPECT_FALSE(s.exact_match);
  EXPECT_TRUE(s.normalized_match);
  EXPECT_EQ(s.token_f1, 1.0);
  s = ScoreCompletion("tac god", "tac");
  EXPECT_FALSE(s.exact_match);
  EXPECT_FALSE(s.normalized_match);
  // precision 1/2, recall 1: F1 2/3.
  EXPECT_DOUBLE_EQ(s.token_f1, 2.0 / 3.0);

  TaskCounts counts;
  counts.Add(ScoreCompletion("tac", "tac"));
  counts.Add(ScoreCompletion("TAC", "tac"));
  counts.Add(ScoreCompletion("x", "tac"));
  EXPECT_EQ(counts.examples, 3);
  EXPECT_EQ(counts.exact, 1);
  EXPECT_EQ(counts.normalized, 2);
  EXPECT_DOUBLE_EQ(counts.token_f1_sum, 2.0);
}

TEST(TaskMetricsTest, PatternsAreRe2SearchedAnywhere) {
  absl::StatusOr<CompletionPattern> p =
      CompletionPattern::Compile(R"re(\{"label": "(yes|no)"\})re");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_TRUE(p->Matches(R"(sure: {"label": "no"} done)"));
  EXPECT_FALSE(p->Matches(R"({"label": "maybe"})"));
  absl::StatusOr<CompletionPattern> anchored =
      CompletionPattern::Compile("^[a-z]+$");
  ASSERT_TRUE(anchored.ok());
  EXPECT_TRUE(anchored->Matches("tac"));
  EXPECT_FALSE(anchored->Matches("tac "));
  EXPECT_FALSE(anchored->Matches(""));
  // Backreferences are not RE2; nor is an unbalanced group.
  EXPECT_THAT(EvalPatternProblem(R"((a)\1)"), HasSubstr("RE2"));
  EXPECT_THAT(EvalPatternProblem("(abc"), HasSubstr("missing )"));
  EXPECT_THAT(EvalPatternProblem(""), HasSubstr("empty"));
  EXPECT_THAT(EvalPatternProblem(std::string(kEvalPatternMaxBytes + 1, 'a')),
              HasSubstr("at most 1024 bytes"));
  EXPECT_EQ(EvalPatternProblem("^(yes|no)$"), "");
}

TEST(TaskMetricsTest, SelectBestByNames) {
  for (SelectBestBy by : {SelectBestBy::kEvalLoss, SelectBestBy::kExactMatch,
                          SelectBestBy::kPatternMatch}) {
    EXPECT_EQ(ParseSelectBestBy(Name(by)), by);
  }
  EXPECT_EQ(ParseSelectBestBy("token_f1"), std::nullopt);
}

nlohmann::json BaseSpec() {
  return {{"model_dir", "/m"},
          {"train_data", "/t.jsonl"},
          {"validation_data", "/v.jsonl"},
          {"output_dir", "/o"},
          {"checkpoint_dir", "/c"}};
}

std::string ErrorOf(const nlohmann::json& spec) {
  absl::StatusOr<TrainSpec> s = ParseTrainSpec(spec.dump());
  return s.ok() ? "" : std::string(s.status().message());
}

TEST(TaskMetricsSpecTest, DefaultsRoundTripAndRefusals) {
  nlohmann::json spec = BaseSpec();
  absl::StatusOr<TrainSpec> parsed = ParseTrainSpec(spec.dump());
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->task_metrics.eval_task_examples,
            defaults::kEvalTaskExamples);
  EXPECT_EQ(parsed->task_metrics.select_best_by, SelectBestBy::kEvalLoss);

  spec["task_metrics"] = {{"eval_task_examples", 8},
                          {"max_new_tokens", 16},
                          {"eval_pattern", "^[a-z]+$"},
                          {"select_best_by", "pattern_match"}};
  parsed = ParseTrainSpec(spec.dump());
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  absl::StatusOr<TrainSpec> back = ParseTrainSpec(TrainSpecToJson(*parsed));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->task_metrics.eval_task_examples, 8);
  EXPECT_EQ(back->task_metrics.max_new_tokens, 16);
  EXPECT_EQ(back->task_metrics.eval_pattern, "^[a-z]+$");
  EXPECT_EQ(back->task_metrics.select_best_by, SelectBestBy::kPatternMatch);

  nlohmann::json bad = BaseSpec();
  bad["task_metrics"] = {{"eval_pattern", "(abc"}};
  EXPECT_THAT(ErrorOf(bad), HasSubstr("\"task_metrics.eval_pattern\""));
  bad["task_metrics"] = {{"eval_task_examples", 1025}};
  EXPECT_THAT(ErrorOf(bad), HasSubstr("\"task_metrics.eval_task_examples\""));
  bad["task_metrics"] = {{"select_best_by", "pattern_match"}};
  EXPECT_THAT(ErrorOf(bad), HasSubstr("needs an eval_pattern"));
  bad["task_metrics"] = {{"select_best_by", "exact_match"},
                         {"eval_task_examples", 0}};
  EXPECT_THAT(ErrorOf(bad), HasSubstr("needs eval_task_examples > 0"));
  bad["task_metrics"] = {{"select_best_by", "f1"}};
  EXPECT_THAT(ErrorOf(bad), HasSubstr("\"task_metrics.select_best_by\""));
  // Where the metric cannot exist.
  nlohmann::json no_val = BaseSpec();
  no_val.erase("validation_data");
  no_val["task_metrics"] = {{"select_best_by", "exact_match"}};
  EXPECT_THAT(ErrorOf(no_val), HasSubstr("needs validation_data"));
  no_val["task_metrics"] = {{"eval_pattern", "x"}};
  EXPECT_THAT(ErrorOf(no_val), HasSubstr("\"task_metrics.eval_pattern\""));
  nlohmann::json dpo = BaseSpec();
  dpo["objective"] = "dpo";
  dpo["task_metrics"] = {{"select_best_by", "exact_match"}};
  EXPECT_THAT(ErrorOf(dpo), HasSubstr("task metrics need"));
  // Without validation data the default count does not apply (no error).
  no_val.erase("task_metrics");
  EXPECT_EQ(ErrorOf(no_val), "");
}

}  // namespace
}  // namespace ftune::contract
