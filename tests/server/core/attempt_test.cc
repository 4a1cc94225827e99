#include "server/core/attempt.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace ftune::core {
namespace {

using ::ftune::testing::StatusIs;
using ::testing::HasSubstr;

Job RunningJob(int64_t attempt, int64_t restarts, int32_t max_restarts) {
  Job job;
  job.id = "job-x";
  job.state = JobState::kRunning;
  job.attempt = attempt;
  job.restart_count = restarts;
  job.max_restarts = max_restarts;
  job.worker_id = "worker-a";
  return job;
}

TEST(AttemptTest, LostLeaseRequeuesUntilMaxRestartsThenFails) {
  // max_restarts = 2: attempts 1, 2, 3 run; losing the third fails the job.
  Job job = RunningJob(1, 0, 2);
  for (int64_t attempt = 1; attempt <= 2; ++attempt) {
    ASSERT_OK_AND_ASSIGN(AttemptPlan plan, PlanLeaseLoss(job));
    EXPECT_EQ(plan.new_state, JobState::kQueued);
    EXPECT_EQ(plan.new_attempt, attempt + 1);
    EXPECT_EQ(plan.new_restart_count, attempt);
    EXPECT_TRUE(plan.clear_worker);
    ASSERT_TRUE(plan.error.has_value());
    EXPECT_EQ(plan.error->reason, JobErrorReason::kWorkerLost);
    EXPECT_TRUE(plan.error->retryable);
    job = RunningJob(plan.new_attempt, plan.new_restart_count, 2);
  }
  ASSERT_OK_AND_ASSIGN(AttemptPlan last, PlanLeaseLoss(job));
  EXPECT_EQ(last.new_state, JobState::kFailed);
  EXPECT_EQ(last.new_attempt, 3);
  ASSERT_TRUE(last.error.has_value());
  EXPECT_EQ(last.error->reason, JobErrorReason::kWorkerLost);
  EXPECT_FALSE(last.error->retryable);
  EXPECT_THAT(last.message, HasSubstr("max_restarts=2"));
}

TEST(AttemptTest, ZeroMaxRestartsFailsOnFirstLoss) {
  ASSERT_OK_AND_ASSIGN(AttemptPlan plan, PlanLeaseLoss(RunningJob(1, 0, 0)));
  EXPECT_EQ(plan.new_state, JobState::kFailed);
}

TEST(AttemptTest, LeaseLossWhileCancellingOrPaused) {
  Job job = RunningJob(3, 1, 5);
  job.state = JobState::kCancelling;
  ASSERT_OK_AND_ASSIGN(AttemptPlan c, PlanLeaseLoss(job));
  EXPECT_EQ(c.new_state, JobState::kCancelled);
  EXPECT_EQ(c.new_attempt, 3);
  job.state = JobState::kPaused;
  ASSERT_OK_AND_ASSIGN(AttemptPlan p, PlanLeaseLoss(job));
  EXPECT_EQ(p.new_state, JobState::kPaused);
  EXPECT_TRUE(p.clear_worker);
  job.state = JobState::kQueued;
  EXPECT_THAT(
      PlanLeaseLoss(job),
      StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("QUEUED")));
}

TEST(AttemptTest, OutcomesOfARunningAttempt) {
  const Job job = RunningJob(2, 1, 3);
  AttemptEnd ok;
  ok.outcome = AttemptOutcome::kSucceeded;
  ok.adapter.path = "jobs/t/job-x/adapter";
  ok.adapter.manifest_sha256 = "abc";
  ASSERT_OK_AND_ASSIGN(AttemptPlan s, PlanAttemptEnd(job, ok));
  EXPECT_EQ(s.new_state, JobState::kSucceeded);
  ASSERT_TRUE(s.adapter.has_value());
  EXPECT_EQ(s.adapter->path, "jobs/t/job-x/adapter");

  AttemptEnd bad;
  bad.outcome = AttemptOutcome::kFailed;
  bad.error = JobError{JobErrorReason::kOutOfMemory, "CUDA OOM", true};
  ASSERT_OK_AND_ASSIGN(AttemptPlan f, PlanAttemptEnd(job, bad));
  EXPECT_EQ(f.new_state, JobState::kFailed);
  EXPECT_EQ(f.error->reason, JobErrorReason::kOutOfMemory);
  EXPECT_FALSE(f.error->retryable);

  AttemptEnd retry;
  retry.outcome = AttemptOutcome::kRetryableFailure;
  retry.error = JobError{JobErrorReason::kTrainerError, "exit 75", false};
  ASSERT_OK_AND_ASSIGN(AttemptPlan r, PlanAttemptEnd(job, retry));
  EXPECT_EQ(r.new_state, JobState::kQueued);
  EXPECT_EQ(r.new_attempt, 3);
  EXPECT_EQ(r.new_restart_count, 2);
  EXPECT_TRUE(r.error->retryable);

  AttemptEnd stopped;
  stopped.outcome = AttemptOutcome::kStopped;
  EXPECT_THAT(PlanAttemptEnd(job, stopped),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("never requested")));
}

TEST(AttemptTest, StopAcknowledgements) {
  Job job = RunningJob(1, 0, 0);
  AttemptEnd stopped;
  stopped.outcome = AttemptOutcome::kStopped;
  job.state = JobState::kCancelling;
  EXPECT_EQ(PlanAttemptEnd(job, stopped)->new_state, JobState::kCancelled);
  job.state = JobState::kPaused;
  ASSERT_OK_AND_ASSIGN(AttemptPlan p, PlanAttemptEnd(job, stopped));
  EXPECT_EQ(p.new_state, JobState::kPaused);
  EXPECT_TRUE(p.clear_worker);
  job.state = JobState::kSucceeded;
  EXPECT_THAT(
      PlanAttemptEnd(job, stopped),
      StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("SUCCEEDED")));
}

TEST(AttemptTest, EveryPlannedStateChangeIsALegalEdge) {
  for (JobState s : kAllJobStates) {
    Job job = RunningJob(1, 0, 1);
    job.state = s;
    for (AttemptOutcome o :
         {AttemptOutcome::kSucceeded, AttemptOutcome::kFailed,
          AttemptOutcome::kRetryableFailure, AttemptOutcome::kStopped}) {
      AttemptEnd end;
      end.outcome = o;
      absl::StatusOr<AttemptPlan> plan = PlanAttemptEnd(job, end);
      if (plan.ok() && plan->new_state != s) {
        EXPECT_TRUE(IsAllowedTransition(s, plan->new_state))
            << JobStateName(s) << " -> " << JobStateName(plan->new_state);
      }
    }
    absl::StatusOr<AttemptPlan> lost = PlanLeaseLoss(job);
    if (lost.ok() && lost->new_state != s) {
      EXPECT_TRUE(IsAllowedTransition(s, lost->new_state));
    }
  }
}

}  // namespace
}  // namespace ftune::core
