// Logic of SqliteStore on a real SQLite file: tenants, keys, files, jobs,
// the state machine as compare-and-set, sequences, pagination, fencing,
// leases. (Durability and group commit: durability_test.cc.)
#include <algorithm>
#include <atomic>
#include <set>
#include <thread>

#include "common/ids.h"
#include "server/core/api_key.h"
#include "tests/server/store/store_fixture.h"

namespace ftune::store::testing {
namespace {

using core::Job;
using core::JobState;
using ::ftune::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using S = core::JobState;

TEST_F(StoreTest, TenantsAndQuotas) {
  auto t = MakeTenant("acme");
  EXPECT_TRUE(IsValidId(t.tenant.id, kTenantIdPrefix));
  EXPECT_EQ(t.tenant.create_time, clock_.Now());
  core::Tenant dup;
  dup.name = "acme";
  EXPECT_THAT(store_->CreateTenant(dup),
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("acme")));
  core::Tenant bad;
  bad.name = "zero";
  bad.weight = 0;
  EXPECT_THAT(
      store_->CreateTenant(bad),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("weight")));
  ASSERT_OK_AND_ASSIGN(core::Tenant q,
                       store_->SetQuota(t.tenant.id, core::Quota{5, 2, 4}));
  EXPECT_EQ(q.quota.max_queued_jobs, 5);
  ASSERT_OK_AND_ASSIGN(core::Tenant byname, store_->GetTenantByName("acme"));
  EXPECT_EQ(byname.quota.max_gpus, 4);
  EXPECT_THAT(store_->SetQuota("tenant-nope", core::Quota{}),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("tenant-nope")));
  EXPECT_THAT(store_->SetQuota(t.tenant.id, core::Quota{-1, 0, 0}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(">= 0")));
  ASSERT_OK_AND_ASSIGN(auto all, store_->ListTenants());
  EXPECT_EQ(all.size(), 1u);
}

TEST_F(StoreTest, ApiKeysStoredAsHashesAndRevocable) {
  auto t = MakeTenant("acme");
  core::GeneratedApiKey gen = core::GenerateApiKey();
  core::ApiKey key;
  key.tenant_id = t.tenant.id;
  key.prefix = gen.prefix;
  key.hash = gen.hash;
  ASSERT_OK_AND_ASSIGN(core::ApiKey stored, store_->CreateApiKey(key));
  ASSERT_OK_AND_ASSIGN(core::ApiKey found,
                       store_->LookupApiKeyByHash(core::HashApiKey(gen.key)));
  EXPECT_EQ(found.id, stored.id);
  EXPECT_EQ(found.tenant_id, t.tenant.id);
  EXPECT_TRUE(core::ApiKeyMatches(gen.key, found.hash));
  EXPECT_FALSE(found.revoked);
  EXPECT_THAT(store_->LookupApiKeyByHash(core::HashApiKey("ftk_other")),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("API key")));
  ASSERT_OK(store_->RevokeApiKey(stored.id));
  ASSERT_OK_AND_ASSIGN(found, store_->LookupApiKeyByHash(gen.hash));
  EXPECT_TRUE(found.revoked);
  EXPECT_OK(store_->RevokeApiKey(stored.id));  // Idempotent.
  EXPECT_THAT(store_->RevokeApiKey("key-none"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("key-none")));
  // Admin keys have no tenant; tenant keys need an existing tenant.
  core::ApiKey admin;
  admin.role = core::ApiKeyRole::kAdmin;
  admin.hash = core::GenerateApiKey().hash;
  ASSERT_OK(store_->CreateApiKey(admin));
  admin.hash = core::GenerateApiKey().hash;
  admin.tenant_id = t.tenant.id;
  admin.id.clear();
  EXPECT_THAT(
      store_->CreateApiKey(admin),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("tenant")));
  key.tenant_id = "tenant-ghost";
  key.hash = core::GenerateApiKey().hash;
  key.id.clear();
  EXPECT_THAT(store_->CreateApiKey(key),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("tenant-ghost")));
  ASSERT_OK_AND_ASSIGN(auto mine, store_->ListApiKeys(t.tenant.id));
  EXPECT_EQ(mine.size(), 1u);
  ASSERT_OK_AND_ASSIGN(auto every, store_->ListApiKeys(kAnyTenant));
  EXPECT_EQ(every.size(), 2u);
}

TEST_F(StoreTest, CreateJobIsIdempotentPerTenantAndRequestId) {
  auto a = MakeTenant("a");
  auto b = MakeTenant("b");
  ASSERT_OK_AND_ASSIGN(CreateJobResult first,
                       store_->CreateJob(NewJob(a, "r1")));
  EXPECT_TRUE(first.created);
  EXPECT_EQ(first.job.state, S::kQueued);
  EXPECT_EQ(first.job.attempt, 1);
  EXPECT_EQ(first.job.last_sequence, 1);
  Job changed = NewJob(a, "r1");
  changed.priority = 99;
  ASSERT_OK_AND_ASSIGN(CreateJobResult again, store_->CreateJob(changed));
  EXPECT_FALSE(again.created);
  EXPECT_EQ(again.job.id, first.job.id);
  EXPECT_EQ(again.job.priority, 3);  // The original, not the repeat.
  EXPECT_EQ(again.job.spec, first.job.spec);
  // Same request_id in another tenant is another job.
  ASSERT_OK_AND_ASSIGN(CreateJobResult other,
                       store_->CreateJob(NewJob(b, "r1")));
  EXPECT_TRUE(other.created);
  EXPECT_NE(other.job.id, first.job.id);
  // No request_id: every call creates.
  EXPECT_TRUE(store_->CreateJob(NewJob(a))->created);
  EXPECT_TRUE(store_->CreateJob(NewJob(a))->created);
  ASSERT_OK_AND_ASSIGN(auto page, store_->ListJobs(a.tenant.id, {}, 100, ""));
  EXPECT_EQ(page.items.size(), 3u);
}

