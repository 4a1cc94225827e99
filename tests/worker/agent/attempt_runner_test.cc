// AttemptRunner with the stand-in trainer (tests/testing/stand_in_trainer.cc)
// as a real child process, and a recording AttemptReporter in place of the
// scheduler.
#include "worker/agent/attempt_runner.h"

#include <signal.h>
#include <sys/stat.h>

#include <filesystem>
#include <functional>
#include <set>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/file_util.h"
#include "common/sha256.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace ftune::agent {
namespace {

using ::testing::HasSubstr;

// Records every call; `fail_report(n)` / `fail_finish(n)` inject an error
// for the n-th call (1-based), OK otherwise.
class RecordingReporter : public AttemptReporter {
 public:
  std::function<absl::Status(int)> fail_report;
  std::function<absl::Status(int)> fail_finish;

  absl::StatusOr<v1::ReportProgressResponse> ReportProgress(
      const v1::ReportProgressRequest& r) override {
    absl::MutexLock lock(&mu_);
    sent_.push_back(r);
    const int n = static_cast<int>(sent_.size());
    if (fail_report) {
      absl::Status s = fail_report(n);
      if (!s.ok()) return s;
    }
    accepted_.push_back(r);
    return v1::ReportProgressResponse();
  }
  absl::StatusOr<v1::FinishAttemptResponse> FinishAttempt(
      const v1::FinishAttemptRequest& r) override {
    absl::MutexLock lock(&mu_);
    finishes_.push_back(r);
    if (fail_finish) {
      absl::Status s = fail_finish(static_cast<int>(finishes_.size()));
      if (!s.ok()) return s;
    }
    return v1::FinishAttemptResponse();
  }

  std::vector<v1::ReportProgressRequest> sent() {
    absl::MutexLock lock(&mu_);
    return sent_;
  }
  std::vector<v1::ReportProgressRequest> accepted() {
    absl::MutexLock lock(&mu_);
    return accepted_;
  }
  std::vector<v1::FinishAttemptRequest> finishes() {
    absl::MutexLock lock(&mu_);
    return finishes_;
  }
  // Blocks until an accepted batch holds a metric point at >= `step`.
  void AwaitStep(int64_t step) {
    absl::MutexLock lock(&mu_);
    auto reached = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      for (const auto& b : accepted_) {
        for (const auto& m : b.metrics()) {
          if (m.step() >= step) return true;
        }
      }
      return false;
    };
    mu_.Await(absl::Condition(&reached));
  }

 private:
  absl::Mutex mu_;
  std::vector<v1::ReportProgressRequest> sent_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::ReportProgressRequest> accepted_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::FinishAttemptRequest> finishes_ ABSL_GUARDED_BY(mu_);
};

class AttemptRunnerTest : public ::testing::Test {
 protected:
  AttemptRunnerTest() {
    root_ = dir_.Sub("storage");
    EXPECT_OK(MakeDirs(root_ + "/models/tiny"));
    EXPECT_OK(MakeDirs(root_ + "/files/tenant-a"));
    EXPECT_OK(WriteFileAtomically(root_ + "/files/tenant-a/file-1",
                                  "{\"text\":\"hello\"}\n"));
    record_ = dir_.Sub("record.txt");
  }

  v1::AssignJobCommand Command(int attempt, int64_t max_steps,
                               int64_t checkpoint_every) {
    v1::AssignJobCommand c;
    c.set_job_id("job-1");
    c.set_attempt(attempt);
    c.set_model_path("models/tiny");
    c.set_training_file_path("files/tenant-a/file-1");
    c.set_checkpoint_dir("jobs/tenant-a/job-1/checkpoints");
    c.set_adapter_dir("jobs/tenant-a/job-1/adapter");
    c.set_log_path(
        absl::StrCat("jobs/tenant-a/job-1/logs/attempt-", attempt, ".log"));
    c.set_adapter_name("tiny-job-1");
    c.set_cpu_threads(1);
    v1::JobSpec* s = c.mutable_spec();
    s->set_model("tiny");
    v1::Hyperparameters* h = s->mutable_hyperparameters();
    h->set_max_steps(max_steps);
    h->set_warmup_steps(0);
    h->set_batch_size(1);
    h->set_max_seq_length(64);
    h->set_checkpoint_every_steps(checkpoint_every);
    h->set_checkpoints_to_keep(100);
    h->set_gradient_checkpointing(false);
    s->mutable_resources()->set_gpus(0);
    return c;
  }

