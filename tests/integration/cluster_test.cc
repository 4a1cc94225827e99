// Jobs through the whole system with real processes: ftune-scheduler on a
// real SQLite file, ftune-worker agents, and the scripted stand-in trainer
// (tests/testing/stand_in_trainer.cc) as their child processes. Covers the
// failure semantics of docs/workers.md: worker death, a stopped
// (partitioned) worker that comes back, a scheduler SIGKILL, retries up to
// max_restarts, cancel, and fair share between tenants.
#include <signal.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/time_util.h"
#include "gtest/gtest.h"
#include "tests/integration/cluster.h"
#include "tests/testing/http_client.h"
#include "tests/testing/status_matchers.h"

namespace ftune::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

const std::string kStandIn =
    std::string(FTUNE_BIN_DIR) + "/ftune-stand-in-trainer";

std::string TrainingJsonl() {
  std::string out;
  for (int i = 0; i < 8; ++i) {
    absl::StrAppend(&out, R"({"prompt": "count to )", i,
                    R"(", "completion": " done"})", "\n");
  }
  return out;
}

bool Terminal(const v1::Job& j) {
  return j.state() == v1::JOB_STATE_SUCCEEDED ||
         j.state() == v1::JOB_STATE_FAILED ||
         j.state() == v1::JOB_STATE_CANCELLED;
}

// Stand-in record lines for one job's output dir: "start" lines (one per
// trainer run) and "step" lines.
struct Record {
  std::vector<int> start_steps;  // start_step of each run, in order
  std::vector<int> start_pids;   // pid of each run, in order
  std::vector<int> steps;        // every finished step, in order
};

Record ParseRecord(const std::string& path, const std::string& output_dir) {
  Record r;
  for (const std::string& line : ReadLines(path)) {
    if (!absl::StrContains(line, output_dir)) continue;
    for (absl::string_view field : absl::StrSplit(line, ' ')) {
      int v = 0;
      if (absl::ConsumePrefix(&field, "start_step=") &&
          absl::SimpleAtoi(field, &v)) {
        r.start_steps.push_back(v);
      } else if (absl::StrContains(line, "start_step=") &&
                 absl::ConsumePrefix(&field, "pid=") &&
                 absl::SimpleAtoi(field, &v)) {
        r.start_pids.push_back(v);
      } else if (absl::ConsumePrefix(&field, "step=") &&
                 absl::SimpleAtoi(field, &v)) {
        r.steps.push_back(v);
      }
    }
  }
  return r;
}

int CountTransitionsTo(const std::vector<v1::JobEvent>& events,
                       v1::JobState state) {
  return static_cast<int>(std::count_if(
      events.begin(), events.end(),
      [state](const v1::JobEvent& e) { return e.to_state() == state; }));
}

class ClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK(cluster_.StartScheduler());
    ASSERT_OK_AND_ASSIGN(tenant_, cluster_.CreateTenant("acme"));
    ASSERT_OK_AND_ASSIGN(
        file_, cluster_.UploadFile(tenant_, "train.jsonl", TrainingJsonl()));
  }

  WorkerOptions StandIn(int step_ms, const std::string& mode = "succeed") {
    WorkerOptions w;
    w.trainer = kStandIn;
    w.env = {{"FTUNE_STAND_IN_STEP_MS", absl::StrCat(step_ms)},
             {"FTUNE_STAND_IN_MODE", mode},
             {"FTUNE_STAND_IN_RECORD", record_}};
    return w;
  }

  // GETs /metrics of a "host:port".
  static absl::StatusOr<ftune::testing::HttpResponse> Scrape(
      const std::string& address) {
    const size_t colon = address.rfind(':');
    if (colon == std::string::npos) {
      return absl::InvalidArgumentError("no port in \"" + address + "\"");
    }
    return ftune::testing::HttpGet(address.substr(0, colon),
                                   std::stoi(address.substr(colon + 1)),
                                   "/metrics");
  }

  // `promtool check metrics` finds nothing wrong with a scrape.
  bool PromtoolAccepts(const std::string& body) {
    const std::string file = cluster_.Path("scrape.txt");
    std::ofstream(file) << body;
    return std::system(("/usr/bin/promtool check metrics < " + file +
                        " > /dev/null 2>&1")
                           .c_str()) == 0;
  }

  std::string AdapterDir(const v1::Job& job) const {
    return cluster_.StoragePath(
        absl::StrCat("jobs/", job.tenant_id(), "/", job.id(), "/adapter"));
  }

  Cluster cluster_;
  TenantHandle tenant_;
  std::string file_;
  std::string record_ = cluster_.Path("stand-in-record.txt");
};