TEST_F(StoreTest, CreateJobChecksReferencesAndRoundTripsFields) {
  auto a = MakeTenant("a");
  auto b = MakeTenant("b");
  Job j = NewJob(a);
  j.model = "nope";
  EXPECT_THAT(store_->CreateJob(j),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("model")));
  j = NewJob(a);
  j.training_file_id = b.file.id;  // Foreign file: as if it did not exist.
  EXPECT_THAT(store_->CreateJob(j),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("training_file_id: file " + b.file.id +
                                 " not found")));
  core::FileRecord pending = a.file;
  pending.id.clear();
  pending.status = core::FileStatus::kProcessing;
  ASSERT_OK_AND_ASSIGN(pending, store_->CreateFile(pending));
  j = NewJob(a);
  j.validation_file_id = pending.id;
  EXPECT_THAT(store_->CreateJob(j),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("validation_file_id: file " + pending.id +
                                 " is PROCESSING")));
  j = NewJob(a);
  j.resources = core::JobResources{2, 1 << 30, "H100", 4};
  j.labels = {{"team", "nlp"}, {"exp", "7"}};
  j.validation_file_id = a.file.id;
  ASSERT_OK_AND_ASSIGN(CreateJobResult r, store_->CreateJob(j));
  ASSERT_OK_AND_ASSIGN(Job got, store_->GetJob(a.tenant.id, r.job.id));
  EXPECT_EQ(got.spec, j.spec);
  EXPECT_EQ(got.resources.gpus, 2);
  EXPECT_EQ(got.resources.memory_bytes, 1 << 30);
  EXPECT_EQ(got.resources.gpu_type, "H100");
  EXPECT_EQ(got.resources.cpu_threads, 4);
  EXPECT_EQ(got.labels, j.labels);
  EXPECT_EQ(got.validation_file_id, a.file.id);
  EXPECT_EQ(got.create_time, clock_.Now());
  EXPECT_EQ(got.start_time, absl::InfinitePast());
}

TEST_F(StoreTest, TenantsNeverSeeEachOthersObjects) {
  auto a = MakeTenant("a");
  auto b = MakeTenant("b");
  Job ja = MustCreate(NewJob(a));
  MustCreate(NewJob(b));
  EXPECT_THAT(store_->GetJob(b.tenant.id, ja.id),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr(ja.id)));
  auto never = store_->GetJob(b.tenant.id, "job-neverexisted");
  auto foreign = store_->GetJob(b.tenant.id, ja.id);
  EXPECT_EQ(never.status().code(), foreign.status().code());
  EXPECT_THAT(store_->GetFile(b.tenant.id, a.file.id),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr(a.file.id)));
  EXPECT_THAT(store_->DeleteFile(b.tenant.id, a.file.id),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr(a.file.id)));
  EXPECT_THAT(store_->CancelJob(b.tenant.id, ja.id, ""),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr(ja.id)));
  EXPECT_THAT(store_->PauseJob(b.tenant.id, ja.id),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr(ja.id)));
  EXPECT_THAT(store_->ListJobEvents(b.tenant.id, ja.id, 0, 10),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr(ja.id)));
  EXPECT_THAT(store_->ListJobMetrics(b.tenant.id, ja.id, 0, 10),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr(ja.id)));
  EXPECT_THAT(store_->ListCheckpoints(b.tenant.id, ja.id),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr(ja.id)));
  ASSERT_OK_AND_ASSIGN(auto jobs, store_->ListJobs(b.tenant.id, {}, 100, ""));
  ASSERT_EQ(jobs.items.size(), 1u);
  EXPECT_EQ(jobs.items[0].tenant_id, b.tenant.id);
  ASSERT_OK_AND_ASSIGN(auto files, store_->ListFiles(b.tenant.id, "", 100, ""));
  ASSERT_EQ(files.items.size(), 1u);
  EXPECT_EQ(files.items[0].id, b.file.id);
  ASSERT_OK_AND_ASSIGN(auto everything,
                       store_->ListJobs(kAnyTenant, {}, 100, ""));
  EXPECT_EQ(everything.items.size(), 2u);
  EXPECT_THAT(
      store_->GetJob("", ja.id),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("tenant_id")));
}

TEST_F(StoreTest, QueuedQuotaCountsQueuedAndPausedJobs) {
  auto a = MakeTenant("a", core::Quota{/*max_queued_jobs=*/2, 0, 0});
  Job j1 = MustCreate(NewJob(a));
  ASSERT_OK(store_->PauseJob(a.tenant.id, j1.id));
  MustCreate(NewJob(a));
  EXPECT_THAT(store_->CreateJob(NewJob(a)),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr("max_queued_jobs=2")));
  ASSERT_OK(store_->CancelJob(a.tenant.id, j1.id, ""));
  EXPECT_OK(store_->CreateJob(NewJob(a)));
  // A repeated request_id returns the original even at the quota.
  ASSERT_OK(store_->SetQuota(a.tenant.id, core::Quota{0, 0, 0}));
  Job keyed = MustCreate(NewJob(a, "k"));
  ASSERT_OK(store_->SetQuota(a.tenant.id, core::Quota{1, 0, 0}));
  ASSERT_OK_AND_ASSIGN(CreateJobResult again,
                       store_->CreateJob(NewJob(a, "k")));
  EXPECT_EQ(again.job.id, keyed.id);
}