  AttemptRunnerOptions Options(const std::string& mode = "succeed") {
    AttemptRunnerOptions o;
    o.storage_root = root_;
    o.work_dir = dir_.Sub("work");
    o.trainer_path = std::string(FTUNE_BIN_DIR) + "/ftune-stand-in-trainer";
    o.env = {{"FTUNE_STAND_IN_MODE", mode},
             {"FTUNE_STAND_IN_STEP_MS", "10"},
             {"FTUNE_STAND_IN_RECORD", record_}};
    o.stop_grace = absl::Seconds(20);
    o.flush_interval = absl::Milliseconds(50);
    o.retry_initial = absl::Milliseconds(5);
    o.retry_max = absl::Milliseconds(20);
    o.poll = absl::Milliseconds(10);
    return o;
  }

  // Lines of the stand-in's record file.
  std::vector<std::string> Record() {
    absl::StatusOr<std::string> text = ReadFile(record_);
    if (!text.ok()) return {};
    return absl::StrSplit(*text, '\n', absl::SkipEmpty());
  }
  int CountRecord(absl::string_view needle) {
    int n = 0;
    for (const std::string& l : Record()) n += absl::StrContains(l, needle);
    return n;
  }

  // Checks the batch numbers the scheduler accepted are 1, 2, 3, ...
  static void ExpectConsecutive(
      const std::vector<v1::ReportProgressRequest>& batches) {
    for (size_t i = 0; i < batches.size(); ++i) {
      EXPECT_EQ(batches[i].batch_number(), static_cast<int64_t>(i + 1));
    }
  }

  testing::TempDir dir_;
  std::string root_;
  std::string record_;
};

TEST_F(AttemptRunnerTest, SucceedsAndReportsEverything) {
  RecordingReporter rep;
  AttemptRunner runner(Command(1, 6, 2), Options(), &rep);
  runner.Start();
  EXPECT_EQ(runner.Wait(), AttemptEnd::kFinished);

  ASSERT_EQ(rep.finishes().size(), 1u);
  const v1::FinishAttemptRequest f = rep.finishes()[0];
  EXPECT_EQ(f.job_id(), "job-1");
  EXPECT_EQ(f.attempt(), 1);
  ASSERT_EQ(f.outcome(), v1::ATTEMPT_OUTCOME_SUCCEEDED) << f.DebugString();
  const v1::Adapter& a = f.adapter();
  EXPECT_EQ(a.name(), "tiny-job-1");
  EXPECT_EQ(a.path(), "jobs/tenant-a/job-1/adapter");
  EXPECT_EQ(a.step(), 6);
  ASSERT_EQ(a.files_size(), 3);
  EXPECT_EQ(a.files(0).path(), "adapter_config.json");
  EXPECT_EQ(a.files(1).path(), "adapter_model.safetensors");
  EXPECT_EQ(a.files(2).path(), "ftune_manifest.json");
  const std::string adir = root_ + "/jobs/tenant-a/job-1/adapter";
  for (const v1::AdapterFile& file : a.files()) {
    ASSERT_OK_AND_ASSIGN(std::string contents,
                         ReadFile(adir + "/" + file.path()));
    EXPECT_EQ(file.size_bytes(), static_cast<int64_t>(contents.size()));
    EXPECT_EQ(file.sha256(), Sha256Hex(contents));
  }
  EXPECT_EQ(a.manifest_sha256(), a.files(2).sha256());
  // Final metrics: the stand-in's loss at step 6 is 2 / 1.6 + 0.5.
  EXPECT_EQ(f.final_metrics().step(), 6);
  EXPECT_DOUBLE_EQ(f.final_metrics().train_loss(), 2.0 / 1.6 + 0.5);

  std::vector<v1::ReportProgressRequest> batches = rep.accepted();
  ExpectConsecutive(batches);
  std::vector<int64_t> steps;
  std::vector<std::string> checkpoints;
  for (const auto& b : batches) {
    EXPECT_EQ(b.job_id(), "job-1");
    EXPECT_EQ(b.attempt(), 1);
    for (const auto& m : b.metrics()) steps.push_back(m.step());
    for (const auto& c : b.checkpoints()) checkpoints.push_back(c.path());
  }
  EXPECT_THAT(steps, ::testing::ElementsAre(1, 2, 3, 4, 5, 6));
  // Every 2 steps, not at the last one.
  EXPECT_THAT(
      checkpoints,
      ::testing::ElementsAre("jobs/tenant-a/job-1/checkpoints/step-00000002",
                             "jobs/tenant-a/job-1/checkpoints/step-00000004"));
  EXPECT_GT(batches.back().log_size_bytes(), 0);
  EXPECT_EQ(batches.back().progress().step(), 6);

  // The trainer saw CUDA_VISIBLE_DEVICES="" (CPU job) and the spec it got.
  ASSERT_OK_AND_ASSIGN(
      std::string log,
      ReadFile(root_ + "/jobs/tenant-a/job-1/logs/attempt-1.log"));
  EXPECT_THAT(log, HasSubstr("CUDA_VISIBLE_DEVICES=\"\""));
  EXPECT_THAT(log, HasSubstr("[ftune-worker] trainer exited with code 0"));
  ASSERT_OK_AND_ASSIGN(std::string spec,
                       ReadFile(dir_.Sub("work/job-1-attempt-1/spec.json")));
  EXPECT_THAT(spec, HasSubstr(root_ + "/jobs/tenant-a/job-1/adapter"));
}

