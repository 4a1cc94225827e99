// The job rules without gRPC: engine::JobEngine over a real SQLite store.
// The answers are absl::Status with their ErrorInfo, as the front ends map
// them (server/rpc/status_util.h).
#include "server/engine/job_engine.h"

#include <string>

#include "common/contract/memory_plan.h"
#include "common/ids.h"
#include "gtest/gtest.h"
#include "server/engine/error_info.h"
#include "tests/server/store/store_fixture.h"

namespace ftune::server::engine {
namespace {

class JobEngineTest : public store::testing::StoreTest {
 protected:
  void SetUp() override {
    StoreTest::SetUp();
    engine_ = std::make_unique<JobEngine>(store_.get());
  }

  static v1::ErrorInfo InfoOf(const absl::Status& status) {
    return GetErrorInfo(status).value_or(v1::ErrorInfo());
  }

  std::unique_ptr<JobEngine> engine_;
};

TEST_F(JobEngineTest, CancelThenCancelAgainIsIdempotent) {
  const TenantSetup t = MakeTenant("acme");
  const core::Job job = MustCreate(NewJob(t));

  absl::StatusOr<core::Job> cancelled = engine_->CancelJob(t.tenant.id, job.id);
  ASSERT_TRUE(cancelled.ok()) << cancelled.status();
  EXPECT_EQ(cancelled->state, core::JobState::kCancelled);
  // Already where the request wants it: success, no change.
  absl::StatusOr<core::Job> again = engine_->CancelJob(t.tenant.id, job.id);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->state, core::JobState::kCancelled);
  EXPECT_EQ(again->last_sequence, cancelled->last_sequence);
}

TEST_F(JobEngineTest, AStateThatForbidsTheRequestIsNamed) {
  const TenantSetup t = MakeTenant("acme");
  const core::Job job = MustCreate(NewJob(t));
  ASSERT_TRUE(engine_->CancelJob(t.tenant.id, job.id).ok());

  for (const absl::Status& st :
       {engine_->PauseJob(t.tenant.id, job.id).status(),
        engine_->ResumeJob(t.tenant.id, job.id).status()}) {
    EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_EQ(InfoOf(st).current_state(), "JOB_STATE_CANCELLED");
  }
}

TEST_F(JobEngineTest, PauseAndResumeAQueuedJob) {
  const TenantSetup t = MakeTenant("acme");
  const core::Job job = MustCreate(NewJob(t));
  absl::StatusOr<core::Job> paused = engine_->PauseJob(t.tenant.id, job.id);
  ASSERT_TRUE(paused.ok()) << paused.status();
  EXPECT_EQ(paused->state, core::JobState::kPaused);
  absl::StatusOr<core::Job> resumed = engine_->ResumeJob(t.tenant.id, job.id);
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  EXPECT_EQ(resumed->state, core::JobState::kQueued);
}

TEST_F(JobEngineTest, AnotherTenantsJobIsAnsweredLikeAMissingOne) {
  const TenantSetup owner = MakeTenant("owner");
  const TenantSetup other = MakeTenant("other");
  const core::Job job = MustCreate(NewJob(owner));

  absl::Status foreign = engine_->CancelJob(other.tenant.id, job.id).status();
  EXPECT_EQ(foreign.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(InfoOf(foreign).resource_id(), job.id);
  const std::string missing = NewId(kJobIdPrefix);
  absl::Status unknown = engine_->GetJob(other.tenant.id, missing).status();
  EXPECT_EQ(unknown.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(foreign.message(), absl::StrCat("job ", job.id, " not found"));
  // The owner's job is untouched.
  absl::StatusOr<core::Job> still = engine_->GetJob(owner.tenant.id, job.id);
  ASSERT_TRUE(still.ok()) << still.status();
  EXPECT_EQ(still->state, core::JobState::kQueued);
}

TEST_F(JobEngineTest, AMalformedJobIdNamesTheField) {
  const TenantSetup t = MakeTenant("acme");
  absl::Status st = engine_->PauseJob(t.tenant.id, "not-a-job").status();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(InfoOf(st).field(), "job_id");
}

TEST_F(JobEngineTest, CreateValidatesTheSpecBeforeWriting) {
  const TenantSetup t = MakeTenant("acme");
  v1::CreateJobRequest request;
  request.mutable_spec()->set_model("no-such-model");
  request.mutable_spec()->set_training_file(t.file.id);
  v1::CreateJobResponse response;
  absl::Status result = absl::UnknownError("done was not called");
  engine_->CreateJob(t.tenant.id, request, &response,
                     [&](absl::Status s) { result = std::move(s); });
  EXPECT_EQ(result.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(InfoOf(result).field(), "spec.model");
  absl::StatusOr<store::Page<core::Job>> jobs = store_->ListJobs(
      t.tenant.id, store::JobFilter{}, store::kMaxPageSize, "");
  ASSERT_TRUE(jobs.ok()) << jobs.status();
  EXPECT_TRUE(jobs->items.empty());

  // A malformed request_id is refused before anything is read.
  request.set_request_id("spaces are not allowed");
  engine_->CreateJob(t.tenant.id, request, &response,
                     [&](absl::Status s) { result = std::move(s); });
  EXPECT_EQ(InfoOf(result).field(), "request_id");
}

// The memory planner at create (server/core/memory_check.h): a GPU job
// predicted not to fit the GPUs it could run on is refused naming the
// field, with the prediction and the changes that fit; a fitting one gets
// the prediction and its terms in the estimate; nothing is written.
TEST_F(JobEngineTest, CreateRefusesAJobThePlannerSaysCannotFit) {
  const TenantSetup t = MakeTenant("acme");
  core::Model m;
  m.name = "llama-8b";
  m.directory = "models/llama-8b";
  contract::ModelShape shape;  // Llama 3.1 8B
  shape.vocab_size = 128256;
  shape.hidden_size = 4096;
  shape.intermediate_size = 14336;
  shape.num_layers = 32;
  shape.num_heads = 32;
  shape.num_kv_heads = 8;
  m.metadata["memory_shape"] = contract::EncodeModelShape(shape);
  m.metadata["max_position_embeddings"] = "131072";
  ASSERT_OK(store_->UpsertModel(m));
  core::Worker w;
  w.hostname = "gpu-host";
  w.capabilities.gpus = 1;
  w.capabilities.gpu_type = "NVIDIA L4";
  w.capabilities.gpu_memory_bytes = int64_t{23034} << 20;
  w.capabilities.memory_bytes = int64_t{64} << 30;
  ASSERT_TRUE(store_->RegisterWorker(w, absl::Now() + absl::Hours(1)).ok());

  v1::CreateJobRequest request;
  request.set_validate_only(true);
  v1::JobSpec& spec = *request.mutable_spec();
  spec.set_model("llama-8b");
  spec.set_training_file(t.file.id);
  spec.mutable_resources()->set_gpus(1);
  spec.mutable_hyperparameters()->set_batch_size(8);
  spec.mutable_hyperparameters()->set_max_seq_length(4096);
  v1::CreateJobResponse response;
  absl::Status result = absl::UnknownError("done was not called");
  auto create = [&] {
    response.Clear();
    engine_->CreateJob(t.tenant.id, request, &response,
                       [&](absl::Status s) { result = std::move(s); });
  };
  create();
  EXPECT_EQ(result.code(), absl::StatusCode::kInvalidArgument) << result;
  EXPECT_EQ(InfoOf(result).field(), "spec.resources.gpus");
  const std::string message(result.message());
  EXPECT_NE(message.find("predicted peak memory"), std::string::npos)
      << message;
  EXPECT_NE(message.find("NVIDIA L4 (worker "), std::string::npos) << message;
  EXPECT_NE(message.find("would fit"), std::string::npos) << message;
  EXPECT_NE(message.find("max_seq_length"), std::string::npos) << message;

  // QLoRA, checkpointing, one row of 512 tokens: fits, with the plan.
  spec.set_method(v1::TRAINING_METHOD_QLORA);
  spec.mutable_hyperparameters()->set_batch_size(1);
  spec.mutable_hyperparameters()->set_max_seq_length(512);
  spec.mutable_hyperparameters()->set_gradient_checkpointing(true);
  create();
  ASSERT_TRUE(result.ok()) << result;
  const v1::MemoryEstimate& est = response.estimate().memory();
  EXPECT_GT(est.peak_bytes(), 0);
  EXPECT_LT(est.peak_bytes(), est.device_memory_bytes());
  EXPECT_EQ(est.device_memory_bytes(), int64_t{23034} << 20);
  EXPECT_EQ(est.peak_bytes(),
            est.weights_bytes() + est.trainable_bytes() +
                est.activations_bytes() + est.attention_bytes() +
                est.logits_loss_bytes() + est.workspace_bytes());

  absl::StatusOr<store::Page<core::Job>> jobs = store_->ListJobs(
      t.tenant.id, store::JobFilter{}, store::kMaxPageSize, "");
  ASSERT_TRUE(jobs.ok()) << jobs.status();
  EXPECT_TRUE(jobs->items.empty());
}

}  // namespace
}  // namespace ftune::server::engine
