// WorkerAgent against an in-process scripted WorkerService on port 0 (the
// real scheduler side is tested with it in the integration tests) and the
// stand-in trainer as a real child process.
#include "worker/agent/worker_session.h"

#include <deque>
#include <set>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace ftune::agent {
namespace {

class FakeScheduler final : public v1::WorkerService::Service {
 public:
  // Script.
  absl::Duration lease = absl::Seconds(30);
  absl::Duration heartbeat_interval = absl::Milliseconds(50);

  grpc::Status RegisterWorker(grpc::ServerContext* ctx,
                              const v1::RegisterWorkerRequest* req,
                              v1::RegisterWorkerResponse* resp) override {
    if (!Authorized(ctx)) return Unauthenticated();
    absl::MutexLock lock(&mu_);
    registrations_.push_back(*req);
    current_id_ = absl::StrCat("worker-", registrations_.size());
    resp->set_worker_id(current_id_);
    resp->mutable_lease_duration()->set_seconds(absl::ToInt64Seconds(lease));
    resp->mutable_lease_duration()->set_nanos(
        static_cast<int32_t>(absl::ToInt64Nanoseconds(
            lease - absl::Seconds(absl::ToInt64Seconds(lease)))));
    resp->mutable_heartbeat_interval()->set_nanos(
        static_cast<int32_t>(absl::ToInt64Nanoseconds(heartbeat_interval)));
    return grpc::Status::OK;
  }

  grpc::Status Heartbeat(grpc::ServerContext* ctx,
                         const v1::HeartbeatRequest* req,
                         v1::HeartbeatResponse* resp) override {
    if (!Authorized(ctx)) return Unauthenticated();
    absl::MutexLock lock(&mu_);
    if (heartbeats_unavailable_) {
      return grpc::Status(grpc::StatusCode::UNAVAILABLE, "restarting");
    }
    heartbeats_.push_back(*req);
    if (req->worker_id() != current_id_ || forgotten_.count(req->worker_id())) {
      return grpc::Status(grpc::StatusCode::NOT_FOUND, "unknown worker");
    }
    resp->set_state(v1::WORKER_STATE_ACTIVE);
    return grpc::Status::OK;
  }

  grpc::Status StreamCommands(
      grpc::ServerContext* ctx, const v1::StreamCommandsRequest* req,
      grpc::ServerWriter<v1::WorkerCommand>* writer) override {
    if (!Authorized(ctx)) return Unauthenticated();
    while (!ctx->IsCancelled()) {
      std::optional<v1::WorkerCommand> cmd;
      {
        absl::MutexLock lock(&mu_);
        if (stopping_) break;
        if (req->worker_id() != current_id_) {
          return grpc::Status(grpc::StatusCode::NOT_FOUND, "unknown worker");
        }
        auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return !commands_.empty() || stopping_;
        };
        mu_.AwaitWithTimeout(absl::Condition(&ready), absl::Milliseconds(20));
        if (!commands_.empty()) {
          cmd = commands_.front();
          commands_.pop_front();
        }
      }
      if (cmd.has_value() && !writer->Write(*cmd)) break;
    }
    return grpc::Status::OK;
  }

  grpc::Status ReportProgress(grpc::ServerContext* ctx,
                              const v1::ReportProgressRequest* req,
                              v1::ReportProgressResponse*) override {
    if (!Authorized(ctx)) return Unauthenticated();
    absl::MutexLock lock(&mu_);
    reports_.push_back(*req);
    return grpc::Status::OK;
  }

  grpc::Status FinishAttempt(grpc::ServerContext* ctx,
                             const v1::FinishAttemptRequest* req,
                             v1::FinishAttemptResponse*) override {
    if (!Authorized(ctx)) return Unauthenticated();
    absl::MutexLock lock(&mu_);
    finishes_.push_back(*req);
    return grpc::Status::OK;
  }