TEST_F(AttemptRunnerTest, BadInputIsNotRetryable) {
  RecordingReporter rep;
  AttemptRunner runner(Command(1, 5, 0), Options("fail_bad_input"), &rep);
  runner.Start();
  EXPECT_EQ(runner.Wait(), AttemptEnd::kFinished);
  ASSERT_EQ(rep.finishes().size(), 1u);
  const v1::FinishAttemptRequest f = rep.finishes()[0];
  EXPECT_EQ(f.outcome(), v1::ATTEMPT_OUTCOME_FAILED);
  EXPECT_EQ(f.error().reason(), v1::ERROR_REASON_INVALID_INPUT);
  EXPECT_FALSE(f.error().retryable());
  EXPECT_EQ(f.error().attempt(), 1);
  EXPECT_THAT(f.error().message(), HasSubstr("fail_bad_input"));
  EXPECT_THAT(f.error().message(), HasSubstr("exited with code 2"));
}

TEST_F(AttemptRunnerTest, UntranslatableSpecFailsWithoutStartingTheTrainer) {
  RecordingReporter rep;
  v1::AssignJobCommand c = Command(1, 5, 0);
  // Two processes for a one-GPU job: a GPU job runs one process per GPU.
  c.mutable_spec()->mutable_resources()->set_processes(2);
  c.mutable_spec()->mutable_resources()->set_gpus(1);
  c.add_gpu_indices(0);
  AttemptRunner runner(c, Options(), &rep);
  runner.Start();
  EXPECT_EQ(runner.Wait(), AttemptEnd::kFinished);
  ASSERT_EQ(rep.finishes().size(), 1u);
  EXPECT_EQ(rep.finishes()[0].error().reason(), v1::ERROR_REASON_INVALID_INPUT);
  EXPECT_FALSE(rep.finishes()[0].error().retryable());
  EXPECT_THAT(rep.finishes()[0].error().message(),
              HasSubstr("spec.resources.processes"));
  EXPECT_TRUE(Record().empty());
}

TEST_F(AttemptRunnerTest, FailuresAreClassified) {
  struct Case {
    const char* mode;
    v1::ErrorReason reason;
    bool retryable;
  } cases[] = {
      {"fail_retryable", v1::ERROR_REASON_INTERNAL, true},
      {"crash", v1::ERROR_REASON_TRAINER_CRASHED, true},
      {"diverge", v1::ERROR_REASON_NUMERIC_ERROR, false},
  };
  for (const Case& c : cases) {
    RecordingReporter rep;
    AttemptRunner runner(Command(1, 5, 0), Options(c.mode), &rep);
    runner.Start();
    EXPECT_EQ(runner.Wait(), AttemptEnd::kFinished) << c.mode;
    ASSERT_EQ(rep.finishes().size(), 1u) << c.mode;
    const v1::FinishAttemptRequest f = rep.finishes()[0];
    EXPECT_EQ(f.outcome(), v1::ATTEMPT_OUTCOME_FAILED) << c.mode;
    EXPECT_EQ(f.error().reason(), c.reason) << c.mode;
    EXPECT_EQ(f.error().retryable(), c.retryable) << c.mode;
  }
}