TEST_F(ClusterTest, JobRunsToSuccessAndPublishesOnce) {
  ASSERT_OK(cluster_.StartWorker(StandIn(20)).status());
  ASSERT_OK_AND_ASSIGN(
      v1::Job job,
      cluster_.CreateJob(tenant_, StepsSpec("tiny", file_, 6, 2, 0)));
  ASSERT_OK_AND_ASSIGN(
      v1::Job done,
      cluster_.WaitForJob(tenant_, job.id(), Terminal, absl::Seconds(60)));
  ASSERT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED) << done.ShortDebugString();
  EXPECT_EQ(done.attempt(), 1);
  EXPECT_EQ(done.progress().step(), 6);
  EXPECT_FALSE(done.adapter().files().empty());
  EXPECT_TRUE(
      std::filesystem::exists(AdapterDir(done) + "/adapter_model.safetensors"));
  // The trainer's stderr is kept on shared storage.
  EXPECT_TRUE(std::filesystem::exists(cluster_.StoragePath(absl::StrCat(
      "jobs/", done.tenant_id(), "/", done.id(), "/logs/attempt-1.log"))));
  const Record rec = ParseRecord(record_, AdapterDir(done));
  EXPECT_EQ(rec.start_steps, std::vector<int>({0}));
  EXPECT_EQ(rec.steps, std::vector<int>({1, 2, 3, 4, 5, 6}));
  // Metric points were reported with the attempt.
  ASSERT_OK_AND_ASSIGN(std::vector<v1::JobEvent> events,
                       cluster_.ListEvents(tenant_, done.id()));
  EXPECT_EQ(CountTransitionsTo(events, v1::JOB_STATE_SUCCEEDED), 1);

  // /metrics saw it: a real scrape, valid for promtool.
  ASSERT_OK_AND_ASSIGN(ftune::testing::HttpResponse scrape,
                       Scrape(cluster_.metrics_address()));
  ASSERT_EQ(scrape.status, 200);
  const std::string t = done.tenant_id();
  for (const std::string& line : {
           absl::StrCat("ftune_jobs{tenant=\"", t, "\",state=\"succeeded\"} 1"),
           absl::StrCat("ftune_jobs_submitted_total{tenant=\"", t, "\"} 1"),
           absl::StrCat("ftune_jobs_finished_total{tenant=\"", t,
                        "\",state=\"succeeded\"} 1"),
           std::string("ftune_workers{state=\"active\"} 1"),
           std::string("ftune_job_queue_wait_seconds_count 1"),
           std::string("ftune_job_time_to_first_step_seconds_count 1"),
           std::string("ftune_lease_expiries_total 0"),
           // The interceptor: one CreateJob, timed; one registration.
           std::string("ftune_grpc_server_handled_total{service=\"ftune.v1."
                       "JobService\",method=\"CreateJob\",code=\"OK\"} 1"),
           std::string("ftune_grpc_server_handling_seconds_count{service=\""
                       "ftune.v1.JobService\",method=\"CreateJob\"} 1"),
           std::string("ftune_grpc_server_handled_total{service=\"ftune.v1."
                       "WorkerService\",method=\"RegisterWorker\",code=\"OK\"}"
                       " 1"),
       }) {
    EXPECT_THAT(scrape.body, HasSubstr(line + "\n")) << scrape.body;
  }
  // Streams are counted, not timed.
  EXPECT_THAT(scrape.body,
              Not(HasSubstr("ftune_grpc_server_handling_seconds_count{service="
                            "\"ftune.v1.WorkerService\",method=\"Stream")));
  // Every write went through a timed group commit.
  EXPECT_THAT(scrape.body, HasSubstr("ftune_store_commit_seconds_count "));
  EXPECT_THAT(scrape.body,
              Not(HasSubstr("ftune_store_commit_seconds_count 0\n")));
  // The per-job series went away with the job.
  EXPECT_THAT(scrape.body, Not(HasSubstr("ftune_job_train_loss{")));
  EXPECT_TRUE(PromtoolAccepts(scrape.body));

  // The worker's own endpoint: one trainer ran and succeeded; no GPU
  // series on a worker without GPUs.
  ASSERT_OK_AND_ASSIGN(ftune::testing::HttpResponse worker,
                       Scrape(cluster_.worker_metrics_address(0)));
  ASSERT_EQ(worker.status, 200);
  for (const std::string line : {
           "ftune_worker_trainers_started_total 1",
           "ftune_worker_trainer_exits_total{result=\"success\"} 1",
           "ftune_worker_running_attempts 0",
           "ftune_worker_connected 1",
           "ftune_worker_slots{resource=\"cpu\"} 1",
           "ftune_worker_slots{resource=\"gpu\"} 0",
       }) {
    EXPECT_THAT(worker.body, HasSubstr(line + "\n")) << worker.body;
  }
  EXPECT_THAT(worker.body, Not(HasSubstr("ftune_worker_gpu_")));
  // Registered and heartbeating: ready.
  const std::string& wm = cluster_.worker_metrics_address(0);
  ASSERT_OK_AND_ASSIGN(ftune::testing::HttpResponse ready,
                       ftune::testing::HttpGet(
                           wm.substr(0, wm.rfind(':')),
                           std::stoi(wm.substr(wm.rfind(':') + 1)), "/readyz"));
  EXPECT_EQ(ready.status, 200) << ready.body;
  EXPECT_THAT(worker.body, HasSubstr("process_resident_memory_bytes "));
  EXPECT_TRUE(PromtoolAccepts(worker.body));
}