  void Send(v1::WorkerCommand c) {
    absl::MutexLock lock(&mu_);
    commands_.push_back(std::move(c));
  }
  void SetHeartbeatsUnavailable(bool v) {
    absl::MutexLock lock(&mu_);
    heartbeats_unavailable_ = v;
  }
  void ForgetWorker() {
    absl::MutexLock lock(&mu_);
    forgotten_.insert(current_id_);
  }
  void Stop() {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  // Waits for `pred` over the recorded state (no wall-clock bound: ctest's
  // timeout catches a hang).
  template <typename Pred>
  void AwaitState(Pred pred) {
    absl::MutexLock lock(&mu_);
    auto c = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return pred(*this); };
    mu_.Await(absl::Condition(&c));
  }

  absl::Mutex mu_;
  std::vector<v1::RegisterWorkerRequest> registrations_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::HeartbeatRequest> heartbeats_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::ReportProgressRequest> reports_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::FinishAttemptRequest> finishes_ ABSL_GUARDED_BY(mu_);

 private:
  static bool Authorized(grpc::ServerContext* ctx) {
    auto it = ctx->client_metadata().find("authorization");
    return it != ctx->client_metadata().end() &&
           std::string(it->second.data(), it->second.size()) ==
               "Bearer worker-secret";
  }
  static grpc::Status Unauthenticated() {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "bad credential");
  }

  std::string current_id_ ABSL_GUARDED_BY(mu_);
  std::deque<v1::WorkerCommand> commands_ ABSL_GUARDED_BY(mu_);
  bool heartbeats_unavailable_ ABSL_GUARDED_BY(mu_) = false;
  std::set<std::string> forgotten_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
};

class WorkerSessionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = dir_.Sub("storage");
    ASSERT_OK(MakeDirs(root_ + "/models/tiny"));
    ASSERT_OK(MakeDirs(root_ + "/files/t"));
    ASSERT_OK(WriteFileAtomically(root_ + "/files/t/f", "{\"text\":\"x\"}\n"));
  }

  void StartServer() {
    grpc::ServerBuilder b;
    b.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                       &port_);
    b.RegisterService(&fake_);
    server_ = b.BuildAndStart();
    ASSERT_NE(server_, nullptr);
  }

  void TearDown() override {
    if (agent_ != nullptr) agent_->Shutdown(/*hard=*/true);
    if (run_.joinable()) run_.join();
    fake_.Stop();
    if (server_ != nullptr) server_->Shutdown(std::chrono::system_clock::now());
  }

  void StartAgent(const std::string& key = "worker-secret") {
    WorkerOptions o;
    o.scheduler_address = absl::StrCat("127.0.0.1:", port_);
    o.worker_key = key;
    o.capabilities.set_hostname("test-host");
    o.capabilities.set_cpu_slots(2);
    o.runner.storage_root = root_;
    o.runner.work_dir = dir_.Sub("work");
    o.runner.trainer_path =
        std::string(FTUNE_BIN_DIR) + "/ftune-stand-in-trainer";
    o.runner.env = {{"FTUNE_STAND_IN_STEP_MS", "10"},
                    {"FTUNE_STAND_IN_RECORD", dir_.Sub("record.txt")}};
    o.runner.stop_grace = absl::Seconds(20);
    o.runner.flush_interval = absl::Milliseconds(20);
    o.runner.retry_initial = absl::Milliseconds(10);
    o.runner.retry_max = absl::Milliseconds(50);
    o.runner.poll = absl::Milliseconds(10);
    o.reconnect_initial = absl::Milliseconds(20);
    o.reconnect_max = absl::Milliseconds(100);
    o.rpc_timeout = absl::Seconds(5);
    o.on_registered = [this](const std::string& id) {
      absl::MutexLock lock(&ids_mu_);
      ids_.push_back(id);
    };
    agent_ = std::make_unique<WorkerAgent>(o);
    run_ = std::thread([this] { run_status_ = agent_->Run(); });
  }

  v1::WorkerCommand Assign(int attempt, int64_t steps) {
    v1::WorkerCommand cmd;
    v1::AssignJobCommand* c = cmd.mutable_assign_job();
    c->set_job_id("job-1");
    c->set_attempt(attempt);
    c->set_model_path("models/tiny");
    c->set_training_file_path("files/t/f");
    c->set_checkpoint_dir("jobs/t/job-1/checkpoints");
    c->set_adapter_dir("jobs/t/job-1/adapter");
    c->set_log_path(
        absl::StrCat("jobs/t/job-1/logs/attempt-", attempt, ".log"));
    c->set_adapter_name("tiny-job-1");
    c->set_cpu_threads(1);
    v1::Hyperparameters* h = c->mutable_spec()->mutable_hyperparameters();
    h->set_max_steps(steps);
    h->set_warmup_steps(0);
    h->set_max_seq_length(64);
    h->set_checkpoint_every_steps(2);
    h->set_gradient_checkpointing(false);
    c->mutable_spec()->mutable_resources()->set_gpus(0);
    return cmd;
  }

  std::vector<std::string> Ids() {
    absl::MutexLock lock(&ids_mu_);
    return ids_;
  }

  int Starts() {
    absl::StatusOr<std::string> text = ReadFile(dir_.Sub("record.txt"));
    if (!text.ok()) return 0;
    int n = 0;
    for (size_t p = 0; (p = text->find("start_step=", p)) != std::string::npos;
         ++p) {
      ++n;
    }
    return n;
  }

  testing::TempDir dir_;
  std::string root_;
  FakeScheduler fake_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<WorkerAgent> agent_;
  std::thread run_;
  absl::Status run_status_;
  absl::Mutex ids_mu_;
  std::vector<std::string> ids_ ABSL_GUARDED_BY(ids_mu_);
};