TEST_F(AttemptRunnerTest, OutOfMemoryHalvesTheBatchAndResumes) {
  RecordingReporter rep;
  v1::AssignJobCommand c = Command(1, 4, 1);
  c.mutable_spec()->mutable_hyperparameters()->set_batch_size(4);
  AttemptRunner runner(c, Options("oom"), &rep);
  runner.Start();
  EXPECT_EQ(runner.Wait(), AttemptEnd::kFinished);
  ASSERT_EQ(rep.finishes().size(), 1u);
  EXPECT_EQ(rep.finishes()[0].outcome(), v1::ATTEMPT_OUTCOME_SUCCEEDED)
      << rep.finishes()[0].DebugString();
  std::vector<std::string> reduced;
  for (const auto& b : rep.accepted()) {
    for (const auto& e : b.events()) {
      if (e.type() == v1::JOB_EVENT_TYPE_BATCH_SIZE_REDUCED) {
        reduced.push_back(e.message());
      }
    }
  }
  ASSERT_EQ(reduced.size(), 2u);
  EXPECT_THAT(reduced[0], HasSubstr("batch_size 2 and "
                                    "gradient_accumulation_steps 2"));
  EXPECT_THAT(reduced[1], HasSubstr("batch_size 1 and "
                                    "gradient_accumulation_steps 4"));
  // The stand-in fails before its first checkpoint: three runs from 0.
  EXPECT_EQ(CountRecord("start_step=0 "), 3);
  ExpectConsecutive(rep.accepted());
}

TEST_F(AttemptRunnerTest, CancelStopsTheTrainer) {
  RecordingReporter rep;
  AttemptRunner runner(Command(1, 100000, 0), Options(), &rep);
  runner.Start();
  rep.AwaitStep(2);
  runner.Cancel(absl::Seconds(20));
  EXPECT_EQ(runner.Wait(), AttemptEnd::kFinished);
  ASSERT_EQ(rep.finishes().size(), 1u);
  EXPECT_EQ(rep.finishes()[0].outcome(), v1::ATTEMPT_OUTCOME_CANCELLED);
  // The stand-in checkpointed on SIGTERM and said so (exit 4).
  ASSERT_OK_AND_ASSIGN(
      std::string log,
      ReadFile(root_ + "/jobs/tenant-a/job-1/logs/attempt-1.log"));
  EXPECT_THAT(log, HasSubstr("exited with code 4"));
}

TEST_F(AttemptRunnerTest, HangingTrainerIsKilledAfterTheGrace) {
  RecordingReporter rep;
  AttemptRunner runner(Command(1, 100000, 0), Options("hang"), &rep);
  runner.Start();
  // "start" is the last line a hanging stand-in prints.
  while (true) {
    bool started = false;
    for (const auto& b : rep.accepted()) {
      if (b.progress().total_steps() == 100000) started = true;
    }
    if (started) break;
    absl::SleepFor(absl::Milliseconds(5));
  }
  runner.Cancel(absl::Milliseconds(100));
  EXPECT_EQ(runner.Wait(), AttemptEnd::kFinished);
  ASSERT_EQ(rep.finishes().size(), 1u);
  EXPECT_EQ(rep.finishes()[0].outcome(), v1::ATTEMPT_OUTCOME_CANCELLED);
  ASSERT_OK_AND_ASSIGN(
      std::string log,
      ReadFile(root_ + "/jobs/tenant-a/job-1/logs/attempt-1.log"));
  EXPECT_THAT(log, HasSubstr("killed by signal 9"));
}

