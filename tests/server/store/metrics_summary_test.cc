// A job's metric points, events and summary in the real SQLite store:
// values nothing reported stay absent (NULL train_loss on an
// evaluation-only point, no train loss before the first training point),
// the summary's latest and best evaluation follow the points, events carry
// their step, and migration 4 repairs what older servers stored.
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "server/store/migrations.h"
#include "tests/server/store/store_fixture.h"

namespace ftune::store::testing {
namespace {

core::MetricPoint Train(int64_t step, double loss) {
  core::MetricPoint p;
  p.step = step;
  p.train_loss = loss;
  p.lr = 1e-4;
  p.tokens_per_s = 100.0 * static_cast<double>(step);
  p.peak_memory_bytes = 1000 + step;
  return p;
}

core::MetricPoint Eval(int64_t step, double loss) {
  core::MetricPoint p;
  p.step = step;
  p.eval_loss = loss;
  p.peak_memory_bytes = 1000 + step;
  return p;
}

class MetricsSummaryTest : public StoreTest {
 protected:
  void SetUp() override {
    StoreTest::SetUp();
    tenant_ = MakeTenant("a");
    worker_ = MustRegisterWorker();
    job_ = MustCreate(NewJob(tenant_));
    ASSERT_OK(store_->GrantLease(job_.id, 1, worker_.id,
                                 clock_.Now() + absl::Hours(1)));
  }
  core::Job Get() {
    auto j = store_->GetJob(tenant_.tenant.id, job_.id);
    EXPECT_TRUE(j.ok()) << j.status();
    return j.ok() ? *j : core::Job{};
  }

