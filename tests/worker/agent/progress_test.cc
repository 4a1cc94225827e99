#include "worker/agent/progress.h"

#include "common/contract/limits.h"
#include "common/contract/progress.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ftune::agent {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

const absl::Time kT0 = absl::FromUnixSeconds(1'700'000'000);

ProgressOptions Options(int64_t log_every = 1) {
  ProgressOptions o;
  o.job_id = "job-1";
  o.attempt = 3;
  o.storage_root = "/st";
  o.log_every_steps = log_every;
  o.max_batch_points = 4;
  o.flush_interval = absl::Seconds(1);
  o.dir_size = [](const std::string& dir) -> int64_t {
    return static_cast<int64_t>(dir.size());
  };
  return o;
}

std::string Metrics(int step, double loss, double rate = 100) {
  return "{\"type\":\"metrics\",\"step\":" + std::to_string(step) +
         ",\"total_steps\":10,\"epoch\":" + std::to_string(step / 10.0) +
         ",\"loss\":" + std::to_string(loss) +
         ",\"lr\":0.001,\"grad_norm\":0.5,\"tokens_per_s\":" +
         std::to_string(rate) + "}";
}

TEST(ProgressTest, MetricsBecomePointsAndProgress) {
  ProgressTracker t(Options());
  t.OnLine(Metrics(1, 2.5), kT0);
  t.OnLine(Metrics(2, 2.0), kT0);
  ASSERT_TRUE(t.HasPending());
  v1::ReportProgressRequest b = t.TakeBatch(kT0);
  EXPECT_EQ(b.job_id(), "job-1");
  EXPECT_EQ(b.attempt(), 3);
  EXPECT_EQ(b.batch_number(), 1);
  ASSERT_EQ(b.metrics_size(), 2);
  EXPECT_EQ(b.metrics(1).step(), 2);
  EXPECT_EQ(b.metrics(1).attempt(), 3);
  EXPECT_DOUBLE_EQ(b.metrics(1).train_loss(), 2.0);
  EXPECT_DOUBLE_EQ(b.metrics(1).learning_rate(), 0.001);
  EXPECT_DOUBLE_EQ(b.metrics(1).grad_norm(), 0.5);
  EXPECT_FALSE(b.metrics(1).has_eval_loss());
  EXPECT_EQ(b.metrics(1).sequence(), 0);
  EXPECT_EQ(b.progress().step(), 2);
  EXPECT_EQ(b.progress().total_steps(), 10);
  EXPECT_DOUBLE_EQ(b.progress().percent(), 20.0);
  EXPECT_DOUBLE_EQ(b.progress().epoch(), 0.2);
  EXPECT_FALSE(t.HasPending());
  t.OnLine(Metrics(3, 1.0), kT0);
  EXPECT_EQ(t.TakeBatch(kT0).batch_number(), 2);
  EXPECT_EQ(t.TakeBatch(kT0).batch_number(), 3);
}

TEST(ProgressTest, LogEveryStepsAveragesTheInterval) {
  ProgressTracker t(Options(/*log_every=*/3));
  t.OnLine(Metrics(1, 3.0, 100), kT0);
  t.OnLine(Metrics(2, 2.0, 200), kT0);
  t.OnLine(Metrics(3, 1.0, 300), kT0);  // point: mean of steps 1-3
  t.OnLine(Metrics(4, 0.5, 50), kT0);   // pending until 6 or the end
  t.OnLine("{\"type\":\"interrupted\",\"step\":4,\"path\":\"\"}", kT0);
  v1::ReportProgressRequest b = t.TakeBatch(kT0);
  ASSERT_EQ(b.metrics_size(), 2);
  EXPECT_EQ(b.metrics(0).step(), 3);
  EXPECT_DOUBLE_EQ(b.metrics(0).train_loss(), 2.0);
  EXPECT_DOUBLE_EQ(b.metrics(0).tokens_per_second(), 200.0);
  EXPECT_EQ(b.metrics(1).step(), 4);
  EXPECT_DOUBLE_EQ(b.metrics(1).train_loss(), 0.5);
  EXPECT_TRUE(t.outcome().interrupted);
  EXPECT_EQ(t.outcome().interrupted_step, 4);
}

TEST(ProgressTest, EvalAndCheckpoint) {
  ProgressTracker t(Options());
  t.OnLine(Metrics(5, 1.5), kT0);
  t.OnLine(
      "{\"type\":\"eval\",\"step\":5,\"eval_loss\":1.25,\"best_eval_loss\":"
      "1.25,\"best_step\":5}",
      kT0);
  t.OnLine(
      "{\"type\":\"checkpoint\",\"step\":5,\"path\":\"/st/jobs/t/j/"
      "checkpoints/step-00000005\"}",
      kT0);
  EXPECT_TRUE(t.FlushDue(kT0));
  v1::ReportProgressRequest b = t.TakeBatch(kT0);
  ASSERT_EQ(b.metrics_size(), 1);  // eval merged into the step's point
  EXPECT_DOUBLE_EQ(b.metrics(0).eval_loss(), 1.25);
  // The evaluation is the best so far: EVAL, then EVAL_IMPROVED.
  ASSERT_EQ(b.events_size(), 2);
  EXPECT_EQ(b.events(0).type(), v1::JOB_EVENT_TYPE_EVAL);
  EXPECT_EQ(b.events(0).step(), 5);
  EXPECT_EQ(b.events(1).type(), v1::JOB_EVENT_TYPE_EVAL_IMPROVED);
  EXPECT_EQ(b.events(1).step(), 5);
  EXPECT_THAT(b.events(1).message(),
              HasSubstr("new best evaluation at step 5: eval_loss 1.25"));
  ASSERT_EQ(b.checkpoints_size(), 1);
  const v1::Checkpoint& c = b.checkpoints(0);
  EXPECT_EQ(c.path(), "jobs/t/j/checkpoints/step-00000005");
  EXPECT_EQ(c.step(), 5);
  EXPECT_EQ(c.attempt(), 3);
  EXPECT_DOUBLE_EQ(c.epoch(), 0.5);
  EXPECT_EQ(c.size_bytes(),
            static_cast<int64_t>(
                std::string("/st/jobs/t/j/checkpoints/step-00000005").size()));
  EXPECT_DOUBLE_EQ(c.eval_loss(), 1.25);
  EXPECT_TRUE(c.is_best());
  v1::JobMetrics m = t.FinalMetrics();
  EXPECT_EQ(m.step(), 5);
  EXPECT_DOUBLE_EQ(m.eval_loss(), 1.25);
  EXPECT_EQ(m.best_eval_step(), 5);
}

// Task metrics ride on the evaluation's metric point: merged into the
// step's pending point, or on an evaluation-only point of their own.
TEST(ProgressTest, EvalTaskMetricsReachTheMetricPoint) {
  ProgressTracker t(Options());
  t.OnLine(Metrics(5, 1.5), kT0);
  t.OnLine(
      "{\"type\":\"eval\",\"step\":5,\"eval_loss\":1.25,\"best_eval_loss\":"
      "1.25,\"best_step\":5,\"task\":{\"examples\":8,\"exact_match\":0.25,"
      "\"normalized_match\":0.5,\"token_f1\":0.625,\"pattern_match\":0.75}}",
      kT0);
  v1::ReportProgressRequest b = t.TakeBatch(kT0);
  ASSERT_EQ(b.metrics_size(), 1);
  ASSERT_TRUE(b.metrics(0).has_eval_task());
  const v1::TaskMetrics& m = b.metrics(0).eval_task();
  EXPECT_EQ(m.examples(), 8);
  EXPECT_DOUBLE_EQ(m.exact_match(), 0.25);
  EXPECT_DOUBLE_EQ(m.normalized_match(), 0.5);
  EXPECT_DOUBLE_EQ(m.token_f1(), 0.625);
  EXPECT_DOUBLE_EQ(m.pattern_match(), 0.75);
  // Its own point, without a pattern.
  t.OnLine(
      "{\"type\":\"eval\",\"step\":5,\"eval_loss\":1.0,\"best_eval_loss\":"
      "1.0,\"best_step\":5,\"task\":{\"examples\":8,\"exact_match\":1,"
      "\"normalized_match\":1,\"token_f1\":1}}",
      kT0);
  b = t.TakeBatch(kT0);
  ASSERT_EQ(b.metrics_size(), 1);
  EXPECT_FALSE(b.metrics(0).has_train_loss());
  EXPECT_DOUBLE_EQ(b.metrics(0).eval_task().exact_match(), 1);
  EXPECT_FALSE(b.metrics(0).eval_task().has_pattern_match());
  // An evaluation without task metrics carries none.
  t.OnLine(
      "{\"type\":\"eval\",\"step\":5,\"eval_loss\":1.0,\"best_eval_loss\":"
      "1.0,\"best_step\":5}",
      kT0);
  b = t.TakeBatch(kT0);
  ASSERT_EQ(b.metrics_size(), 1);
  EXPECT_FALSE(b.metrics(0).has_eval_task());
}

// The baseline evaluation before training (eval_on_start, step 0) gets a
// point of its own and an event saying so, and is never the best: the
// best evaluation is the first later one.
TEST(ProgressTest, StepZeroEvaluationIsABaselineNeverTheBest) {
  ProgressTracker t(Options());
  t.OnLine(
      "{\"type\":\"eval\",\"step\":0,\"eval_loss\":0.5,\"best_eval_loss\":"
      "0.5,\"best_step\":0}",
      kT0);
  v1::ReportProgressRequest b = t.TakeBatch(kT0);
  ASSERT_EQ(b.metrics_size(), 1);
  EXPECT_EQ(b.metrics(0).step(), 0);
  EXPECT_DOUBLE_EQ(b.metrics(0).eval_loss(), 0.5);
  EXPECT_FALSE(b.metrics(0).has_train_loss());
  ASSERT_EQ(b.events_size(), 1);
  EXPECT_EQ(b.events(0).type(), v1::JOB_EVENT_TYPE_EVAL);
  EXPECT_THAT(b.events(0).message(), HasSubstr("before training"));
  v1::JobMetrics m = t.FinalMetrics();
  EXPECT_DOUBLE_EQ(m.eval_loss(), 0.5);
  EXPECT_FALSE(m.has_best_eval_loss());

  t.OnLine(Metrics(5, 1.5), kT0);
  t.OnLine(
      "{\"type\":\"eval\",\"step\":5,\"eval_loss\":1.25,\"best_eval_loss\":"
      "1.25,\"best_step\":5}",
      kT0);
  m = t.FinalMetrics();
  EXPECT_DOUBLE_EQ(m.best_eval_loss(), 1.25);
  EXPECT_EQ(m.best_eval_step(), 5);
  // A later evaluation that is not the best: EVAL alone.
  t.OnLine(Metrics(10, 1.4), kT0);
  t.OnLine(
      "{\"type\":\"eval\",\"step\":10,\"eval_loss\":1.3,\"best_eval_loss\":"
      "1.25,\"best_step\":5}",
      kT0);
  b = t.TakeBatch(kT0);
  std::vector<v1::JobEventType> types;
  for (const v1::JobEvent& e : b.events()) types.push_back(e.type());
  EXPECT_THAT(types, ElementsAre(v1::JOB_EVENT_TYPE_EVAL,
                                 v1::JOB_EVENT_TYPE_EVAL_IMPROVED,
                                 v1::JOB_EVENT_TYPE_EVAL));
  EXPECT_EQ(b.events(2).step(), 10);
}

TEST(ProgressTest, FlushRules) {
  ProgressTracker t(Options());
  EXPECT_FALSE(t.FlushDue(kT0));  // nothing pending
  (void)t.TakeBatch(kT0);         // starts the interval at kT0
  t.OnLine(Metrics(1, 1), kT0);
  EXPECT_FALSE(t.FlushDue(kT0 + absl::Milliseconds(500)));
  EXPECT_TRUE(t.FlushDue(kT0 + absl::Seconds(1)));  // the interval passed
  for (int s = 2; s <= 4; ++s) t.OnLine(Metrics(s, 1), kT0);
  EXPECT_TRUE(t.FlushDue(kT0));  // max_batch_points = 4
  (void)t.TakeBatch(kT0);
  t.OnLine(Metrics(5, 1), kT0);
  EXPECT_FALSE(t.FlushDue(kT0));
  t.OnLine("{\"type\":\"done\",\"step\":5,\"output_dir\":\"/st/a\"}", kT0);
  EXPECT_TRUE(t.FlushDue(kT0));  // end lines flush at once
  EXPECT_TRUE(t.outcome().done);
  EXPECT_EQ(t.outcome().output_dir, "/st/a");
}

TEST(ProgressTest, GarbageBecomesBoundedWarnings) {
  ProgressOptions o = Options();
  o.max_unparsed_warnings = 2;
  ProgressTracker t(o);
  t.OnLine("Segmentation fault (core dumped)", kT0);
  t.OnLine("{\"type\":\"metrics\"", kT0);
  t.OnLine("[1,2,3]", kT0);
  t.OnLine("", kT0);
  t.OnLine("{\"type\":\"future_thing\",\"x\":1}", kT0);
  t.OnLine("{\"type\":\"checkpoint\",\"step\":1,\"path\":\"/elsewhere/x\"}",
           kT0);
  v1::ReportProgressRequest b = t.TakeBatch(kT0);
  ASSERT_EQ(b.events_size(), 3);
  EXPECT_EQ(b.events(0).type(), v1::JOB_EVENT_TYPE_WARNING);
  EXPECT_THAT(b.events(0).message(), HasSubstr("Segmentation fault"));
  EXPECT_THAT(b.events(1).message(), HasSubstr("not reported"));
  EXPECT_EQ(b.events(2).type(), v1::JOB_EVENT_TYPE_LOG);
  EXPECT_THAT(b.events(2).message(), HasSubstr("future_thing"));
  EXPECT_EQ(b.checkpoints_size(), 0);
}

TEST(ProgressTest, DataStartErrorAndEarlyStop) {
  ProgressTracker t(Options());
  t.OnLine(
      "{\"type\":\"data\",\"split\":\"train\",\"examples\":40,\"rows\":12,"
      "\"tokens\":3000,\"trained_tokens\":1000,\"truncated\":3,"
      "\"dropped_overlength\":1,\"dropped_no_target\":0}",
      kT0);
  t.OnLine("{\"type\":\"start\",\"total_steps\":30,\"train_rows\":12}", kT0);
  t.OnLine("{\"type\":\"early_stop\",\"step\":20,\"best_step\":10}", kT0);
  t.OnLine(
      "{\"type\":\"error\",\"reason\":\"bad_input\",\"message\":\"line 3: "
      "bad\"}",
      kT0);
  v1::ReportProgressRequest b = t.TakeBatch(kT0);
  ASSERT_EQ(b.events_size(), 4);
  EXPECT_EQ(b.events(0).type(), v1::JOB_EVENT_TYPE_LOG);
  EXPECT_EQ(b.events(1).type(), v1::JOB_EVENT_TYPE_WARNING);
  EXPECT_THAT(b.events(1).message(), HasSubstr("3 examples truncated"));
  EXPECT_EQ(b.events(2).type(), v1::JOB_EVENT_TYPE_LOG);
  EXPECT_EQ(b.events(3).type(), v1::JOB_EVENT_TYPE_EARLY_STOPPED);
  EXPECT_EQ(b.events(3).step(), 20);
  EXPECT_EQ(b.progress().total_steps(), 30);
  EXPECT_TRUE(t.outcome().has_error);
  EXPECT_EQ(t.outcome().error_reason, "bad_input");
  EXPECT_EQ(t.outcome().error_message, "line 3: bad");
}

// The trainer's in-place out-of-memory retry becomes a BATCH_SIZE_REDUCED
// event, and its own peak memory figure (the CUDA allocator's on a GPU)
// reaches the metric points.
TEST(ProgressTest, OomRetryAndTrainerPeakMemory) {
  ProgressTracker t(Options());
  t.OnLine(
      "{\"type\":\"oom_retry\",\"step\":4,\"micro_batch_size\":2,"
      "\"gradient_accumulation_steps\":4,\"message\":\"CUDA out of memory\"}",
      kT0);
  t.OnLine(
      "{\"type\":\"metrics\",\"step\":4,\"loss\":1.5,\"lr\":0.001,"
      "\"grad_norm\":0.5,\"tokens_per_s\":10,"
      "\"peak_memory_bytes\":123456789}",
      kT0);
  v1::ReportProgressRequest b = t.TakeBatch(kT0);
  ASSERT_EQ(b.events_size(), 1);
  EXPECT_EQ(b.events(0).type(), v1::JOB_EVENT_TYPE_BATCH_SIZE_REDUCED);
  EXPECT_EQ(b.events(0).step(), 4);
  EXPECT_THAT(b.events(0).message(),
              HasSubstr("micro-batches of 2 rows and 4 accumulation steps"));
  ASSERT_EQ(b.metrics_size(), 1);
  EXPECT_EQ(b.metrics(0).peak_memory_bytes(), 123456789);
}

TEST(ProgressTest, SamplesAreForwardedAtOnceWithLongTextsCut) {
  ProgressTracker t(Options());
  contract::SamplesEvent e;
  e.step = 20;
  e.samples.push_back({"hi", "ih", "ih!", "end"});
  // A text longer than the contract allows (a trainer that did not cut).
  e.samples.push_back(
      {"long", std::nullopt, std::string(10000, 'x'), "length"});
  t.OnLine(contract::ToJsonLine(e), kT0);
  EXPECT_TRUE(t.FlushDue(kT0));  // at once, not after the interval
  v1::ReportProgressRequest b = t.TakeBatch(kT0);
  ASSERT_EQ(b.samples_size(), 2);
  EXPECT_EQ(b.samples(0).step(), 20);
  EXPECT_EQ(b.samples(0).index(), 0);
  EXPECT_EQ(b.samples(0).attempt(), 3);
  EXPECT_EQ(b.samples(0).prompt(), "hi");
  EXPECT_EQ(b.samples(0).expected_completion(), "ih");
  EXPECT_EQ(b.samples(0).completion(), "ih!");
  EXPECT_EQ(b.samples(0).finish_reason(), "end");
  EXPECT_EQ(b.samples(1).index(), 1);
  EXPECT_FALSE(b.samples(1).has_expected_completion());
  EXPECT_EQ(b.samples(1).completion().size(),
            static_cast<size_t>(contract::defaults::kSampleTextBytes));
  EXPECT_THAT(b.samples(1).completion(),
              ::testing::EndsWith(contract::defaults::kTruncationMarker));
  EXPECT_EQ(b.events_size(), 0);  // the scheduler adds the SAMPLES event
  EXPECT_FALSE(t.HasPending());
}

}  // namespace
}  // namespace ftune::agent