TEST_F(AttemptRunnerTest, PauseReportsTheCheckpointAndTheNextAttemptResumes) {
  RecordingReporter rep;
  {
    AttemptRunner runner(Command(1, 30, 0), Options(), &rep);
    runner.Start();
    rep.AwaitStep(3);
    runner.Pause();
    EXPECT_EQ(runner.Wait(), AttemptEnd::kFinished);
  }
  ASSERT_EQ(rep.finishes().size(), 1u);
  const v1::FinishAttemptRequest f = rep.finishes()[0];
  ASSERT_EQ(f.outcome(), v1::ATTEMPT_OUTCOME_PAUSED) << f.DebugString();
  const v1::Checkpoint& cp = f.checkpoint();
  EXPECT_GE(cp.step(), 3);
  EXPECT_EQ(cp.path(), absl::StrFormat("jobs/tenant-a/job-1/checkpoints/"
                                       "step-%08d",
                                       cp.step()));
  EXPECT_TRUE(
      std::filesystem::exists(root_ + "/" + cp.path() + "/trainer_state.json"));
  // The checkpoint was also reported in a progress batch before the finish.
  bool reported = false;
  for (const auto& b : rep.accepted()) {
    for (const auto& c : b.checkpoints()) reported |= c.path() == cp.path();
  }
  EXPECT_TRUE(reported);

  // Attempt 2 resumes from it and finishes; no step runs twice.
  RecordingReporter rep2;
  v1::AssignJobCommand c2 = Command(2, 30, 0);
  c2.set_resume_checkpoint_path(cp.path());
  AttemptRunner runner2(c2, Options(), &rep2);
  runner2.Start();
  EXPECT_EQ(runner2.Wait(), AttemptEnd::kFinished);
  ASSERT_EQ(rep2.finishes().size(), 1u);
  EXPECT_EQ(rep2.finishes()[0].outcome(), v1::ATTEMPT_OUTCOME_SUCCEEDED);
  EXPECT_EQ(CountRecord(absl::StrCat("start_step=", cp.step(), " ")), 1);
  for (int s = 1; s <= 30; ++s) {
    EXPECT_EQ(CountRecord(absl::StrCat(" step=", s, " ")), 1) << "step " << s;
  }
}

TEST_F(AttemptRunnerTest, ReportsAnAdapterPublishedByAnEarlierAttempt) {
  {
    // Attempt 1 publishes, but the scheduler never hears of it.
    RecordingReporter rep;
    rep.fail_finish = [](int) {
      return absl::FailedPreconditionError("stale attempt");
    };
    AttemptRunner runner(Command(1, 3, 0), Options(), &rep);
    runner.Start();
    EXPECT_EQ(runner.Wait(), AttemptEnd::kFenced);
  }
  RecordingReporter rep;
  AttemptRunner runner(Command(2, 3, 0), Options(), &rep);
  runner.Start();
  EXPECT_EQ(runner.Wait(), AttemptEnd::kFinished);
  ASSERT_EQ(rep.finishes().size(), 1u);
  EXPECT_EQ(rep.finishes()[0].outcome(), v1::ATTEMPT_OUTCOME_SUCCEEDED);
  EXPECT_EQ(rep.finishes()[0].adapter().files_size(), 3);
  EXPECT_EQ(rep.finishes()[0].adapter().step(), 3);
  EXPECT_EQ(CountRecord("start_step="), 1);  // the trainer ran only once
}

TEST_F(AttemptRunnerTest, FencedAttemptIsKilledAndNotFinished) {
  RecordingReporter rep;
  rep.fail_report = [](int n) {
    return n >= 2 ? absl::FailedPreconditionError("not the current attempt")
                  : absl::OkStatus();
  };
  AttemptRunner runner(Command(1, 100000, 0), Options(), &rep);
  runner.Start();
  EXPECT_EQ(runner.Wait(), AttemptEnd::kFenced);
  EXPECT_TRUE(rep.finishes().empty());
  EXPECT_FALSE(std::filesystem::exists(root_ + "/jobs/tenant-a/job-1/adapter"));
}

TEST_F(AttemptRunnerTest, TransientErrorsRetryTheSameBatchNumber) {
  RecordingReporter rep;
  rep.fail_report = [](int n) {
    return n == 2 || n == 3 ? absl::UnavailableError("scheduler restarting")
                            : absl::OkStatus();
  };
  rep.fail_finish = [](int n) {
    return n == 1 ? absl::UnavailableError("scheduler restarting")
                  : absl::OkStatus();
  };
  AttemptRunner runner(Command(1, 8, 0), Options(), &rep);
  runner.Start();
  EXPECT_EQ(runner.Wait(), AttemptEnd::kFinished);
  std::vector<v1::ReportProgressRequest> sent = rep.sent();
  ASSERT_GE(sent.size(), 4u);
  EXPECT_EQ(sent[1].batch_number(), 2);
  EXPECT_EQ(sent[2].batch_number(), 2);
  EXPECT_EQ(sent[3].batch_number(), 2);
  EXPECT_EQ(sent[1].SerializeAsString(), sent[3].SerializeAsString());
  ExpectConsecutive(rep.accepted());
  std::set<int64_t> steps;
  for (const auto& b : rep.accepted()) {
    for (const auto& m : b.metrics())
      EXPECT_TRUE(steps.insert(m.step()).second);
  }
  EXPECT_EQ(steps.size(), 8u);
  ASSERT_EQ(rep.finishes().size(), 2u);  // retried after UNAVAILABLE
  EXPECT_EQ(rep.finishes()[1].outcome(), v1::ATTEMPT_OUTCOME_SUCCEEDED);
}