TEST_F(StoreTest, GpuAndRunningQuotasAtCreateAndGrant) {
  auto a = MakeTenant("a", core::Quota{0, /*max_running_jobs=*/2,
                                       /*max_gpus=*/3});
  Job big = NewJob(a);
  big.resources.gpus = 4;
  EXPECT_THAT(
      store_->CreateJob(big),
      StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("max_gpus=3")));
  core::Worker w = MustRegisterWorker();
  const absl::Time exp = clock_.Now() + absl::Seconds(30);
  Job two = NewJob(a);
  two.resources.gpus = 2;
  Job j1 = MustCreate(two);
  Job j2 = MustCreate(two);
  Job j3 = MustCreate(NewJob(a));  // 1 GPU.
  Job j4 = MustCreate(NewJob(a));
  ASSERT_OK(store_->GrantLease(j1.id, 1, w.id, exp));
  EXPECT_THAT(
      store_->GrantLease(j2.id, 1, w.id, exp),
      StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("max_gpus=3")));
  ASSERT_OK(store_->GrantLease(j3.id, 1, w.id, exp));
  EXPECT_THAT(store_->GrantLease(j4.id, 1, w.id, exp),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr("max_running_jobs=2")));
  ASSERT_OK_AND_ASSIGN(Job still, store_->GetJob(a.tenant.id, j4.id));
  EXPECT_EQ(still.state, S::kQueued);  // The refused grant changed nothing.
}

// Brings a fresh job to `state` through the store's own operations.
class TransitionTest : public StoreTest {
 protected:
  Job JobIn(const TenantSetup& t, const core::Worker& w, JobState state) {
    Job j = MustCreate(NewJob(t));
    const absl::Time exp = clock_.Now() + absl::Seconds(30);
    auto run = [&] { return *store_->GrantLease(j.id, 1, w.id, exp); };
    switch (state) {
      case S::kQueued:
        return j;
      case S::kRunning:
        return run();
      case S::kCancelling:
        run();
        return *store_->CancelJob(t.tenant.id, j.id, "");
      case S::kPaused:
        return *store_->PauseJob(t.tenant.id, j.id);
      case S::kSucceeded: {
        run();
        core::AttemptEnd end;
        end.outcome = core::AttemptOutcome::kSucceeded;
        return *store_->EndAttempt(j.id, 1, w.id, end);
      }
      case S::kFailed: {
        JobTransition tr;
        tr.job_id = j.id;
        tr.expected_state = S::kQueued;
        tr.new_state = S::kFailed;
        return *store_->TransitionJob(tr);
      }
      case S::kCancelled:
        return *store_->CancelJob(t.tenant.id, j.id, "");
    }
    return j;
  }
};

TEST_F(TransitionTest, EveryLegalAndIllegalTransition) {
  auto a = MakeTenant("a");
  core::Worker w = MustRegisterWorker();
  for (S from : core::kAllJobStates) {
    for (S to : core::kAllJobStates) {
      Job j = JobIn(a, w, from);
      ASSERT_EQ(j.state, from);
      JobTransition tr;
      tr.tenant_id = a.tenant.id;
      tr.job_id = j.id;
      tr.expected_state = from;
      tr.expected_attempt = j.attempt;
      tr.new_state = to;
      tr.message = "test";
      absl::StatusOr<Job> r = store_->TransitionJob(tr);
      ASSERT_OK_AND_ASSIGN(Job after, store_->GetJob(a.tenant.id, j.id));
      if (core::IsAllowedTransition(from, to)) {
        ASSERT_OK(r) << core::JobStateName(from) << "->"
                     << core::JobStateName(to);
        EXPECT_EQ(after.state, to);
        EXPECT_EQ(after.last_sequence, j.last_sequence + 1);
        ASSERT_OK_AND_ASSIGN(
            auto ev,
            store_->ListJobEvents(a.tenant.id, j.id, j.last_sequence, 10));
        ASSERT_EQ(ev.size(), 1u);
        EXPECT_EQ(ev[0].from_state, from);
        EXPECT_EQ(ev[0].to_state, to);
        EXPECT_EQ(core::IsTerminal(to), after.end_time != absl::InfinitePast());
        if (core::IsTerminal(to) || to == S::kQueued) {
          EXPECT_EQ(after.worker_id, "");
        }
      } else {
        EXPECT_THAT(r, StatusIs(absl::StatusCode::kFailedPrecondition,
                                HasSubstr(core::JobStateName(from))))
            << core::JobStateName(from) << "->" << core::JobStateName(to);
        EXPECT_EQ(after.state, from);  // Nothing changed.
        EXPECT_EQ(after.last_sequence, j.last_sequence);
      }
    }
  }
}

TEST_F(TransitionTest, CompareAndSetFailureNamesTheCurrentState) {
  auto a = MakeTenant("a");
  core::Worker w = MustRegisterWorker();
  Job j = JobIn(a, w, S::kRunning);
  JobTransition tr;
  tr.job_id = j.id;
  tr.expected_state = S::kQueued;
  tr.new_state = S::kRunning;
  EXPECT_THAT(store_->TransitionJob(tr),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("is RUNNING (attempt 1)")));
  tr.expected_state = S::kRunning;
  tr.expected_attempt = 2;
  tr.new_state = S::kSucceeded;
  EXPECT_THAT(store_->TransitionJob(tr),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("expected RUNNING (attempt 2)")));
}