TEST_F(ClusterTest, KilledWorkerJobResumesOnAnotherFromCheckpoint) {
  ASSERT_OK_AND_ASSIGN(int a, cluster_.StartWorker(StandIn(150)));
  ASSERT_OK_AND_ASSIGN(
      v1::Job job,
      cluster_.CreateJob(tenant_, StepsSpec("tiny", file_, 16, 2, 3)));
  ASSERT_OK(cluster_
                .WaitForJob(
                    tenant_, job.id(),
                    [](const v1::Job& j) {
                      return j.state() == v1::JOB_STATE_RUNNING &&
                             j.progress().step() >= 5;
                    },
                    absl::Seconds(60))
                .status());
  ASSERT_OK(cluster_.SignalWorker(a, SIGKILL));
  // The dead agent's trainer dies with it (PR_SET_PDEATHSIG, or at the
  // latest at its next progress line into the closed pipe): it must not keep
  // writing checkpoints while another worker runs the next attempt.
  const Record before = ParseRecord(record_, AdapterDir(job));
  ASSERT_EQ(before.start_pids.size(), 1u);
  const pid_t orphan = before.start_pids[0];
  for (int i = 0; i < 1000 && ::kill(orphan, 0) == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_NE(::kill(orphan, 0), 0)
      << "trainer " << orphan << " outlived its agent";
  ASSERT_OK(cluster_.StartWorker(StandIn(20)).status());
  ASSERT_OK_AND_ASSIGN(
      v1::Job done,
      cluster_.WaitForJob(tenant_, job.id(), Terminal, absl::Seconds(90)));
  ASSERT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED) << done.ShortDebugString();
  EXPECT_EQ(done.attempt(), 2);
  EXPECT_EQ(done.restart_count(), 1);
  const Record rec = ParseRecord(record_, AdapterDir(done));
  // The second run resumed from a checkpoint of the first (step 4 or
  // later), not from scratch, and every step after it ran once more at most.
  ASSERT_EQ(rec.start_steps.size(), 2u);
  EXPECT_EQ(rec.start_steps[0], 0);
  EXPECT_GE(rec.start_steps[1], 4);
  EXPECT_EQ(rec.steps.back(), 16);
  // The scheduler counted the lost lease and the re-queue.
  ASSERT_OK_AND_ASSIGN(ftune::testing::HttpResponse scrape,
                       Scrape(cluster_.metrics_address()));
  EXPECT_THAT(scrape.body, HasSubstr("ftune_lease_expiries_total 1\n"));
  EXPECT_THAT(scrape.body,
              HasSubstr(absl::StrCat("ftune_job_requeues_total{tenant=\"",
                                     done.tenant_id(), "\"} 1\n")));
}

