// The trainer's progress lines: every event survives ToJsonLine ->
// ParseProgressLine, unknown types pass through, and bad lines are errors.
#include "common/contract/progress.h"

#include <cmath>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ftune::contract {
namespace {

using ::testing::HasSubstr;

// One event of each type, every field away from its default.
std::vector<ProgressEvent> EveryEvent() {
  DataEvent data{"validation", 1, 2, 3, 4, 5, 6, 7, {{"format", "chat"}}};
  return {
      data,
      ResumedEvent{8, "/c/step-8"},
      StartEvent{9, 10, 11, 12, 13, 14},
      MetricsEvent{15, 16, 0.5, 2.25, 1e-4, 0.75, 1234.5, 1 << 20,
                   PreferenceMetrics{0.5, -0.25, 0.75, 0.75, -12.5, -20},
                   /*predicted_peak_memory_bytes=*/3 << 20,
                   /*tensor_peak_memory_bytes=*/2 << 20,
                   /*padding_share=*/0.375},
      OomRetryEvent{17, 2, 4, "CUDA out of memory"},
      EvalEvent{18, 1.5, 1.25, 12,
                PreferenceMetrics{0.125, -0.5, 1, 0.625, -3, -4.5},
                TaskMetrics{32, 0.25, 0.375, 0.5, 0.75}},
      EarlyStopEvent{19, 12},
      CheckpointEvent{20, "/c/step-20"},
      InterruptedEvent{21, "/c/step-21"},
      DoneEvent{22, "/o", 0.125, 1.0},
      ErrorEvent{kReasonBadInput, "spec field \"x\": bad"},
      SamplesEvent{23,
                   {{"What is 2+2?", "4", "four\nlines", "end"},
                    {"user: hi\nassistant: yo", std::nullopt, "", "length"}}}};
}

TEST(ProgressTest, EveryEventSurvivesTheRoundTrip) {
  const std::vector<ProgressEvent> events = EveryEvent();
  // Every known type once, in the order of the variant.
  ASSERT_EQ(events.size() + 1, std::variant_size_v<ProgressEvent>);
  for (size_t i = 0; i < events.size(); ++i) {
    EXPECT_EQ(events[i].index(), i);
    const std::string line = ToJsonLine(events[i]);
    absl::StatusOr<ProgressEvent> back = ParseProgressLine(line);
    ASSERT_TRUE(back.ok()) << back.status() << " " << line;
    EXPECT_EQ(back->index(), i) << line;
    EXPECT_EQ(ToJsonLine(*back), line);
  }
  const std::string metrics = ToJsonLine(events[3]);
  EXPECT_THAT(metrics, HasSubstr("\"type\":\"metrics\""));
  EXPECT_THAT(metrics, HasSubstr("\"loss\":2.25"));
  EXPECT_THAT(metrics, HasSubstr("\"peak_memory_bytes\":1048576"));
  EXPECT_THAT(metrics, HasSubstr("\"padding_share\":0.375"));
  EXPECT_THAT(metrics, HasSubstr("\"predicted_peak_memory_bytes\":3145728"));
  EXPECT_THAT(metrics, HasSubstr("\"tensor_peak_memory_bytes\":2097152"));
  EXPECT_THAT(metrics, HasSubstr("\"reward_accuracy\":0.75"));
  const auto eval =
      std::get<EvalEvent>(*ParseProgressLine(ToJsonLine(events[5])));
  ASSERT_TRUE(eval.preference.has_value());
  EXPECT_EQ(eval.preference->rewards_chosen, 0.125);
  EXPECT_EQ(eval.preference->rewards_rejected, -0.5);
  EXPECT_EQ(eval.preference->reward_accuracy, 1);
  EXPECT_EQ(eval.preference->reward_margin, 0.625);
  EXPECT_EQ(eval.preference->logps_chosen, -3);
  EXPECT_EQ(eval.preference->logps_rejected, -4.5);
  ASSERT_TRUE(eval.task.has_value());
  EXPECT_EQ(eval.task->examples, 32);
  EXPECT_EQ(eval.task->exact_match, 0.25);
  EXPECT_EQ(eval.task->normalized_match, 0.375);
  EXPECT_EQ(eval.task->token_f1, 0.5);
  EXPECT_EQ(eval.task->pattern_match, 0.75);
  // Without an eval_pattern there is no pattern_match; without task
  // metrics no task object.
  EvalEvent no_pattern;
  no_pattern.task = TaskMetrics{4, 1, 1, 1, std::nullopt};
  const std::string no_pattern_line = ToJsonLine(no_pattern);
  EXPECT_THAT(no_pattern_line, HasSubstr("\"exact_match\":1"));
  EXPECT_THAT(no_pattern_line, ::testing::Not(HasSubstr("pattern_match")));
  EXPECT_EQ(std::get<EvalEvent>(*ParseProgressLine(no_pattern_line))
                .task->pattern_match,
            std::nullopt);
  EXPECT_THAT(ToJsonLine(EvalEvent{}), ::testing::Not(HasSubstr("task")));
  EXPECT_FALSE(ParseProgressLine(R"({"type":"eval","task":3})").ok());
  EXPECT_FALSE(
      ParseProgressLine(R"({"type":"eval","task":{"exact_match":"x"}})").ok());
  // SFT lines carry no preference object at all.
  EXPECT_THAT(ToJsonLine(MetricsEvent{}),
              ::testing::Not(HasSubstr("preference")));
  EXPECT_FALSE(ParseProgressLine(R"({"type":"eval","preference":3})").ok());
  const auto data =
      std::get<DataEvent>(*ParseProgressLine(ToJsonLine(events[0])));
  EXPECT_EQ(data.description.at("format"), "chat");
  EXPECT_EQ(data.split, "validation");
  EXPECT_EQ(data.dropped_no_target, 7);
}

TEST(ProgressTest, SamplesKeepTheirTextsAndAMissingExpectation) {
  const auto samples = std::get<SamplesEvent>(EveryEvent().back());
  const std::string line = ToJsonLine(samples);
  EXPECT_THAT(line, HasSubstr("\"type\":\"samples\""));
  absl::StatusOr<ProgressEvent> back = ParseProgressLine(line);
  ASSERT_TRUE(back.ok()) << back.status();
  const auto got = std::get<SamplesEvent>(*back);
  EXPECT_EQ(got.step, 23);
  ASSERT_EQ(got.samples.size(), 2u);
  EXPECT_EQ(got.samples[0].prompt, "What is 2+2?");
  EXPECT_EQ(got.samples[0].expected, "4");
  EXPECT_EQ(got.samples[0].completion, "four\nlines");
  EXPECT_EQ(got.samples[0].finish_reason, "end");
  EXPECT_EQ(got.samples[1].expected, std::nullopt);
  EXPECT_EQ(got.samples[1].finish_reason, "length");
  // A completion cut inside a character still makes a valid line.
  SamplesEvent cut{1, {{"p", std::nullopt, "ab\xE2\x82", "length"}}};
  absl::StatusOr<ProgressEvent> cut_back = ParseProgressLine(ToJsonLine(cut));
  ASSERT_TRUE(cut_back.ok()) << cut_back.status();
  EXPECT_THAT(std::get<SamplesEvent>(*cut_back).samples[0].completion,
              ::testing::StartsWith("ab\xEF\xBF\xBD"));
  EXPECT_FALSE(ParseProgressLine(R"({"type":"samples","samples":3})").ok());
  EXPECT_FALSE(
      ParseProgressLine(R"({"type":"samples","samples":[{"prompt":1}]})").ok());
}

TEST(ProgressTest, ADivergedLossIsNullOnTheWireAndNanBack) {
  MetricsEvent m;
  m.step = 3;
  m.loss = std::nan("");
  const std::string line = ToJsonLine(m);
  EXPECT_THAT(line, HasSubstr("\"loss\":null"));
  auto back = std::get<MetricsEvent>(*ParseProgressLine(line));
  EXPECT_TRUE(std::isnan(back.loss));
  DoneEvent d;
  EXPECT_THAT(ToJsonLine(d), HasSubstr("\"best_eval_loss\":null"));
  EXPECT_FALSE(std::get<DoneEvent>(*ParseProgressLine(ToJsonLine(d)))
                   .best_eval_loss.has_value());
}

TEST(ProgressTest, UnknownTypesPassAndBadLinesFail) {
  absl::StatusOr<ProgressEvent> e =
      ParseProgressLine(R"({"type":"sample","step":3})");
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(std::get<UnknownEvent>(*e).type, "sample");
  EXPECT_STREQ(TypeName(*e), "sample");
  EXPECT_FALSE(ParseProgressLine("not json").ok());
  EXPECT_FALSE(ParseProgressLine("[1,2]").ok());
  EXPECT_THAT(
      std::string(ParseProgressLine(R"({"step":1})").status().message()),
      HasSubstr("\"type\""));
  EXPECT_THAT(
      std::string(ParseProgressLine(R"({"type":"metrics","step":"one"})")
                      .status()
                      .message()),
      HasSubstr("\"step\" must be an integer"));
  // Missing fields keep their defaults.
  auto m = std::get<MetricsEvent>(*ParseProgressLine(R"({"type":"metrics"})"));
  EXPECT_EQ(m.step, 0);
}

}  // namespace
}  // namespace ftune::contract