TEST_F(TransitionTest, UserRequestsFollowTheStateMachine) {
  auto a = MakeTenant("a");
  core::Worker w = MustRegisterWorker();
  const std::string t = a.tenant.id;
  // Cancel.
  EXPECT_EQ(store_->CancelJob(t, JobIn(a, w, S::kQueued).id, "")->state,
            S::kCancelled);
  EXPECT_EQ(store_->CancelJob(t, JobIn(a, w, S::kPaused).id, "")->state,
            S::kCancelled);
  Job running = JobIn(a, w, S::kRunning);
  ASSERT_OK_AND_ASSIGN(Job c, store_->CancelJob(t, running.id, "user"));
  EXPECT_EQ(c.state, S::kCancelling);
  EXPECT_EQ(c.worker_id, w.id);  // The worker still has to stop it.
  ASSERT_OK_AND_ASSIGN(Job c2, store_->CancelJob(t, running.id, "again"));
  EXPECT_EQ(c2.state, S::kCancelling);
  EXPECT_EQ(c2.last_sequence, c.last_sequence);  // No-op, no event.
  for (S s : {S::kSucceeded, S::kFailed, S::kCancelled}) {
    EXPECT_THAT(store_->CancelJob(t, JobIn(a, w, s).id, ""),
                StatusIs(absl::StatusCode::kFailedPrecondition,
                         HasSubstr(core::JobStateName(s))));
  }
  // Pause / resume.
  Job r2 = JobIn(a, w, S::kRunning);
  ASSERT_OK_AND_ASSIGN(Job p, store_->PauseJob(t, r2.id));
  EXPECT_EQ(p.state, S::kPaused);
  EXPECT_EQ(p.worker_id, w.id);
  EXPECT_THAT(
      store_->PauseJob(t, r2.id),
      StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("PAUSED")));
  ASSERT_OK_AND_ASSIGN(Job resumed, store_->ResumeJob(t, r2.id));
  EXPECT_EQ(resumed.state, S::kQueued);
  EXPECT_EQ(resumed.attempt, 2);
  EXPECT_EQ(resumed.restart_count, 0);
  EXPECT_EQ(resumed.worker_id, "");
  // The paused worker's late report is now stale.
  EXPECT_THAT(store_->AppendMetrics(r2.id, 1, {core::MetricPoint{}}),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("stale attempt 1")));
  EXPECT_THAT(
      store_->ResumeJob(t, r2.id),
      StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("QUEUED")));
  EXPECT_THAT(
      store_->PauseJob(t, JobIn(a, w, S::kCancelling).id),
      StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("CANCELLING")));
}

TEST_F(TransitionTest, SequencesAreSharedAndMonotonic) {
  auto a = MakeTenant("a");
  core::Worker w = MustRegisterWorker();
  Job j = JobIn(a, w, S::kRunning);  // Events 1 (created), 2 (running).
  core::MetricPoint p;
  p.step = 1;
  p.train_loss = 2.5;
  ASSERT_OK_AND_ASSIGN(auto pts, store_->AppendMetrics(j.id, 1, {p, p, p}));
  EXPECT_EQ(pts[0].sequence, 3);
  EXPECT_EQ(pts[2].sequence, 5);
  core::Checkpoint ck;
  ck.step = 10;
  ck.path = "jobs/x/checkpoints/step-10";
  ASSERT_OK(store_->AddCheckpoint(j.id, 1, ck));          // 6
  ASSERT_OK(store_->AppendJobMessage(j.id, 1, "hello"));  // 7
  p.step = 11;
  p.eval_loss = 1.25;
  ASSERT_OK(store_->AppendMetrics(j.id, 1, {p}));  // 8
  ASSERT_OK_AND_ASSIGN(auto events,
                       store_->ListJobEvents(a.tenant.id, j.id, 0, 0));
  ASSERT_OK_AND_ASSIGN(auto metrics,
                       store_->ListJobMetrics(a.tenant.id, j.id, 0, 0));
  std::vector<int64_t> ev_seq, m_seq;
  for (auto& e : events) ev_seq.push_back(e.sequence);
  for (auto& m : metrics) m_seq.push_back(m.sequence);
  EXPECT_THAT(ev_seq, ElementsAre(1, 2, 6, 7));
  EXPECT_THAT(m_seq, ElementsAre(3, 4, 5, 8));
  EXPECT_EQ(metrics.back().eval_loss, 1.25);
  EXPECT_FALSE(metrics.front().eval_loss.has_value());
  // Resume from a cursor.
  ASSERT_OK_AND_ASSIGN(auto after5,
                       store_->ListJobEvents(a.tenant.id, j.id, 5, 0));
  ASSERT_EQ(after5.size(), 2u);
  EXPECT_EQ(after5[0].type, core::JobEventType::kCheckpoint);
  EXPECT_EQ(after5[0].step, 10);
  ASSERT_OK_AND_ASSIGN(auto lim,
                       store_->ListJobMetrics(a.tenant.id, j.id, 3, 2));
  ASSERT_EQ(lim.size(), 2u);
  EXPECT_EQ(lim[1].sequence, 5);
  ASSERT_OK_AND_ASSIGN(Job after, store_->GetJob(a.tenant.id, j.id));
  EXPECT_EQ(after.last_sequence, 8);
  ASSERT_TRUE(after.metrics.train.has_value());
  EXPECT_EQ(after.metrics.train->step, 11);
  EXPECT_EQ(after.metrics.eval_step, 11);
  EXPECT_EQ(after.progress.step, 11);
  ASSERT_TRUE(after.last_checkpoint.has_value());
  EXPECT_EQ(after.last_checkpoint->step, 10);
  EXPECT_EQ(after.last_checkpoint->path, ck.path);
}