TEST_F(ClusterTest, StoppedWorkerIsFencedOutWhenItComesBack) {
  // Worker A is SIGSTOPped (a partition): its lease expires, the job moves
  // to worker B. When A resumes, its reports are refused and it kills its
  // trainer: the adapter is published once, by B's attempt.
  ASSERT_OK_AND_ASSIGN(int a, cluster_.StartWorker(StandIn(150)));
  ASSERT_OK_AND_ASSIGN(
      v1::Job job,
      cluster_.CreateJob(tenant_, StepsSpec("tiny", file_, 40, 2, 3)));
  ASSERT_OK(cluster_
                .WaitForJob(
                    tenant_, job.id(),
                    [](const v1::Job& j) { return j.progress().step() >= 3; },
                    absl::Seconds(60))
                .status());
  const pid_t worker_a = cluster_.worker(a).pid();
  // Stop the whole agent (not its trainer, which has its own group).
  ASSERT_EQ(::kill(worker_a, SIGSTOP), 0);
  ASSERT_OK(cluster_.StartWorker(StandIn(20)).status());
  ASSERT_OK(cluster_
                .WaitForJob(
                    tenant_, job.id(),
                    [](const v1::Job& j) {
                      return j.attempt() == 2 &&
                             j.state() == v1::JOB_STATE_RUNNING;
                    },
                    absl::Seconds(60))
                .status());
  ASSERT_EQ(::kill(worker_a, SIGCONT), 0);
  ASSERT_OK_AND_ASSIGN(
      v1::Job done,
      cluster_.WaitForJob(tenant_, job.id(), Terminal, absl::Seconds(90)));
  ASSERT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED) << done.ShortDebugString();
  EXPECT_EQ(done.attempt(), 2);
  ASSERT_OK_AND_ASSIGN(std::vector<v1::JobEvent> events,
                       cluster_.ListEvents(tenant_, done.id()));
  EXPECT_EQ(CountTransitionsTo(events, v1::JOB_STATE_SUCCEEDED), 1);
}

TEST_F(ClusterTest, SchedulerKilledWhileJobsRunLosesAndDuplicatesNothing) {
  ASSERT_OK(cluster_.StartWorker(StandIn(150)).status());
  ASSERT_OK_AND_ASSIGN(
      v1::Job job,
      cluster_.CreateJob(tenant_, StepsSpec("tiny", file_, 24, 4, 0)));
  ASSERT_OK(cluster_
                .WaitForJob(
                    tenant_, job.id(),
                    [](const v1::Job& j) { return j.progress().step() >= 10; },
                    absl::Seconds(60))
                .status());
  ASSERT_OK(cluster_.KillScheduler());
  // By step 10 (1.5 s) the worker has heartbeated; the scheduler is down
  // for well under the cluster's 3 s lease less one heartbeat interval.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  ASSERT_OK(cluster_.StartScheduler());
  ASSERT_OK_AND_ASSIGN(
      v1::Job done,
      cluster_.WaitForJob(tenant_, job.id(), Terminal, absl::Seconds(90)));
  ASSERT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED) << done.ShortDebugString();
  // The worker kept its trainer running across the scheduler's restart: one
  // attempt, one trainer run, every step once.
  EXPECT_EQ(done.attempt(), 1);
  const Record rec = ParseRecord(record_, AdapterDir(done));
  EXPECT_EQ(rec.start_steps, std::vector<int>({0}));
  ASSERT_EQ(rec.steps.size(), 24u);
  for (int i = 0; i < 24; ++i) EXPECT_EQ(rec.steps[i], i + 1);
}

