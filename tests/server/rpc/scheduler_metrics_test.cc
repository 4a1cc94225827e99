// SchedulerMetrics fed committed job changes by hand: what each transition
// counts, read back from the registry's text exposition.
#include "server/rpc/scheduler_metrics.h"

#include <string>
#include <vector>

#include "absl/time/time.h"
#include "common/metrics/registry.h"
#include "common/metrics/text_format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace ftune::server::rpc {
namespace {

using ::testing::HasSubstr;
using S = core::JobState;

class SchedulerMetricsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(metrics_, SchedulerMetrics::Create(&registry_));
    job_.id = "job-aaaaaaaaaaaaaaaaaaaaaaaa";
    job_.tenant_id = "tenant-bbbbbbbbbbbbbbbbbbbbbbbb";
  }

  // Commits one state change of the job at `t` (seconds), with `error` on
  // the job after it.
  void Transition(S from, S to, int64_t attempt, double t,
                  core::JobErrorReason error = core::JobErrorReason::kNone) {
    store::JobChange change;
    job_.state = to;
    job_.attempt = attempt;
    job_.error.reason = error;
    change.job = job_;
    core::JobEvent e;
    e.job_id = job_.id;
    e.type = core::JobEventType::kStateChanged;
    e.from_state = from;
    e.to_state = to;
    e.attempt = attempt;
    e.time = Time(t);
    change.events.push_back(e);
    metrics_->OnCommit({change});
  }

  void Point(int64_t attempt, double t) {
    store::JobChange change;
    change.job = job_;
    core::MetricPoint p;
    p.job_id = job_.id;
    p.attempt = attempt;
    p.step = 1;
    p.train_loss = 2.5;
    p.time = Time(t);
    change.metrics.push_back(p);
    metrics_->OnCommit({change});
  }

  static absl::Time Time(double t) {
    return absl::FromUnixSeconds(1'800'000'000) + absl::Seconds(t);
  }

  std::string Scrape() { return metrics::FormatText(registry_.Collect()); }

  metrics::Registry registry_;
  std::unique_ptr<SchedulerMetrics> metrics_;
  core::Job job_;
};

// A lost lease counts once, in the change that re-queued or failed the
// job; the error it leaves on the job does not count again when a later
// attempt is paused or cancelled.
TEST_F(SchedulerMetricsTest, LeaseExpiryCountsOnlyTheTransitionThatLostIt) {
  Transition(S::kQueued, S::kRunning, 1, 0);
  EXPECT_THAT(Scrape(), HasSubstr("ftune_lease_expiries_total 0\n"));
  Transition(S::kRunning, S::kQueued, 2, 10, core::JobErrorReason::kWorkerLost);
  std::string text = Scrape();
  EXPECT_THAT(text, HasSubstr("ftune_lease_expiries_total 1\n"));
  EXPECT_THAT(text, HasSubstr("ftune_job_requeues_total{tenant=\"" +
                              job_.tenant_id + "\"} 1\n"));

  Transition(S::kQueued, S::kRunning, 2, 20, core::JobErrorReason::kWorkerLost);
  Transition(S::kRunning, S::kPaused, 2, 30, core::JobErrorReason::kWorkerLost);
  Transition(S::kPaused, S::kQueued, 3, 40, core::JobErrorReason::kWorkerLost);
  Transition(S::kQueued, S::kRunning, 3, 50, core::JobErrorReason::kWorkerLost);
  Transition(S::kRunning, S::kCancelling, 3, 60,
             core::JobErrorReason::kWorkerLost);
  Transition(S::kCancelling, S::kCancelled, 3, 70,
             core::JobErrorReason::kWorkerLost);
  EXPECT_THAT(Scrape(), HasSubstr("ftune_lease_expiries_total 1\n"));

  // A retryable trainer failure re-queues too, but is not a lease.
  Transition(S::kRunning, S::kQueued, 4, 80,
             core::JobErrorReason::kTrainerError);
  // Restarts exhausted: the lost lease fails the job, and counts.
  Transition(S::kRunning, S::kFailed, 4, 90, core::JobErrorReason::kWorkerLost);
  EXPECT_THAT(Scrape(), HasSubstr("ftune_lease_expiries_total 2\n"));
}

// From an attempt's start to its first point, once per attempt; points of
// another attempt do not count.
TEST_F(SchedulerMetricsTest, TimeToFirstStepOfEachAttempt) {
  Transition(S::kQueued, S::kRunning, 1, 0);
  Point(/*attempt=*/0, 1);  // A stale attempt's point.
  Point(1, 3);
  Point(1, 4);
  std::string text = Scrape();
  EXPECT_THAT(text,
              HasSubstr("ftune_job_time_to_first_step_seconds_count 1\n"));
  EXPECT_THAT(text, HasSubstr("ftune_job_time_to_first_step_seconds_sum 3\n"));
  EXPECT_THAT(text,
              HasSubstr("ftune_job_train_loss{tenant=\"" + job_.tenant_id +
                        "\",job_id=\"" + job_.id + "\"} 2.5\n"));

  Transition(S::kRunning, S::kQueued, 2, 10, core::JobErrorReason::kWorkerLost);
  // Gone with the job leaving RUNNING.
  EXPECT_THAT(Scrape(), ::testing::Not(HasSubstr("ftune_job_train_loss{")));
  Transition(S::kQueued, S::kRunning, 2, 20);
  Point(2, 27);
  text = Scrape();
  EXPECT_THAT(text,
              HasSubstr("ftune_job_time_to_first_step_seconds_count 2\n"));
  EXPECT_THAT(text, HasSubstr("ftune_job_time_to_first_step_seconds_sum 10\n"));
}