TEST_F(TransitionTest, StaleAttemptReportsAreRefused) {
  auto a = MakeTenant("a");
  core::Worker w = MustRegisterWorker();
  Job j = JobIn(a, w, S::kRunning);
  ASSERT_OK(
      store_->ExpireLeases(clock_.Now() + absl::Minutes(1)));  // attempt 2
  EXPECT_THAT(store_->AppendMetrics(j.id, 1, {core::MetricPoint{}}),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("stale attempt 1")));
  core::Checkpoint ck{"", 5, 0, "p", absl::InfinitePast()};
  EXPECT_THAT(
      store_->AddCheckpoint(j.id, 1, ck),
      StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("stale")));
  core::AttemptEnd done;
  EXPECT_THAT(
      store_->EndAttempt(j.id, 1, w.id, done),
      StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("stale")));
  // Current attempt, but QUEUED: nobody holds it yet.
  EXPECT_THAT(store_->AppendMetrics(j.id, 2, {core::MetricPoint{}}),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("holds no lease")));
  core::Worker w2 = MustRegisterWorker("host-b");
  ASSERT_OK(
      store_->GrantLease(j.id, 2, w2.id, clock_.Now() + absl::Minutes(5)));
  EXPECT_THAT(
      store_->RenewLease(j.id, 2, w.id, clock_.Now()),
      StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr(w2.id)));
  ASSERT_OK(store_->AppendMetrics(j.id, 2, {core::MetricPoint{}}));
  ASSERT_OK_AND_ASSIGN(auto metrics,
                       store_->ListJobMetrics(a.tenant.id, j.id, 0, 0));
  ASSERT_EQ(metrics.size(), 1u);
  EXPECT_EQ(metrics[0].attempt, 2);
}

TEST_F(TransitionTest, LeaseExpiryRequeuesThenFailsAfterMaxRestarts) {
  auto a = MakeTenant("a");
  core::Worker w = MustRegisterWorker();
  Job j = MustCreate(NewJob(a));  // max_restarts = 2
  for (int64_t attempt = 1; attempt <= 3; ++attempt) {
    ASSERT_OK_AND_ASSIGN(Job run,
                         store_->GrantLease(j.id, attempt, w.id,
                                            clock_.Now() + absl::Seconds(10)));
    EXPECT_EQ(run.state, S::kRunning);
    // Renewal keeps it alive past the first deadline.
    ASSERT_OK(store_->HeartbeatWorker(w.id, clock_.Now() + absl::Seconds(20)));
    ASSERT_OK_AND_ASSIGN(
        auto early, store_->ExpireLeases(clock_.Now() + absl::Seconds(15)));
    EXPECT_TRUE(early.requeued.empty() && early.failed.empty());
    clock_.Advance(absl::Seconds(21));
    ASSERT_OK_AND_ASSIGN(auto r, store_->ExpireLeases(clock_.Now()));
    ASSERT_OK_AND_ASSIGN(Job after, store_->GetJob(a.tenant.id, j.id));
    if (attempt <= 2) {
      ASSERT_EQ(r.requeued.size(), 1u);
      EXPECT_EQ(after.state, S::kQueued);
      EXPECT_EQ(after.attempt, attempt + 1);
      EXPECT_EQ(after.restart_count, attempt);
      EXPECT_EQ(after.error.reason, core::JobErrorReason::kWorkerLost);
      EXPECT_EQ(after.worker_id, "");
    } else {
      ASSERT_EQ(r.failed.size(), 1u);
      EXPECT_EQ(after.state, S::kFailed);
      EXPECT_EQ(after.attempt, 3);
      EXPECT_FALSE(after.error.retryable);
      EXPECT_THAT(after.error.message, HasSubstr("max_restarts=2"));
    }
    EXPECT_THAT(r.lost_workers, ElementsAre(w.id));
    // The worker comes back (re-registers) for the next round.
    core::Worker again = w;
    ASSERT_OK_AND_ASSIGN(
        w, store_->RegisterWorker(again, clock_.Now() + absl::Hours(1)));
    EXPECT_EQ(w.state, core::WorkerState::kActive);
  }
}

TEST_F(TransitionTest, LeaseExpiryWhileCancellingOrPaused) {
  auto a = MakeTenant("a");
  core::Worker w = MustRegisterWorker();
  Job c = JobIn(a, w, S::kCancelling);
  Job r = JobIn(a, w, S::kRunning);
  ASSERT_OK_AND_ASSIGN(Job p, store_->PauseJob(a.tenant.id, r.id));
  ASSERT_EQ(p.worker_id, w.id);
  ASSERT_OK_AND_ASSIGN(auto res,
                       store_->ExpireLeases(clock_.Now() + absl::Hours(1)));
  EXPECT_TRUE(res.requeued.empty());
  EXPECT_TRUE(res.failed.empty());
  ASSERT_EQ(res.other.size(), 2u);
  ASSERT_OK_AND_ASSIGN(Job c2, store_->GetJob(a.tenant.id, c.id));
  EXPECT_EQ(c2.state, S::kCancelled);
  ASSERT_OK_AND_ASSIGN(Job p2, store_->GetJob(a.tenant.id, r.id));
  EXPECT_EQ(p2.state, S::kPaused);
  EXPECT_EQ(p2.worker_id, "");
  EXPECT_EQ(p2.attempt, 1);
  // Expiring again finds nothing: the leases are gone.
  ASSERT_OK_AND_ASSIGN(auto again,
                       store_->ExpireLeases(clock_.Now() + absl::Hours(2)));
  EXPECT_TRUE(again.other.empty());
}

TEST_F(TransitionTest, EndAttemptOutcomes) {
  auto a = MakeTenant("a");
  core::Worker w = MustRegisterWorker();
  Job j = JobIn(a, w, S::kRunning);
  core::AttemptEnd retry;
  retry.outcome = core::AttemptOutcome::kRetryableFailure;
  retry.error =
      core::JobError{core::JobErrorReason::kTrainerError, "exit 75", true};
  ASSERT_OK_AND_ASSIGN(Job q, store_->EndAttempt(j.id, 1, w.id, retry));
  EXPECT_EQ(q.state, S::kQueued);
  EXPECT_EQ(q.attempt, 2);
  ASSERT_OK(store_->GrantLease(j.id, 2, w.id, clock_.Now() + absl::Minutes(1)));
  core::AttemptEnd ok;
  ok.outcome = core::AttemptOutcome::kSucceeded;
  ok.adapter.path = "jobs/a/j/adapter";
  ok.adapter.manifest_sha256 = "feed";
  ASSERT_OK_AND_ASSIGN(Job s, store_->EndAttempt(j.id, 2, w.id, ok));
  EXPECT_EQ(s.state, S::kSucceeded);
  EXPECT_EQ(s.adapter.path, "jobs/a/j/adapter");
  EXPECT_EQ(s.error.reason, core::JobErrorReason::kNone);
  // Exactly once: a repeated success report is refused.
  EXPECT_THAT(
      store_->EndAttempt(j.id, 2, w.id, ok),
      StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("SUCCEEDED")));
  // Cancel acknowledged by the worker.
  Job c = JobIn(a, w, S::kCancelling);
  core::AttemptEnd stopped;
  stopped.outcome = core::AttemptOutcome::kStopped;
  ASSERT_OK_AND_ASSIGN(Job cancelled,
                       store_->EndAttempt(c.id, 1, w.id, stopped));
  EXPECT_EQ(cancelled.state, S::kCancelled);
}