TEST_F(WorkerSessionTest, RunsAnAssignedAttemptOnce) {
  StartServer();
  StartAgent();
  fake_.AwaitState([](FakeScheduler& f) { return !f.registrations_.empty(); });
  fake_.Send(Assign(1, 6));
  fake_.Send(Assign(1, 6));  // at-least-once delivery: ignored
  fake_.AwaitState([](FakeScheduler& f) { return !f.finishes_.empty(); });
  std::vector<v1::FinishAttemptRequest> finishes;
  std::vector<v1::HeartbeatRequest> heartbeats;
  {
    absl::MutexLock lock(&fake_.mu_);
    finishes = fake_.finishes_;
    heartbeats = fake_.heartbeats_;
    EXPECT_EQ(fake_.registrations_[0].capabilities().hostname(), "test-host");
    EXPECT_EQ(fake_.registrations_[0].previous_worker_id(), "");
    for (const auto& r : fake_.reports_) EXPECT_EQ(r.worker_id(), "worker-1");
  }
  EXPECT_THAT(Ids(), ::testing::ElementsAre("worker-1"));
  ASSERT_EQ(finishes.size(), 1u);
  EXPECT_EQ(finishes[0].worker_id(), "worker-1");
  EXPECT_EQ(finishes[0].outcome(), v1::ATTEMPT_OUTCOME_SUCCEEDED);
  bool listed = false;
  for (const auto& h : heartbeats) {
    for (const auto& a : h.running_attempts()) {
      listed |= a.job_id() == "job-1" && a.attempt() == 1;
    }
  }
  EXPECT_TRUE(listed);
  EXPECT_EQ(Starts(), 1);
  // Re-delivered after it finished: still ignored.
  fake_.Send(Assign(1, 6));
  agent_->Shutdown();
  run_.join();
  EXPECT_OK(run_status_);
  EXPECT_EQ(Starts(), 1);
}