  TenantSetup tenant_;
  core::Worker worker_;
  core::Job job_;
};

TEST_F(MetricsSummaryTest, AbsentValuesStayAbsentAndTheBestEvalIsKept) {
  // Nothing yet.
  EXPECT_TRUE(Get().metrics.empty());
  // An evaluation before any training point (eval_on_start): no train
  // values appear, and the baseline is never the best, even when no later
  // evaluation reaches its loss (no adapter comes from step 0).
  ASSERT_OK(store_->AppendMetrics(job_.id, 1, {Eval(0, 1.0)}));
  core::Job j = Get();
  EXPECT_FALSE(j.metrics.train.has_value());
  EXPECT_EQ(j.metrics.eval_loss, 1.0);
  EXPECT_EQ(j.metrics.eval_step, 0);
  EXPECT_FALSE(j.metrics.best_eval_loss.has_value());

  ASSERT_OK(store_->AppendMetrics(
      job_.id, 1, {Train(1, 2.5), Train(2, 2.0), Eval(2, 1.5)}));
  ASSERT_OK(store_->AppendMetrics(job_.id, 1, {Train(3, 1.8), Eval(3, 1.7)}));
  // A tie with the best is not a new best (the trainer keeps the first).
  ASSERT_OK(store_->AppendMetrics(job_.id, 1, {Eval(4, 1.5)}));

  j = Get();
  ASSERT_TRUE(j.metrics.train.has_value());
  EXPECT_EQ(j.metrics.train->step, 3);  // Not the evaluation-only step 4.
  EXPECT_EQ(j.metrics.train->train_loss, 1.8);
  EXPECT_EQ(j.metrics.train->tokens_per_s, 300.0);
  EXPECT_EQ(j.metrics.eval_loss, 1.5);
  EXPECT_EQ(j.metrics.eval_step, 4);
  EXPECT_EQ(j.metrics.best_eval_loss, 1.5);
  EXPECT_EQ(j.metrics.best_eval_step, 2);
  EXPECT_EQ(j.metrics.peak_memory_bytes, 1004);

  // The points as stored: evaluation-only ones have no train loss (NULL).
  ASSERT_OK_AND_ASSIGN(
      auto points, store_->ListJobMetrics(tenant_.tenant.id, job_.id, 0, 0));
  ASSERT_EQ(points.size(), 7u);
  for (const core::MetricPoint& p : points) {
    EXPECT_EQ(p.train_loss.has_value(), !p.eval_loss.has_value())
        << "step " << p.step;
  }
  // The summary survives a restart of the store (it is on the job row).
  ASSERT_OK(OpenStore());
  core::Job reread = Get();
  ASSERT_TRUE(reread.metrics.train.has_value());
  EXPECT_EQ(reread.metrics.train->train_loss, 1.8);
  EXPECT_EQ(reread.metrics.best_eval_step, 2);
  EXPECT_EQ(reread.metrics.eval_step, 4);
}

// An evaluation's task metrics are stored with its point (pattern_match
// only when reported) and read back after a restart of the store; a point
// without them has none.
TEST_F(MetricsSummaryTest, TaskMetricsAreStoredWithTheirPoint) {
  core::MetricPoint with_pattern = Eval(2, 1.5);
  with_pattern.eval_task = contract::TaskMetrics{8, 0.25, 0.5, 0.625, 0.75};
  core::MetricPoint without_pattern = Eval(4, 1.25);
  without_pattern.eval_task =
      contract::TaskMetrics{8, 0.5, 0.5, 0.75, std::nullopt};
  ASSERT_OK(store_->AppendMetrics(
      job_.id, 1,
      {Train(2, 2.0), with_pattern, Train(4, 1.0), without_pattern}));
  ASSERT_OK(OpenStore());
  ASSERT_OK_AND_ASSIGN(
      auto points, store_->ListJobMetrics(tenant_.tenant.id, job_.id, 0, 0));
  ASSERT_EQ(points.size(), 4u);
  EXPECT_FALSE(points[0].eval_task.has_value());
  ASSERT_TRUE(points[1].eval_task.has_value());
  EXPECT_EQ(points[1].eval_task->examples, 8);
  EXPECT_EQ(points[1].eval_task->exact_match, 0.25);
  EXPECT_EQ(points[1].eval_task->normalized_match, 0.5);
  EXPECT_EQ(points[1].eval_task->token_f1, 0.625);
  EXPECT_EQ(points[1].eval_task->pattern_match, 0.75);
  ASSERT_TRUE(points[3].eval_task.has_value());
  EXPECT_EQ(points[3].eval_task->exact_match, 0.5);
  EXPECT_EQ(points[3].eval_task->pattern_match, std::nullopt);
  EXPECT_FALSE(points[2].eval_task.has_value());
  // The summary holds the latest evaluation's task metrics.
  core::Job j = Get();
  EXPECT_EQ(j.metrics.eval_step, 4);
  ASSERT_TRUE(j.metrics.eval_task.has_value());
  EXPECT_EQ(j.metrics.eval_task->exact_match, 0.5);
  EXPECT_EQ(j.metrics.eval_task->token_f1, 0.75);
  EXPECT_EQ(j.metrics.eval_task->pattern_match, std::nullopt);
  // A later evaluation without task metrics clears them.
  ASSERT_OK(store_->AppendMetrics(job_.id, 1, {Eval(6, 1.0)}));
  EXPECT_FALSE(Get().metrics.eval_task.has_value());
}

TEST_F(MetricsSummaryTest, EventsKeepTheStepTheyReferTo) {
  core::Checkpoint ck;
  ck.step = 40;
  ck.path = "jobs/x/checkpoints/step-40";
  ASSERT_OK(store_->AddCheckpoint(job_.id, 1, ck));
  ProgressReport r;
  r.worker_id = worker_.id;
  r.job_id = job_.id;
  r.attempt = 1;
  r.batch_number = 1;
  core::JobEvent eval;
  eval.type = core::JobEventType::kEval;
  eval.message = "eval_loss 1.5 at step 40";
  eval.step = 40;
  r.events.push_back(eval);
  core::Checkpoint reported;
  reported.step = 50;
  reported.path = "jobs/x/checkpoints/step-50";
  r.checkpoints.push_back(reported);
  r.lease_expiry = clock_.Now() + absl::Hours(1);
  ASSERT_OK(store_->ApplyProgress(r).status());
  ASSERT_OK_AND_ASSIGN(auto events,
                       store_->ListJobEvents(tenant_.tenant.id, job_.id, 0, 0));
  std::vector<std::pair<core::JobEventType, int64_t>> got;
  for (const core::JobEvent& e : events) {
    if (e.type != core::JobEventType::kCreated &&
        e.type != core::JobEventType::kStateChanged) {
      got.push_back({e.type, e.step});
    }
  }
  EXPECT_THAT(got, ::testing::ElementsAre(
                       std::make_pair(core::JobEventType::kCheckpoint, 40),
                       std::make_pair(core::JobEventType::kEval, 40),
                       std::make_pair(core::JobEventType::kCheckpoint, 50)));
}

// What a version-3 server wrote (train_loss 0 on evaluation-only points,
// events without a step, the newest point as the job's metrics) reads
// honestly after migration 4.
TEST(MetricsMigrationTest, Version4RepairsPointsEventsAndSummaries) {
  ftune::testing::TempDir dir;
  const std::string path = dir.Sub("db");
  {
    auto conn = Connection::Open(path, ConnectionOptions{});
    ASSERT_OK(conn.status());
    ASSERT_OK(Migrate(**conn, /*target_version=*/3));
    ASSERT_OK((*conn)->Exec(R"sql(
INSERT INTO tenants(id, name, weight, create_time)
  VALUES('tenant-old', 'old', 1.0, 0);
INSERT INTO models(name, directory, update_time)
  VALUES('m', 'models/m', 0);
INSERT INTO jobs(id, tenant_id, state, attempt, spec, model,
  training_file_id, create_time, update_time, last_sequence, latest_metrics)
  VALUES('job-old', 'tenant-old', 5, 1, x'01', 'm', 'file-x', 0, 0, 9,
  '{"sequence":9,"time_us":0,"attempt":1,"step":6,"epoch":1.0,
    "train_loss":0.0,"eval_loss":1.9,"lr":0.0,"grad_norm":0.0,
    "tokens_per_s":0.0,"peak_memory_bytes":7}');
INSERT INTO job_metrics VALUES
  ('job-old', 3, 0, 1, 2, 0.2, 2.5, NULL, 1e-4, 1.0, 50.0, 5),
  ('job-old', 4, 0, 1, 2, 0.2, 0.0, 1.4, 1e-4, 0.0, 0.0, 5),
  ('job-old', 6, 0, 1, 4, 0.4, 2.1, NULL, 1e-4, 1.0, 60.0, 6),
  ('job-old', 9, 0, 1, 6, 0.6, 0.0, 1.9, 0.0, 0.0, 0.0, 7);
INSERT INTO job_events(job_id, sequence, time, attempt, type, message) VALUES
  ('job-old', 5, 0, 1, 3, 'checkpoint at step 4: jobs/x/checkpoints/step-4'),
  ('job-old', 7, 0, 1, 6, 'eval_loss 1.9 at step 6 (best 1.4 at step 2)'),
  ('job-old', 8, 0, 1, 4, 'lease renewed at step 6 by worker x');
)sql"));
  }
  SqliteStoreOptions options;
  options.path = path;
  ASSERT_OK_AND_ASSIGN(auto store, SqliteStore::Open(options));
  ASSERT_OK_AND_ASSIGN(auto points,
                       store->ListJobMetrics("tenant-old", "job-old", 0, 0));
  ASSERT_EQ(points.size(), 4u);
  EXPECT_EQ(points[0].train_loss, 2.5);
  EXPECT_FALSE(points[1].train_loss.has_value());  // Was 0 beside an eval.
  EXPECT_EQ(points[2].train_loss, 2.1);
  EXPECT_FALSE(points[3].train_loss.has_value());

  ASSERT_OK_AND_ASSIGN(auto events,
                       store->ListJobEvents("tenant-old", "job-old", 0, 0));
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0].step, 4);  // CHECKPOINT
  EXPECT_EQ(events[1].step, 6);  // EVAL
  EXPECT_EQ(events[2].step, 0);  // Other kinds keep no step.

  ASSERT_OK_AND_ASSIGN(core::Job job, store->GetJob("tenant-old", "job-old"));
  ASSERT_TRUE(job.metrics.train.has_value());
  EXPECT_EQ(job.metrics.train->step, 4);
  EXPECT_EQ(job.metrics.train->train_loss, 2.1);
  EXPECT_EQ(job.metrics.train->tokens_per_s, 60.0);
  EXPECT_EQ(job.metrics.eval_loss, 1.9);
  EXPECT_EQ(job.metrics.eval_step, 6);
  EXPECT_EQ(job.metrics.best_eval_loss, 1.4);
  EXPECT_EQ(job.metrics.best_eval_step, 2);
  EXPECT_EQ(job.metrics.peak_memory_bytes, 7);
}

}  // namespace
}  // namespace ftune::store::testing