TEST_F(TransitionTest, WorkersDrainAndSnapshot) {
  auto a = MakeTenant("a");
  core::Worker w = MustRegisterWorker();
  Job running = JobIn(a, w, S::kRunning);
  Job queued = MustCreate(NewJob(a));
  ASSERT_OK_AND_ASSIGN(auto held, store_->HeartbeatWorker(
                                      w.id, clock_.Now() + absl::Minutes(1)));
  ASSERT_EQ(held.size(), 1u);
  EXPECT_EQ(held[0].job_id, running.id);
  EXPECT_EQ(held[0].attempt, 1);
  ASSERT_OK_AND_ASSIGN(core::Worker d, store_->DrainWorker(w.id));
  EXPECT_EQ(d.state, core::WorkerState::kDraining);
  EXPECT_THAT(
      store_->GrantLease(queued.id, 1, w.id, clock_.Now()),
      StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("DRAINING")));
  // Re-registering does not undo a drain.
  ASSERT_OK_AND_ASSIGN(
      core::Worker again,
      store_->RegisterWorker(w, clock_.Now() + absl::Minutes(1)));
  EXPECT_EQ(again.state, core::WorkerState::kDraining);
  ASSERT_OK_AND_ASSIGN(core::SchedulingSnapshot snap,
                       store_->GetSchedulingSnapshot());
  ASSERT_EQ(snap.queued.size(), 1u);
  EXPECT_EQ(snap.queued[0].id, queued.id);
  EXPECT_TRUE(snap.queued[0].spec.empty());
  ASSERT_EQ(snap.active.size(), 1u);
  EXPECT_EQ(snap.active[0].id, running.id);
  EXPECT_EQ(snap.tenants.size(), 1u);
  ASSERT_EQ(snap.workers.size(), 1u);
  EXPECT_EQ(snap.workers[0].state, core::WorkerState::kDraining);
  EXPECT_THAT(store_->HeartbeatWorker("worker-none", clock_.Now()),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("worker-none")));
}

// What a worker's trainer runs and what a job asks of one survive the
// database (the snapshot placement reads included); rows without them
// read back as "not said".
TEST_F(TransitionTest, TrainerCapabilitiesAndRequirementsRoundTrip) {
  auto a = MakeTenant("a");
  core::Worker w;
  w.hostname = "host-t";
  w.capabilities.gpus = 2;
  contract::TrainerCapabilities t;
  t.version = "0.9";
  t.methods = {"lora", "qlora"};
  t.architectures = {"LlamaForCausalLM", "GPT2LMHeadModel"};
  t.dtypes = {"fp32"};
  t.cuda = true;
  t.max_gpus_per_job = 1;
  t.chat_templates = {"chatml"};
  w.capabilities.trainer = t;
  ASSERT_OK_AND_ASSIGN(core::Worker reg, store_->RegisterWorker(
                                             w, clock_.Now() + absl::Hours(1)));
  core::Worker plain = MustRegisterWorker("host-plain");
  ASSERT_OK_AND_ASSIGN(core::Worker got, store_->GetWorker(reg.id));
  ASSERT_TRUE(got.capabilities.trainer.has_value());
  EXPECT_EQ(contract::CapabilitiesToJson(*got.capabilities.trainer),
            contract::CapabilitiesToJson(t));
  ASSERT_OK_AND_ASSIGN(core::Worker got_plain, store_->GetWorker(plain.id));
  EXPECT_FALSE(got_plain.capabilities.trainer.has_value());

  Job with = NewJob(a);
  with.resources.trainer = contract::TrainerRequirement{
      contract::Method::kQlora, "GPT2LMHeadModel", contract::Dtype::kBf16};
  Job created = MustCreate(with);
  Job without = MustCreate(NewJob(a, "without"));
  ASSERT_OK_AND_ASSIGN(core::SchedulingSnapshot snap,
                       store_->GetSchedulingSnapshot());
  ASSERT_EQ(snap.queued.size(), 2u);
  for (const Job& q : snap.queued) {
    if (q.id == created.id) {
      ASSERT_TRUE(q.resources.trainer.has_value());
      EXPECT_EQ(q.resources.trainer->method, contract::Method::kQlora);
      EXPECT_EQ(q.resources.trainer->architecture, "GPT2LMHeadModel");
      EXPECT_EQ(q.resources.trainer->dtype, contract::Dtype::kBf16);
    } else {
      EXPECT_EQ(q.id, without.id);
      EXPECT_FALSE(q.resources.trainer.has_value());
    }
  }
  bool saw = false;
  for (const core::Worker& sw : snap.workers) {
    if (sw.id == reg.id) saw = sw.capabilities.trainer.has_value();
  }
  EXPECT_TRUE(saw);
}