TEST_F(WorkerSessionTest, LostRegistrationKillsAttemptsAndRegistersAgain) {
  StartServer();
  StartAgent();
  fake_.AwaitState([](FakeScheduler& f) { return !f.registrations_.empty(); });
  fake_.Send(Assign(1, 100000));
  fake_.AwaitState([](FakeScheduler& f) { return !f.reports_.empty(); });
  fake_.ForgetWorker();
  fake_.AwaitState(
      [](FakeScheduler& f) { return f.registrations_.size() >= 2; });
  {
    absl::MutexLock lock(&fake_.mu_);
    EXPECT_EQ(fake_.registrations_[1].previous_worker_id(), "worker-1");
    EXPECT_TRUE(fake_.finishes_.empty());  // killed, not finished
  }
  while (Ids().size() < 2) absl::SleepFor(absl::Milliseconds(5));
  EXPECT_THAT(Ids(), ::testing::ElementsAre("worker-1", "worker-2"));
}

TEST_F(WorkerSessionTest, SelfFencesWhenHeartbeatsFailForTheLease) {
  fake_.lease = absl::Milliseconds(600);
  StartServer();
  StartAgent();
  fake_.AwaitState([](FakeScheduler& f) { return !f.registrations_.empty(); });
  fake_.Send(Assign(1, 100000));
  fake_.AwaitState([](FakeScheduler& f) { return !f.reports_.empty(); });
  fake_.SetHeartbeatsUnavailable(true);
  // After the lease the agent kills its trainer and registers again.
  fake_.AwaitState(
      [](FakeScheduler& f) { return f.registrations_.size() >= 2; });
  absl::MutexLock lock(&fake_.mu_);
  EXPECT_EQ(fake_.registrations_[1].previous_worker_id(), "worker-1");
  EXPECT_TRUE(fake_.finishes_.empty());
}

TEST_F(WorkerSessionTest, SchedulerAwayShorterThanTheLeaseChangesNothing) {
  fake_.lease = absl::Seconds(20);
  StartServer();
  StartAgent();
  fake_.AwaitState([](FakeScheduler& f) { return !f.registrations_.empty(); });
  fake_.Send(Assign(1, 60));
  fake_.AwaitState([](FakeScheduler& f) { return !f.reports_.empty(); });
  fake_.SetHeartbeatsUnavailable(true);
  absl::SleepFor(absl::Milliseconds(300));  // several heartbeat intervals
  fake_.SetHeartbeatsUnavailable(false);
  fake_.AwaitState([](FakeScheduler& f) { return !f.finishes_.empty(); });
  absl::MutexLock lock(&fake_.mu_);
  EXPECT_EQ(fake_.registrations_.size(), 1u);
  EXPECT_EQ(fake_.finishes_[0].worker_id(), "worker-1");
  EXPECT_EQ(fake_.finishes_[0].outcome(), v1::ATTEMPT_OUTCOME_SUCCEEDED);
}

TEST_F(WorkerSessionTest, ShutdownStopsTrainersAndFinishesRetryably) {
  StartServer();
  StartAgent();
  fake_.AwaitState([](FakeScheduler& f) { return !f.registrations_.empty(); });
  fake_.Send(Assign(1, 100000));
  fake_.AwaitState([](FakeScheduler& f) {
    for (const auto& r : f.reports_) {
      if (r.metrics_size() > 0) return true;
    }
    return false;
  });
  agent_->Shutdown();
  run_.join();
  EXPECT_OK(run_status_);
  absl::MutexLock lock(&fake_.mu_);
  ASSERT_EQ(fake_.finishes_.size(), 1u);
  EXPECT_EQ(fake_.finishes_[0].outcome(), v1::ATTEMPT_OUTCOME_FAILED);
  EXPECT_EQ(fake_.finishes_[0].error().reason(), v1::ERROR_REASON_WORKER_LOST);
  EXPECT_TRUE(fake_.finishes_[0].error().retryable());
  // The trainer checkpointed on SIGTERM and the checkpoint was reported.
  bool checkpoint = false;
  for (const auto& r : fake_.reports_) checkpoint |= r.checkpoints_size() > 0;
  EXPECT_TRUE(checkpoint);
}

TEST_F(WorkerSessionTest, WrongCredentialIsFatal) {
  StartServer();
  StartAgent("not-the-key");
  run_.join();
  EXPECT_EQ(run_status_.code(), absl::StatusCode::kUnauthenticated);
}

}  // namespace
}  // namespace ftune::agent