TEST_F(AttemptRunnerTest, KeepsOnlyTheNewestCheckpoints) {
  RecordingReporter rep;
  v1::AssignJobCommand c = Command(1, 6, 1);
  c.mutable_spec()->mutable_hyperparameters()->set_checkpoints_to_keep(2);
  AttemptRunner runner(c, Options(), &rep);
  runner.Start();
  EXPECT_EQ(runner.Wait(), AttemptEnd::kFinished);
  std::set<std::string> deleted;
  for (const auto& b : rep.accepted()) {
    for (const auto& d : b.deleted_checkpoint_paths()) deleted.insert(d);
  }
  // Checkpoints at steps 1-5; 4 and 5 remain.
  const std::string base = "jobs/tenant-a/job-1/checkpoints/";
  EXPECT_THAT(deleted, ::testing::ElementsAre(base + "step-00000001",
                                              base + "step-00000002",
                                              base + "step-00000003"));
  std::set<std::string> left;
  for (const auto& e :
       std::filesystem::directory_iterator(root_ + "/" + base)) {
    left.insert(e.path().filename().string());
  }
  EXPECT_THAT(left, ::testing::ElementsAre("step-00000004", "step-00000005"));
}

TEST_F(AttemptRunnerTest, KillBeforeAnyReportFinishesNothing) {
  RecordingReporter rep;
  AttemptRunner runner(Command(1, 100000, 0), Options(), &rep);
  runner.Start();
  rep.AwaitStep(1);
  runner.Kill();
  EXPECT_EQ(runner.Wait(), AttemptEnd::kFenced);
  EXPECT_TRUE(rep.finishes().empty());
}

// ---- Several ranks (rank_group.h): the stand-in under the launcher
// variables prints progress on rank 0 only and notices no dead peer, so
// what stops the other ranks below is the agent.

bool Alive(pid_t pid) { return ::kill(pid, 0) == 0; }

// The pids of the "N trainer ranks started (pids a, b, ...)" event.
std::vector<pid_t> GroupPids(
    const std::vector<v1::ReportProgressRequest>& batches) {
  std::vector<pid_t> pids;
  for (const auto& b : batches) {
    for (const auto& e : b.events()) {
      const std::string& m = e.message();
      const size_t at = m.find("(pids ");
      if (e.type() != v1::JOB_EVENT_TYPE_LOG || at == std::string::npos) {
        continue;
      }
      const std::string list = m.substr(at + 6, m.find(')', at) - at - 6);
      for (absl::string_view p : absl::StrSplit(list, ", ")) {
        int pid = 0;
        if (absl::SimpleAtoi(p, &pid)) pids.push_back(pid);
      }
    }
  }
  return pids;
}

std::vector<std::string> EventMessages(
    const std::vector<v1::ReportProgressRequest>& batches,
    v1::JobEventType type) {
  std::vector<std::string> out;
  for (const auto& b : batches) {
    for (const auto& e : b.events()) {
      if (e.type() == type) out.push_back(e.message());
    }
  }
  return out;
}