TEST_F(ClusterTest, AlwaysFailingTrainerFailsAfterMaxRestartsPlusOne) {
  ASSERT_OK(cluster_.StartWorker(StandIn(10, "fail_retryable")).status());
  ASSERT_OK_AND_ASSIGN(
      v1::Job job,
      cluster_.CreateJob(tenant_, StepsSpec("tiny", file_, 5, 1, 2)));
  ASSERT_OK_AND_ASSIGN(
      v1::Job done,
      cluster_.WaitForJob(tenant_, job.id(), Terminal, absl::Seconds(60)));
  ASSERT_EQ(done.state(), v1::JOB_STATE_FAILED) << done.ShortDebugString();
  EXPECT_EQ(done.attempt(), 3);
  EXPECT_EQ(done.restart_count(), 2);
  EXPECT_FALSE(done.error().message().empty());
  EXPECT_EQ(ParseRecord(record_, AdapterDir(done)).start_steps.size(), 3u);
}

TEST_F(ClusterTest, BadInputIsNotRetried) {
  ASSERT_OK(cluster_.StartWorker(StandIn(10, "fail_bad_input")).status());
  ASSERT_OK_AND_ASSIGN(
      v1::Job job,
      cluster_.CreateJob(tenant_, StepsSpec("tiny", file_, 5, 1, 3)));
  ASSERT_OK_AND_ASSIGN(
      v1::Job done,
      cluster_.WaitForJob(tenant_, job.id(), Terminal, absl::Seconds(60)));
  ASSERT_EQ(done.state(), v1::JOB_STATE_FAILED) << done.ShortDebugString();
  EXPECT_EQ(done.attempt(), 1);
  EXPECT_EQ(ParseRecord(record_, AdapterDir(done)).start_steps.size(), 1u);
}

TEST_F(ClusterTest, CancelReachesTheTrainer) {
  ASSERT_OK(cluster_.StartWorker(StandIn(200)).status());
  ASSERT_OK_AND_ASSIGN(
      v1::Job job,
      cluster_.CreateJob(tenant_, StepsSpec("tiny", file_, 500, 10, 0)));
  ASSERT_OK(cluster_
                .WaitForJob(
                    tenant_, job.id(),
                    [](const v1::Job& j) { return j.progress().step() >= 2; },
                    absl::Seconds(60))
                .status());
  ASSERT_OK(cluster_.CancelJob(tenant_, job.id()).status());
  ASSERT_OK_AND_ASSIGN(
      v1::Job done,
      cluster_.WaitForJob(tenant_, job.id(), Terminal, absl::Seconds(30)));
  EXPECT_EQ(done.state(), v1::JOB_STATE_CANCELLED);
  // The trainer stopped long before its 500 steps and published nothing.
  const Record rec = ParseRecord(record_, AdapterDir(done));
  ASSERT_FALSE(rec.steps.empty());
  EXPECT_LT(rec.steps.back(), 100);
  EXPECT_FALSE(std::filesystem::exists(AdapterDir(done)));
}