TEST_F(StoreTest, ModelsUpsertGetList) {
  core::Model m{"llama-tiny", "models/llama-tiny", {{"arch", "llama"}}, {}};
  ASSERT_OK(store_->UpsertModel(m));
  m.directory = "models/llama-tiny-v2";
  ASSERT_OK(store_->UpsertModel(m));
  ASSERT_OK(store_->UpsertModel(core::Model{"a-model", "models/a", {}, {}}));
  ASSERT_OK_AND_ASSIGN(core::Model got, store_->GetModel("llama-tiny"));
  EXPECT_EQ(got.directory, "models/llama-tiny-v2");
  EXPECT_EQ(got.metadata.at("arch"), "llama");
  ASSERT_OK_AND_ASSIGN(auto all, store_->ListModels());
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].name, "a-model");
  EXPECT_THAT(store_->GetModel("nope"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("nope")));
  EXPECT_THAT(
      store_->UpsertModel(core::Model{"x", "", {}, {}}),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("directory")));
}

// A full fine-tuning job's model (AttemptEnd.output_model) is written with
// the SUCCEEDED transition only (not by a failed attempt), keeps its owner
// and job, and only its owner's job-creation facts find it.
TEST_F(TransitionTest, FineTunedModelIsStoredWithTheSuccess) {
  auto a = MakeTenant("a");
  auto b = MakeTenant("b");
  core::Worker w = MustRegisterWorker();
  Job j = JobIn(a, w, S::kRunning);
  core::Model m;
  m.name = core::FineTunedModelName(j.id);
  m.directory = "jobs/" + a.tenant.id + "/" + j.id + "/adapter";
  m.tenant_id = a.tenant.id;
  m.job_id = j.id;
  m.metadata["base_model"] = "tiny";
  core::AttemptEnd retry;
  retry.outcome = core::AttemptOutcome::kRetryableFailure;
  retry.error =
      core::JobError{core::JobErrorReason::kTrainerError, "exit 75", true};
  retry.output_model = m;
  ASSERT_OK(store_->EndAttempt(j.id, 1, w.id, retry).status());
  EXPECT_THAT(store_->GetModel(m.name),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("not found")));
  ASSERT_OK(store_->GrantLease(j.id, 2, w.id, clock_.Now() + absl::Minutes(1)));
  core::AttemptEnd ok;
  ok.outcome = core::AttemptOutcome::kSucceeded;
  ok.adapter.path = m.directory;
  // Another tenant's or job's model is refused with the whole report.
  core::AttemptEnd forged = ok;
  forged.output_model = m;
  forged.output_model->tenant_id = b.tenant.id;
  EXPECT_THAT(
      store_->EndAttempt(j.id, 2, w.id, forged),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("output_model")));
  ok.output_model = m;
  ASSERT_OK_AND_ASSIGN(Job s, store_->EndAttempt(j.id, 2, w.id, ok));
  EXPECT_EQ(s.state, S::kSucceeded);
  ASSERT_OK_AND_ASSIGN(core::Model got, store_->GetModel(m.name));
  EXPECT_EQ(got.tenant_id, a.tenant.id);
  EXPECT_EQ(got.job_id, j.id);
  EXPECT_EQ(got.directory, m.directory);
  EXPECT_EQ(got.metadata.at("base_model"), "tiny");
  ASSERT_OK_AND_ASSIGN(auto all, store_->ListModels());
  int listed = 0;
  for (const core::Model& x : all) {
    if (x.name != m.name) continue;
    ++listed;
    EXPECT_EQ(x.tenant_id, a.tenant.id);
  }
  EXPECT_EQ(listed, 1);
  ASSERT_OK_AND_ASSIGN(JobCreationFacts mine, store_->GetJobCreationFacts(
                                                  a.tenant.id, m.name, "", ""));
  ASSERT_TRUE(mine.model.has_value());
  EXPECT_EQ(mine.model->directory, m.directory);
  ASSERT_OK_AND_ASSIGN(
      JobCreationFacts theirs,
      store_->GetJobCreationFacts(b.tenant.id, m.name, "", ""));
  EXPECT_FALSE(theirs.model.has_value());
  EXPECT_TRUE(core::ModelVisibleTo(got, a.tenant.id));
  EXPECT_FALSE(core::ModelVisibleTo(got, b.tenant.id));
}

TEST_F(StoreTest, FileStatusUpdatesAndRecordRoundTrip) {
  auto a = MakeTenant("a");
  core::FileRecord f;
  f.tenant_id = a.tenant.id;
  f.filename = "data.jsonl";
  f.purpose = "fine-tune";
  f.size_bytes = 1234;
  f.sha256 = std::string(64, 'e');
  f.format = "chat";
  f.example_count = 17;
  f.storage_path = "files/a/f";
  ASSERT_OK_AND_ASSIGN(f, store_->CreateFile(f));
  EXPECT_EQ(f.status, core::FileStatus::kProcessing);
  ASSERT_OK_AND_ASSIGN(
      core::FileRecord inv,
      store_->UpdateFileStatus(a.tenant.id, f.id, core::FileStatus::kInvalid,
                               "line 3: missing role"));
  EXPECT_EQ(inv.status, core::FileStatus::kInvalid);
  ASSERT_OK_AND_ASSIGN(core::FileRecord got,
                       store_->GetFile(a.tenant.id, f.id));
  EXPECT_EQ(got.status_detail, "line 3: missing role");
  EXPECT_EQ(got.size_bytes, 1234);
  EXPECT_EQ(got.sha256, f.sha256);
  EXPECT_EQ(got.example_count, 17);
  EXPECT_EQ(got.format, "chat");
  EXPECT_EQ(got.create_time, clock_.Now());
  core::FileRecord orphan = f;
  orphan.id.clear();
  orphan.tenant_id = "tenant-ghost";
  EXPECT_THAT(store_->CreateFile(orphan),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("tenant-ghost")));
}