// A preference job's reward accuracy and margin, per split, from its newest
// training point and newest evaluation; gone when the job leaves RUNNING.
TEST_F(SchedulerMetricsTest, PreferenceRewardsPerSplit) {
  Transition(S::kQueued, S::kRunning, 1, 0);
  store::JobChange change;
  change.job = job_;
  core::MetricPoint train;
  train.job_id = job_.id;
  train.attempt = 1;
  train.step = 4;
  train.train_loss = 0.6;
  train.preference = contract::PreferenceMetrics{0.2, -0.1, 0.75, 0.3, -5, -7};
  core::MetricPoint eval = train;
  eval.step = 5;
  eval.train_loss.reset();
  eval.preference.reset();
  eval.eval_loss = 0.65;
  eval.eval_preference =
      contract::PreferenceMetrics{0.1, -0.05, 0.625, 0.15, -6, -8};
  change.metrics = {train, eval};
  metrics_->OnCommit({change});
  const std::string labels =
      "{tenant=\"" + job_.tenant_id + "\",job_id=\"" + job_.id + "\",split=";
  std::string text = Scrape();
  EXPECT_THAT(text, HasSubstr("ftune_job_reward_accuracy" + labels +
                              "\"train\"} 0.75\n"));
  EXPECT_THAT(
      text, HasSubstr("ftune_job_reward_margin" + labels + "\"train\"} 0.3\n"));
  EXPECT_THAT(text, HasSubstr("ftune_job_reward_accuracy" + labels +
                              "\"eval\"} 0.625\n"));
  EXPECT_THAT(
      text, HasSubstr("ftune_job_reward_margin" + labels + "\"eval\"} 0.15\n"));
  Transition(S::kRunning, S::kSucceeded, 1, 10);
  EXPECT_THAT(Scrape(),
              ::testing::Not(HasSubstr("ftune_job_reward_accuracy{")));
}

// A job's task metrics from its newest evaluation; pattern_match only with
// an eval_pattern; gone when the job leaves RUNNING.
TEST_F(SchedulerMetricsTest, TaskMetricsOfTheLatestEvaluation) {
  Transition(S::kQueued, S::kRunning, 1, 0);
  store::JobChange change;
  change.job = job_;
  core::MetricPoint first;
  first.job_id = job_.id;
  first.attempt = 1;
  first.step = 5;
  first.eval_loss = 0.9;
  first.eval_task = contract::TaskMetrics{8, 0.125, 0.25, 0.375, 0.5};
  core::MetricPoint second = first;
  second.step = 10;
  second.eval_task = contract::TaskMetrics{8, 0.625, 0.75, 0.875, 1.0};
  change.metrics = {first, second};
  metrics_->OnCommit({change});
  const std::string labels =
      "{tenant=\"" + job_.tenant_id + "\",job_id=\"" + job_.id + "\"} ";
  std::string text = Scrape();
  EXPECT_THAT(text,
              HasSubstr("ftune_job_eval_exact_match" + labels + "0.625\n"));
  EXPECT_THAT(text,
              HasSubstr("ftune_job_eval_normalized_match" + labels + "0.75\n"));
  EXPECT_THAT(text, HasSubstr("ftune_job_eval_token_f1" + labels + "0.875\n"));
  EXPECT_THAT(text, HasSubstr("ftune_job_eval_pattern_match" + labels + "1\n"));
  Transition(S::kRunning, S::kSucceeded, 1, 10);
  text = Scrape();
  EXPECT_THAT(text, ::testing::Not(HasSubstr("ftune_job_eval_exact_match{")));
  EXPECT_THAT(text, ::testing::Not(HasSubstr("ftune_job_eval_pattern_match{")));
}

// Commit timing feeds the two store histograms.
TEST_F(SchedulerMetricsTest, CommitTimingIsObserved) {
  metrics_->OnCommitTiming(absl::Milliseconds(3), 5);
  const std::string text = Scrape();
  EXPECT_THAT(text, HasSubstr("ftune_store_commit_seconds_count 1\n"));
  EXPECT_THAT(text,
              HasSubstr("ftune_store_commit_seconds_bucket{le=\"0.005\"} 1\n"));
  EXPECT_THAT(text,
              HasSubstr("ftune_store_commit_seconds_bucket{le=\"0.002\"} 0\n"));
  EXPECT_THAT(text, HasSubstr("ftune_store_commit_writes_sum 5\n"));
}

}  // namespace
}  // namespace ftune::server::rpc