TEST_F(ClusterTest, PauseCheckpointsAndResumeContinuesFromThere) {
  ASSERT_OK(cluster_.StartWorker(StandIn(100)).status());
  ASSERT_OK_AND_ASSIGN(
      v1::Job job,
      cluster_.CreateJob(tenant_, StepsSpec("tiny", file_, 30, 50, 0)));
  ASSERT_OK(cluster_
                .WaitForJob(
                    tenant_, job.id(),
                    [](const v1::Job& j) { return j.progress().step() >= 4; },
                    absl::Seconds(60))
                .status());
  auto call = [&](auto method, auto request) -> absl::Status {
    grpc::ClientContext ctx;
    Authorize(ctx, tenant_.key);
    request.set_job_id(job.id());
    v1::Job out;
    const grpc::Status st = (cluster_.jobs().*method)(&ctx, request, &out);
    return st.ok()
               ? absl::OkStatus()
               : absl::Status(static_cast<absl::StatusCode>(st.error_code()),
                              st.error_message());
  };
  ASSERT_OK(call(&v1::JobService::Stub::PauseJob, v1::PauseJobRequest()));
  // The trainer checkpoints at the next step and stops; the job is PAUSED.
  ASSERT_OK_AND_ASSIGN(
      v1::Job paused,
      cluster_.WaitForJob(
          tenant_, job.id(),
          [](const v1::Job& j) { return j.state() == v1::JOB_STATE_PAUSED; },
          absl::Seconds(60)));
  const Record at_pause = ParseRecord(record_, AdapterDir(job));
  ASSERT_EQ(at_pause.start_steps.size(), 1u);
  ASSERT_FALSE(at_pause.steps.empty());
  const int paused_at = at_pause.steps.back();
  EXPECT_LT(paused_at, 30);

  ASSERT_OK(call(&v1::JobService::Stub::ResumeJob, v1::ResumeJobRequest()));
  ASSERT_OK_AND_ASSIGN(
      v1::Job done,
      cluster_.WaitForJob(tenant_, job.id(), Terminal, absl::Seconds(90)));
  ASSERT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED) << done.ShortDebugString();
  EXPECT_EQ(done.attempt(), 2);
  EXPECT_EQ(done.restart_count(), 0);  // A pause is not a failure.
  const Record rec = ParseRecord(record_, AdapterDir(done));
  // The second run started where the pause checkpoint left off (no
  // periodic checkpoint was due: every 50 steps).
  ASSERT_EQ(rec.start_steps.size(), 2u);
  EXPECT_EQ(rec.start_steps[1], paused_at);
  EXPECT_EQ(rec.steps.back(), 30);
}

TEST_F(ClusterTest, FairShareBetweenTwoTenants) {
  // Tenant A queues 4 jobs before tenant B queues 2, with one slot: B's jobs
  // must not wait for all of A's.
  ASSERT_OK_AND_ASSIGN(TenantHandle b, cluster_.CreateTenant("globex"));
  ASSERT_OK_AND_ASSIGN(std::string b_file,
                       cluster_.UploadFile(b, "train.jsonl", TrainingJsonl()));
  std::vector<std::pair<TenantHandle, std::string>> jobs;
  for (int i = 0; i < 4; ++i) {
    ASSERT_OK_AND_ASSIGN(
        v1::Job j,
        cluster_.CreateJob(tenant_, StepsSpec("tiny", file_, 3, 0, 0)));
    jobs.emplace_back(tenant_, j.id());
  }
  for (int i = 0; i < 2; ++i) {
    ASSERT_OK_AND_ASSIGN(
        v1::Job j, cluster_.CreateJob(b, StepsSpec("tiny", b_file, 3, 0, 0)));
    jobs.emplace_back(b, j.id());
  }
  // The worker starts only now, so every job is queued when dispatch begins.
  ASSERT_OK(cluster_.StartWorker(StandIn(30)).status());
  std::vector<std::pair<int64_t, std::string>> starts;  // (start, tenant)
  for (const auto& [t, id] : jobs) {
    ASSERT_OK_AND_ASSIGN(
        v1::Job done, cluster_.WaitForJob(t, id, Terminal, absl::Seconds(90)));
    ASSERT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED);
    starts.emplace_back(
        google::protobuf::util::TimeUtil::TimestampToNanoseconds(
            done.start_time()),
        t.id);
  }
  std::sort(starts.begin(), starts.end());
  // Equal weights: the order alternates A, B, A, B, then A's rest.
  std::vector<std::string> order;
  for (const auto& s : starts) order.push_back(s.second);
  EXPECT_EQ(order, std::vector<std::string>({tenant_.id, b.id, tenant_.id, b.id,
                                             tenant_.id, tenant_.id}));
}

}  // namespace
}  // namespace ftune::testing