TEST_F(AttemptRunnerTest, TwoCpuRanksFormOneGroupAndRankZeroReports) {
  RecordingReporter rep;
  v1::AssignJobCommand c = Command(1, 6, 2);
  c.mutable_spec()->mutable_resources()->set_processes(2);
  c.set_cpu_threads(4);
  c.mutable_spec()->mutable_hyperparameters()->set_gradient_accumulation_steps(
      3);
  AttemptRunner runner(c, Options(), &rep);
  runner.Start();
  EXPECT_EQ(runner.Wait(), AttemptEnd::kFinished);
  ASSERT_EQ(rep.finishes().size(), 1u);
  ASSERT_EQ(rep.finishes()[0].outcome(), v1::ATTEMPT_OUTCOME_SUCCEEDED)
      << rep.finishes()[0].DebugString();
  EXPECT_EQ(CountRecord(" rank=0"), 7);  // start + 6 steps
  EXPECT_EQ(CountRecord(" rank=1"), 7);
  // Rank 0 alone reports: one metric point per step.
  int points = 0;
  for (const auto& b : rep.accepted()) points += b.metrics_size();
  EXPECT_EQ(points, 6);

  // Both ranks got the same rendezvous port; stderr is in the log by rank.
  ASSERT_OK_AND_ASSIGN(
      std::string log,
      ReadFile(root_ + "/jobs/tenant-a/job-1/logs/attempt-1.log"));
  const size_t at = log.find("[rank 0] rank 0 of 2 MASTER_PORT=");
  ASSERT_NE(at, std::string::npos) << log;
  const std::string port = log.substr(at + 33, log.find('\n', at) - at - 33);
  int port_number = 0;
  ASSERT_TRUE(absl::SimpleAtoi(port, &port_number)) << port;
  EXPECT_GT(port_number, 0);
  EXPECT_THAT(log, HasSubstr("[rank 1] rank 1 of 2 MASTER_PORT=" + port));
  EXPECT_THAT(log, HasSubstr("x 2 ranks"));

  // The trainer spec: cpu_threads split, accumulation per rank.
  ASSERT_OK_AND_ASSIGN(
      std::string spec,
      ReadFile(dir_.Sub("work") + "/job-1-attempt-1/spec.json"));
  EXPECT_THAT(spec, HasSubstr("\"threads\": 2"));
  EXPECT_THAT(spec, HasSubstr("\"gradient_accumulation_steps\": 6"));

  const std::vector<std::string> logs =
      EventMessages(rep.accepted(), v1::JOB_EVENT_TYPE_LOG);
  bool started = false, rendezvous = false;
  for (const std::string& m : logs) {
    started |= absl::StrContains(m, "2 trainer ranks started");
    rendezvous |= absl::StrContains(m, "rendezvous done");
  }
  EXPECT_TRUE(started);
  EXPECT_TRUE(rendezvous);
  EXPECT_TRUE(
      EventMessages(rep.accepted(), v1::JOB_EVENT_TYPE_WARNING).empty());
}

TEST_F(AttemptRunnerTest, EachGpuRankSeesItsOwnGpu) {
  RecordingReporter rep;
  v1::AssignJobCommand c = Command(1, 2, 0);
  c.mutable_spec()->mutable_resources()->set_gpus(2);
  c.add_gpu_indices(3);
  c.add_gpu_indices(5);
  AttemptRunner runner(c, Options(), &rep);
  runner.Start();
  EXPECT_EQ(runner.Wait(), AttemptEnd::kFinished);
  ASSERT_EQ(rep.finishes().size(), 1u);
  EXPECT_EQ(rep.finishes()[0].outcome(), v1::ATTEMPT_OUTCOME_SUCCEEDED)
      << rep.finishes()[0].DebugString();
  ASSERT_OK_AND_ASSIGN(
      std::string log,
      ReadFile(root_ + "/jobs/tenant-a/job-1/logs/attempt-1.log"));
  EXPECT_THAT(log, HasSubstr("[rank 0] stand-in trainer: pid"));
  EXPECT_THAT(log, HasSubstr("CUDA_VISIBLE_DEVICES=\"3\""));
  EXPECT_THAT(log, HasSubstr("CUDA_VISIBLE_DEVICES=\"5\""));
  EXPECT_THAT(log, ::testing::Not(HasSubstr("CUDA_VISIBLE_DEVICES=\"3,5\"\n")));
  for (absl::string_view l : absl::StrSplit(log, '\n')) {
    if (absl::StrContains(l, "CUDA_VISIBLE_DEVICES=\"5\"")) {
      EXPECT_TRUE(absl::StartsWith(l, "[rank 1] ")) << l;
    }
  }
}