TEST_F(StoreTest, FileDeleteRefusedWhileALiveJobUsesIt) {
  auto a = MakeTenant("a");
  Job j = MustCreate(NewJob(a));
  EXPECT_THAT(store_->DeleteFile(a.tenant.id, a.file.id),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("used by job " + j.id + " which is QUEUED")));
  ASSERT_OK(store_->CancelJob(a.tenant.id, j.id, ""));
  ASSERT_OK_AND_ASSIGN(core::FileRecord gone,
                       store_->DeleteFile(a.tenant.id, a.file.id));
  EXPECT_EQ(gone.storage_path, a.file.storage_path);
  EXPECT_THAT(store_->GetFile(a.tenant.id, a.file.id),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr(a.file.id)));
  ASSERT_OK_AND_ASSIGN(auto files, store_->ListFiles(a.tenant.id, "", 10, ""));
  EXPECT_TRUE(files.items.empty());
  EXPECT_THAT(store_->CreateJob(NewJob(a)),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("training_file_id")));
}

TEST_F(StoreTest, ListFilesPaginatesAndFiltersByPurpose) {
  auto a = MakeTenant("a");
  for (int i = 0; i < 4; ++i) {
    core::FileRecord f = a.file;
    f.id.clear();
    f.purpose = i % 2 ? "fine-tune" : "eval";
    ASSERT_OK(store_->CreateFile(f));
  }
  ASSERT_OK_AND_ASSIGN(auto p1,
                       store_->ListFiles(a.tenant.id, "fine-tune", 2, ""));
  ASSERT_EQ(p1.items.size(), 2u);
  ASSERT_FALSE(p1.next_page_token.empty());
  ASSERT_OK_AND_ASSIGN(auto p2, store_->ListFiles(a.tenant.id, "fine-tune", 2,
                                                  p1.next_page_token));
  ASSERT_EQ(p2.items.size(), 1u);
  EXPECT_EQ(p2.items[0].id, a.file.id);  // The oldest comes last.
  EXPECT_TRUE(p2.next_page_token.empty());
  EXPECT_THAT(
      store_->ListFiles(a.tenant.id, "", 2, "garbage!"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("page_token")));
  // A token of one list is not accepted by another.
  EXPECT_THAT(
      store_->ListJobs(a.tenant.id, {}, 2, p1.next_page_token),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("page_token")));
}

TEST_F(StoreTest, ListJobsFiltersByStateAndLabels) {
  auto a = MakeTenant("a");
  Job j1 = MustCreate(NewJob(a));
  Job j2 = NewJob(a);
  j2.labels = {{"team", "cv"}, {"exp", "1"}};
  j2 = MustCreate(j2);
  ASSERT_OK(store_->PauseJob(a.tenant.id, j2.id));
  JobFilter f;
  f.states = {S::kPaused};
  ASSERT_OK_AND_ASSIGN(auto paused, store_->ListJobs(a.tenant.id, f, 10, ""));
  ASSERT_EQ(paused.items.size(), 1u);
  EXPECT_EQ(paused.items[0].id, j2.id);
  f = JobFilter{};
  f.labels = {{"team", "nlp"}};
  ASSERT_OK_AND_ASSIGN(auto nlp, store_->ListJobs(a.tenant.id, f, 10, ""));
  ASSERT_EQ(nlp.items.size(), 1u);
  EXPECT_EQ(nlp.items[0].id, j1.id);
  f.labels = {{"team", "cv"}, {"exp", "2"}};
  ASSERT_OK_AND_ASSIGN(auto none, store_->ListJobs(a.tenant.id, f, 10, ""));
  EXPECT_TRUE(none.items.empty());
  f.labels = {{"team", "cv"}, {"exp", "1"}};
  f.states = {S::kQueued, S::kPaused};
  ASSERT_OK_AND_ASSIGN(auto both, store_->ListJobs(a.tenant.id, f, 10, ""));
  EXPECT_EQ(both.items.size(), 1u);
}

TEST_F(StoreTest, PaginationIsStableWhileAnotherThreadInserts) {
  auto a = MakeTenant("a");
  for (int i = 0; i < 60; ++i) MustCreate(NewJob(a));
  std::atomic<bool> stop{false};
  std::atomic<int> inserted{0};
  std::thread writer([&] {
    while (!stop.load()) {
      if (store_->CreateJob(NewJob(a)).ok()) inserted.fetch_add(1);
    }
  });
  // Wait until the writer is demonstrably running before listing.
  while (inserted.load() < 3) std::this_thread::yield();
  std::vector<std::string> listed;
  std::string token;
  do {
    ASSERT_OK_AND_ASSIGN(auto page,
                         store_->ListJobs(a.tenant.id, {}, 7, token));
    for (const Job& j : page.items) listed.push_back(j.id);
    token = page.next_page_token;
    // Let inserts interleave between pages.
    const int seen = inserted.load();
    while (inserted.load() < seen + 2) std::this_thread::yield();
  } while (!token.empty());
  stop = true;
  writer.join();
  ASSERT_OK_AND_ASSIGN(auto all,
                       store_->ListJobs(a.tenant.id, {}, kMaxPageSize, ""));
  std::vector<std::string> all_ids;
  for (const Job& j : all.items) all_ids.push_back(j.id);
  // No duplicates.
  EXPECT_EQ(std::set<std::string>(listed.begin(), listed.end()).size(),
            listed.size());
  // No skips: what we paged through is exactly the oldest listed.size() jobs,
  // in the same newest-first order.
  ASSERT_GE(listed.size(), 60u);
  ASSERT_LE(listed.size(), all_ids.size());
  std::vector<std::string> tail(all_ids.end() - listed.size(), all_ids.end());
  EXPECT_EQ(listed, tail);
  EXPECT_GT(all_ids.size(), listed.size());  // Some inserts came after page 1.
}

}  // namespace
}  // namespace ftune::store::testing