TEST_F(AttemptRunnerTest, OneRankFailingStopsTheOthersAndFailsTheAttempt) {
  RecordingReporter rep;
  v1::AssignJobCommand c = Command(1, 100000, 0);
  c.mutable_spec()->mutable_resources()->set_processes(3);
  AttemptRunnerOptions o = Options("crash");
  o.env["FTUNE_STAND_IN_FAIL_RANK"] = "1";
  AttemptRunner runner(c, o, &rep);
  runner.Start();
  EXPECT_EQ(runner.Wait(), AttemptEnd::kFinished);
  ASSERT_EQ(rep.finishes().size(), 1u);
  const v1::FinishAttemptRequest f = rep.finishes()[0];
  EXPECT_EQ(f.outcome(), v1::ATTEMPT_OUTCOME_FAILED);
  EXPECT_EQ(f.error().reason(), v1::ERROR_REASON_TRAINER_CRASHED);
  EXPECT_TRUE(f.error().retryable());
  EXPECT_THAT(f.error().message(), HasSubstr("rank 1 of 3 killed by signal 6"));
  const std::vector<std::string> warnings =
      EventMessages(rep.accepted(), v1::JOB_EVENT_TYPE_WARNING);
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_THAT(warnings[0], HasSubstr("rank 1 of 3 lost: killed by signal 6"));
  // The survivors were stopped by the agent (SIGTERM), long before their
  // 100000 steps; none is left running.
  EXPECT_THAT(warnings[0], HasSubstr("the other ranks were stopped (rank 0 "));
  const std::vector<pid_t> pids = GroupPids(rep.accepted());
  ASSERT_EQ(pids.size(), 3u);
  for (pid_t p : pids) EXPECT_FALSE(Alive(p)) << p;
}

// Waits (at most 60 s) until the file at `path` contains `text`.
void AwaitLogLine(const std::string& path, const std::string& text) {
  for (int i = 0; i < 3000; ++i) {
    absl::StatusOr<std::string> log = ReadFile(path);
    if (log.ok() && absl::StrContains(*log, text)) return;
    absl::SleepFor(absl::Milliseconds(20));
  }
  ADD_FAILURE() << "no \"" << text << "\" in " << path;
}

TEST_F(AttemptRunnerTest, CancelAndPauseReachEveryRank) {
  {
    RecordingReporter rep;
    v1::AssignJobCommand c = Command(1, 100000, 0);
    c.mutable_spec()->mutable_resources()->set_processes(2);
    AttemptRunner runner(c, Options(), &rep);
    runner.Start();
    rep.AwaitStep(2);
    // Rank 1 may start after rank 0's steps (slow under sanitizers): cancel
    // once it, too, handles SIGTERM.
    AwaitLogLine(root_ + "/jobs/tenant-a/job-1/logs/attempt-1.log",
                 "[rank 1] stand-in trainer: pid");
    runner.Cancel(absl::Seconds(20));
    EXPECT_EQ(runner.Wait(), AttemptEnd::kFinished);
    ASSERT_EQ(rep.finishes().size(), 1u);
    EXPECT_EQ(rep.finishes()[0].outcome(), v1::ATTEMPT_OUTCOME_CANCELLED);
    ASSERT_OK_AND_ASSIGN(
        std::string log,
        ReadFile(root_ + "/jobs/tenant-a/job-1/logs/attempt-1.log"));
    // Both ranks took the SIGTERM and exited 4 (stopped), none was killed.
    EXPECT_THAT(log, HasSubstr("trainer rank 0 of 2 exited with code 4 (rank "
                               "1 exited with code 4)"));
    const std::vector<pid_t> pids = GroupPids(rep.accepted());
    ASSERT_EQ(pids.size(), 2u);
    for (pid_t p : pids) EXPECT_FALSE(Alive(p)) << p;
  }
  ASSERT_OK(RemoveAll(root_ + "/jobs/tenant-a/job-1/checkpoints"));
  {
    // A pause: one checkpoint, by rank 0.
    RecordingReporter rep;
    v1::AssignJobCommand c = Command(2, 100000, 0);
    c.mutable_spec()->mutable_resources()->set_processes(2);
    AttemptRunner runner(c, Options(), &rep);
    runner.Start();
    rep.AwaitStep(2);
    AwaitLogLine(root_ + "/jobs/tenant-a/job-1/logs/attempt-2.log",
                 "[rank 1] stand-in trainer: pid");
    runner.Pause();
    EXPECT_EQ(runner.Wait(), AttemptEnd::kFinished);
    ASSERT_EQ(rep.finishes().size(), 1u);
    ASSERT_EQ(rep.finishes()[0].outcome(), v1::ATTEMPT_OUTCOME_PAUSED)
        << rep.finishes()[0].DebugString();
    int checkpoints = 0;
    for (const auto& e : std::filesystem::directory_iterator(
             root_ + "/jobs/tenant-a/job-1/checkpoints")) {
      checkpoints += absl::StartsWith(e.path().filename().string(), "step-");
    }
    EXPECT_EQ(checkpoints, 1);
  }
}

}  // namespace
}  // namespace ftune::agent
