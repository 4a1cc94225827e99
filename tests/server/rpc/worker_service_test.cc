// WorkerService over the real SchedulerServer (real gRPC on a loopback port,
// real SQLite file, the real dispatcher thread): this test plays the worker
// agent's side of the protocol with a plain gRPC client.
#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "ftune/v1/worker.grpc.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/core/storage_layout.h"
#include "tests/server/rpc/worker_fixture.h"

namespace ftune::server::testing {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST_F(WorkerServiceTest, RegisterRejectsBadCapabilitiesNamingTheField) {
  v1::WorkerCapabilities no_host = CpuHost("");
  absl::Status st = Register(no_host).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(InfoOf(st).field(), "capabilities.hostname");

  absl::Status dup = Register(GpuHost("h", {0, 0})).status();
  EXPECT_EQ(dup.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(InfoOf(dup).field(), "capabilities.gpus[1].index");

  v1::WorkerCapabilities no_slots = CpuHost("h");
  no_slots.set_cpu_slots(0);
  EXPECT_EQ(InfoOf(Register(no_slots).status()).field(),
            "capabilities.cpu_slots");
}

TEST_F(WorkerServiceTest, OnlyTheWorkerCredentialIsAccepted) {
  v1::RegisterWorkerRequest req;
  *req.mutable_capabilities() = CpuHost("h");
  v1::RegisterWorkerResponse resp;
  EXPECT_EQ(Call("",
                 [&](grpc::ClientContext* c) {
                   return workers_->RegisterWorker(c, req, &resp);
                 })
                .code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(Call(tenant_.key,
                 [&](grpc::ClientContext* c) {
                   return workers_->RegisterWorker(c, req, &resp);
                 })
                .code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(Call(kAdminKey,
                 [&](grpc::ClientContext* c) {
                   return workers_->RegisterWorker(c, req, &resp);
                 })
                .code(),
            absl::StatusCode::kPermissionDenied);
}

TEST_F(WorkerServiceTest, AssignmentCarriesPathsAndReservesDistinctGpus) {
  ASSERT_OK_AND_ASSIGN(std::string worker, Register(GpuHost("gpu-1", {2, 3})));
  auto stream = Open(worker);
  v1::CreateJobRequest req = JobRequest(tenant_);
  req.mutable_spec()->mutable_resources()->set_gpus(1);
  req.mutable_spec()->mutable_resources()->set_gpu_type("h100");
  ASSERT_OK_AND_ASSIGN(v1::Job first, CreateJob(tenant_, req));
  req.set_request_id("second");
  ASSERT_OK_AND_ASSIGN(v1::Job second, CreateJob(tenant_, req));

  v1::AssignJobCommand a1 = Next(*stream).assign_job();
  v1::AssignJobCommand a2 = Next(*stream).assign_job();
  if (a1.job_id() != first.id()) std::swap(a1, a2);
  EXPECT_EQ(a1.job_id(), first.id());
  EXPECT_EQ(a2.job_id(), second.id());
  EXPECT_EQ(a1.attempt(), 1);
  EXPECT_EQ(a1.tenant_id(), tenant_.tenant_id);
  EXPECT_EQ(a1.model_path(), "models/tiny");
  EXPECT_EQ(a1.training_file_path(), "files/" + tenant_.tenant_id + "/x");
  EXPECT_EQ(a1.checkpoint_dir(),
            core::CheckpointDir(tenant_.tenant_id, first.id()));
  EXPECT_EQ(a1.adapter_dir(), core::AdapterDir(tenant_.tenant_id, first.id()));
  EXPECT_EQ(a1.log_path(),
            core::AttemptLogPath(tenant_.tenant_id, first.id(), 1));
  EXPECT_EQ(a1.adapter_name(), "tiny-" + first.id());
  EXPECT_TRUE(a1.resume_checkpoint_path().empty());
  EXPECT_EQ(a1.spec().model(), "tiny");
  // Two one-GPU jobs on GPUs {2, 3}: one each.
  ASSERT_EQ(a1.gpu_indices_size(), 1);
  ASSERT_EQ(a2.gpu_indices_size(), 1);
  EXPECT_NE(a1.gpu_indices(0), a2.gpu_indices(0));
  EXPECT_THAT((std::vector<int>{a1.gpu_indices(0), a2.gpu_indices(0)}),
              ::testing::UnorderedElementsAre(2, 3));
  ASSERT_OK_AND_ASSIGN(v1::Job running, GetJob(first.id()));
  EXPECT_EQ(running.state(), v1::JOB_STATE_RUNNING);
  EXPECT_EQ(running.worker_id(), worker);

  // A third one waits: no GPU left.
  req.set_request_id("third");
  ASSERT_OK_AND_ASSIGN(v1::Job third, CreateJob(tenant_, req));
  WaitRounds(2);
  ASSERT_OK_AND_ASSIGN(v1::Job queued, GetJob(third.id()));
  EXPECT_EQ(queued.state(), v1::JOB_STATE_QUEUED);
}

TEST_F(WorkerServiceTest, ProgressIsFencedAndEachBatchAppliedOnce) {
  ASSERT_OK_AND_ASSIGN(std::string worker, Register(CpuHost("cpu-1")));
  ASSERT_OK_AND_ASSIGN(std::string other, Register(CpuHost("cpu-2")));
  auto stream = Open(worker);
  auto other_stream = Open(other);
  ASSERT_OK_AND_ASSIGN(v1::Job job, CreateJob(tenant_, CpuJob()));
  // Whichever worker got it plays "worker"; the other is a stranger.
  v1::WorkerCommand cmd;
  std::string holder;
  {
    ASSERT_OK_AND_ASSIGN(v1::Job running, [&]() -> absl::StatusOr<v1::Job> {
      for (int i = 0; i < 2000; ++i) {
        absl::StatusOr<v1::Job> j = GetJob(job.id());
        if (!j.ok() || j->state() == v1::JOB_STATE_RUNNING) return j;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
      return absl::DeadlineExceededError("never RUNNING");
    }());
    holder = running.worker_id();
  }
  const std::string stranger = holder == worker ? other : worker;
  cmd = Next(holder == worker ? *stream : *other_stream);
  const v1::AssignJobCommand a = cmd.assign_job();
  ASSERT_EQ(a.job_id(), job.id());

  v1::ReportProgressRequest b1 = Batch(holder, a, 1);
  for (int step : {1, 2}) {
    v1::MetricPoint* m = b1.add_metrics();
    m->set_step(step);
    m->set_train_loss(2.0 / step);
    m->set_learning_rate(1e-4);
  }
  v1::JobEvent* e = b1.add_events();
  e->set_type(v1::JOB_EVENT_TYPE_WARNING);
  e->set_message("3 examples truncated");
  v1::Checkpoint* c = b1.add_checkpoints();
  c->set_step(2);
  c->set_path(a.checkpoint_dir() + "/step-2");
  b1.mutable_progress()->set_step(2);
  b1.mutable_progress()->set_total_steps(10);
  ASSERT_OK_AND_ASSIGN(v1::ReportProgressResponse r1, Report(b1));
  EXPECT_FALSE(r1.cancel_requested());
  EXPECT_TRUE(r1.has_lease_expire_time());
  // The same batch again (a retry after a lost reply): applied once.
  ASSERT_OK(Report(b1).status());
  v1::ListJobMetricsRequest mreq;
  mreq.set_job_id(job.id());
  v1::ListJobMetricsResponse metrics;
  ASSERT_OK(Call(tenant_.key, [&](grpc::ClientContext* ctx) {
    return jobs_->ListJobMetrics(ctx, mreq, &metrics);
  }));
  ASSERT_EQ(metrics.metrics_size(), 2);
  EXPECT_EQ(metrics.metrics(1).step(), 2);
  EXPECT_EQ(metrics.metrics(1).attempt(), 1);
  ASSERT_OK_AND_ASSIGN(v1::Job after, GetJob(job.id()));
  EXPECT_EQ(after.progress().step(), 2);
  EXPECT_EQ(after.progress().total_steps(), 10);

  // A gap is refused; so is a checkpoint outside the job's directory and an
  // event type only the scheduler may write.
  EXPECT_EQ(Report(Batch(holder, a, 3)).status().code(),
            absl::StatusCode::kInvalidArgument);
  v1::ReportProgressRequest escape = Batch(holder, a, 2);
  escape.add_checkpoints()->set_path(a.checkpoint_dir() + "/../../other");
  absl::Status st = Report(escape).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(InfoOf(st).field(), "checkpoints[0].path");
  v1::ReportProgressRequest state_event = Batch(holder, a, 2);
  state_event.add_events()->set_type(v1::JOB_EVENT_TYPE_STATE_CHANGED);
  EXPECT_EQ(InfoOf(Report(state_event).status()).field(), "events[0].type");

  // Stale attempt, or a worker that does not hold the lease: fenced.
  v1::ReportProgressRequest stale = Batch(holder, a, 2);
  stale.set_attempt(a.attempt() + 1);
  st = Report(stale).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(InfoOf(st).current_state(), "JOB_STATE_RUNNING");
  EXPECT_EQ(Report(Batch(stranger, a, 2)).status().code(),
            absl::StatusCode::kFailedPrecondition);

  // Finishing: SUCCEEDED needs the adapter in the job's adapter dir; a
  // retry of the same outcome is OK, another outcome is refused.
  v1::FinishAttemptRequest fin;
  fin.set_worker_id(holder);
  fin.set_job_id(a.job_id());
  fin.set_attempt(a.attempt());
  fin.set_outcome(v1::ATTEMPT_OUTCOME_SUCCEEDED);
  fin.mutable_adapter()->set_path("jobs/elsewhere");
  EXPECT_EQ(InfoOf(Finish(fin).status()).field(), "adapter.path");
  fin.mutable_adapter()->set_path(a.adapter_dir());
  fin.mutable_adapter()->set_manifest_sha256("ab");
  v1::AdapterFile* f = fin.mutable_adapter()->add_files();
  f->set_path("adapter_model.safetensors");
  f->set_size_bytes(1234);
  f->set_sha256("cd");
  ASSERT_OK_AND_ASSIGN(v1::FinishAttemptResponse done, Finish(fin));
  EXPECT_EQ(done.job_state(), v1::JOB_STATE_SUCCEEDED);
  ASSERT_OK_AND_ASSIGN(done, Finish(fin));
  EXPECT_EQ(done.job_state(), v1::JOB_STATE_SUCCEEDED);
  fin.set_outcome(v1::ATTEMPT_OUTCOME_FAILED);
  fin.mutable_error()->set_message("late");
  EXPECT_EQ(Finish(fin).status().code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_OK_AND_ASSIGN(v1::Job succeeded, GetJob(job.id()));
  EXPECT_EQ(succeeded.adapter().path(), a.adapter_dir());
  ASSERT_EQ(succeeded.adapter().files_size(), 1);
  EXPECT_EQ(succeeded.adapter().files(0).size_bytes(), 1234);
}

TEST_F(WorkerServiceTest, CancelIsSentOnTheStreamAndConfirmedByTheWorker) {
  ASSERT_OK_AND_ASSIGN(std::string worker, Register(CpuHost("cpu-1")));
  auto stream = Open(worker);
  ASSERT_OK_AND_ASSIGN(v1::Job job, CreateJob(tenant_, CpuJob()));
  const v1::AssignJobCommand a = Next(*stream).assign_job();
  ASSERT_EQ(a.job_id(), job.id());

  // CANCELLED that nobody asked for is refused.
  v1::FinishAttemptRequest fin;
  fin.set_worker_id(worker);
  fin.set_job_id(a.job_id());
  fin.set_attempt(a.attempt());
  fin.set_outcome(v1::ATTEMPT_OUTCOME_CANCELLED);
  EXPECT_EQ(Finish(fin).status().code(), absl::StatusCode::kInvalidArgument);

  v1::CancelJobRequest creq;
  creq.set_job_id(job.id());
  v1::Job cancelling;
  ASSERT_OK(Call(tenant_.key, [&](grpc::ClientContext* c) {
    return jobs_->CancelJob(c, creq, &cancelling);
  }));
  const v1::WorkerCommand cancel = Next(*stream);
  ASSERT_TRUE(cancel.has_cancel_job());
  EXPECT_EQ(cancel.cancel_job().job_id(), job.id());
  EXPECT_EQ(cancel.cancel_job().attempt(), a.attempt());
  EXPECT_GT(cancel.cancel_job().grace_period().seconds(), 0);
  // The backup channel says so too.
  ASSERT_OK_AND_ASSIGN(v1::ReportProgressResponse r,
                       Report(Batch(worker, a, 1)));
  EXPECT_TRUE(r.cancel_requested());
  ASSERT_OK_AND_ASSIGN(v1::FinishAttemptResponse done, Finish(fin));
  EXPECT_EQ(done.job_state(), v1::JOB_STATE_CANCELLED);
}

TEST_F(WorkerServiceTest, ReconnectReplaysTheAssignmentAndTheCancel) {
  ASSERT_OK_AND_ASSIGN(std::string worker, Register(CpuHost("cpu-1")));
  ASSERT_OK_AND_ASSIGN(v1::Job job, CreateJob(tenant_, CpuJob()));
  // No stream yet: the lease is granted anyway; the command waits.
  for (int i = 0; i < 2000; ++i) {
    ASSERT_OK_AND_ASSIGN(v1::Job j, GetJob(job.id()));
    if (j.state() == v1::JOB_STATE_RUNNING) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  v1::CancelJobRequest creq;
  creq.set_job_id(job.id());
  v1::Job cancelling;
  ASSERT_OK(Call(tenant_.key, [&](grpc::ClientContext* c) {
    return jobs_->CancelJob(c, creq, &cancelling);
  }));
  auto stream = Open(worker);
  const v1::WorkerCommand assign = Next(*stream);
  const v1::WorkerCommand cancel = Next(*stream);
  EXPECT_EQ(assign.assign_job().job_id(), job.id());
  EXPECT_EQ(cancel.cancel_job().job_id(), job.id());
  // A second stream of the same worker replaces the first.
  auto again = Open(worker);
  EXPECT_EQ(Next(*again).assign_job().job_id(), job.id());
  v1::WorkerCommand ignored;
  EXPECT_FALSE(stream->reader->Read(&ignored));
  EXPECT_EQ(stream->reader->Finish().error_code(), grpc::StatusCode::ABORTED);
}

TEST_F(WorkerServiceTest, HeartbeatStopsStaleAttemptsAndRequeuesForgotten) {
  ASSERT_OK_AND_ASSIGN(std::string worker, Register(CpuHost("cpu-1")));
  auto stream = Open(worker);
  v1::CreateJobRequest req = CpuJob();
  req.mutable_spec()->set_max_restarts(3);
  ASSERT_OK_AND_ASSIGN(v1::Job job, CreateJob(tenant_, req));
  const v1::AssignJobCommand a = Next(*stream).assign_job();

  v1::HeartbeatRequest hb;
  hb.set_worker_id(worker);
  v1::AttemptRef* listed = hb.add_running_attempts();
  listed->set_job_id(a.job_id());
  listed->set_attempt(a.attempt());
  v1::AttemptRef* bogus = hb.add_running_attempts();
  bogus->set_job_id("job-aaaaaaaaaaaaaaaaaaaaaaaa");
  bogus->set_attempt(7);
  v1::HeartbeatResponse resp;
  ASSERT_OK(Call(kWorkerKey, [&](grpc::ClientContext* c) {
    return workers_->Heartbeat(c, hb, &resp);
  }));
  EXPECT_EQ(resp.state(), v1::WORKER_STATE_ACTIVE);
  ASSERT_EQ(resp.stop_attempts_size(), 1);
  EXPECT_EQ(resp.stop_attempts(0).job_id(), "job-aaaaaaaaaaaaaaaaaaaaaaaa");

  // The agent restarts and registers anew naming its old id: the old
  // attempt is re-queued at once and fenced out.
  stream->ctx.TryCancel();
  ASSERT_OK_AND_ASSIGN(std::string fresh, Register(CpuHost("cpu-1"), worker));
  EXPECT_NE(fresh, worker);
  EXPECT_EQ(Report(Batch(worker, a, 1)).status().code(),
            absl::StatusCode::kFailedPrecondition);
  v1::HeartbeatRequest old_hb;
  old_hb.set_worker_id(worker);
  EXPECT_EQ(Call(kWorkerKey,
                 [&](grpc::ClientContext* c) {
                   return workers_->Heartbeat(c, old_hb, &resp);
                 })
                .code(),
            absl::StatusCode::kFailedPrecondition);
  auto fresh_stream = Open(fresh);
  const v1::AssignJobCommand retry = Next(*fresh_stream).assign_job();
  EXPECT_EQ(retry.job_id(), job.id());
  EXPECT_EQ(retry.attempt(), a.attempt() + 1);
}

TEST_F(WorkerServiceTest, JobNoWorkerCouldRunIsRefusedAtCreate) {
  // Nothing registered yet: nothing is known, the job is accepted.
  ASSERT_OK(CreateJob(tenant_, JobRequest(tenant_)).status());
  ASSERT_OK(Register(GpuHost("gpu-1", {0, 1})).status());
  v1::CreateJobRequest req = JobRequest(tenant_);
  req.mutable_spec()->mutable_resources()->set_gpus(4);
  absl::Status st = CreateJob(tenant_, req).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(InfoOf(st).field(), "spec.resources");
  EXPECT_THAT(st.message(), HasSubstr("2 GPU(s)"));
  req.mutable_spec()->mutable_resources()->set_gpus(1);
  req.mutable_spec()->mutable_resources()->set_gpu_type("A100");
  EXPECT_EQ(CreateJob(tenant_, req).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// What the worker's trainer runs (`ftune-train capabilities`, reported at
// registration) is checked at CreateJob, naming the JobSpec field, shown by
// ListWorkers, and bounded like every other registered value.
TEST_F(WorkerServiceTest, JobNoWorkersTrainerCouldRunIsRefusedNamingTheField) {
  v1::WorkerCapabilities host = GpuHost("gpu-1", {0, 1});
  v1::TrainerCapabilities* t = host.mutable_trainer();
  t->set_version("0.9");
  t->add_methods("lora");
  t->add_architectures("Qwen2ForCausalLM");
  t->add_dtypes("fp32");
  t->add_dtypes("bf16");
  t->set_cuda(true);
  t->set_max_gpus_per_job(1);
  ASSERT_OK_AND_ASSIGN(std::string worker, Register(host));

  // The model ("tiny") is a Llama: this trainer does not load it.
  v1::CreateJobRequest req = JobRequest(tenant_);
  req.mutable_spec()->mutable_resources()->set_gpus(1);
  absl::Status st = CreateJob(tenant_, req).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(InfoOf(st).field(), "spec.model");
  EXPECT_THAT(st.message(), HasSubstr("does not load LlamaForCausalLM"));
  EXPECT_THAT(st.message(), HasSubstr(worker));

  // Re-registered with a trainer that loads it, but without QLoRA, fp16 or
  // more than one GPU a job.
  t->add_architectures("LlamaForCausalLM");
  ASSERT_OK_AND_ASSIGN(worker, Register(host, worker));
  ASSERT_OK(CreateJob(tenant_, req).status());
  v1::CreateJobRequest qlora = req;
  qlora.mutable_spec()->set_method(v1::TRAINING_METHOD_QLORA);
  st = CreateJob(tenant_, qlora).status();
  EXPECT_EQ(InfoOf(st).field(), "spec.method");
  EXPECT_THAT(st.message(), HasSubstr("runs methods lora, not qlora"));
  v1::CreateJobRequest fp16 = req;
  fp16.mutable_spec()->mutable_quantization()->set_compute_dtype(
      v1::COMPUTE_DTYPE_FP16);
  fp16.mutable_spec()->set_method(v1::TRAINING_METHOD_QLORA);
  t->add_methods("qlora");
  ASSERT_OK_AND_ASSIGN(worker, Register(host, worker));
  st = CreateJob(tenant_, fp16).status();
  EXPECT_EQ(InfoOf(st).field(), "spec.quantization.compute_dtype");
  EXPECT_THAT(st.message(), HasSubstr("computes in fp32, bf16, not fp16"));
  v1::CreateJobRequest two = req;
  two.mutable_spec()->mutable_resources()->set_gpus(2);
  st = CreateJob(tenant_, two).status();
  EXPECT_EQ(InfoOf(st).field(), "spec.resources.gpus");
  EXPECT_THAT(st.message(), HasSubstr("at most 1 GPU(s) per job, 2 asked"));

  // ListWorkers shows what the trainer runs.
  v1::ListWorkersRequest lr;
  v1::ListWorkersResponse listed;
  ASSERT_OK(Call(kAdminKey, [&](grpc::ClientContext* c) {
    return admin_->ListWorkers(c, lr, &listed);
  }));
  bool found = false;
  for (const v1::Worker& w : listed.workers()) {
    if (w.id() != worker) continue;
    found = true;
    EXPECT_THAT(w.capabilities().trainer().methods(),
                ElementsAre("lora", "qlora"));
    EXPECT_THAT(w.capabilities().trainer().architectures(),
                ElementsAre("Qwen2ForCausalLM", "LlamaForCausalLM"));
    EXPECT_EQ(w.capabilities().trainer().max_gpus_per_job(), 1);
  }
  EXPECT_TRUE(found);

  // Bounded like every registered value.
  v1::WorkerCapabilities bad = host;
  bad.mutable_trainer()->set_methods(0, std::string(200, 'x'));
  st = Register(bad).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(InfoOf(st).field(), "capabilities.trainer.methods[0]");
}

TEST_F(WorkerServiceTest, DrainedWorkerTakesNoNewJobsUntilUndrained) {
  ASSERT_OK_AND_ASSIGN(std::string worker, Register(CpuHost("cpu-1")));
  v1::DrainWorkerRequest dreq;
  dreq.set_worker_id(worker);
  v1::Worker drained;
  ASSERT_OK(Call(kAdminKey, [&](grpc::ClientContext* c) {
    return admin_->DrainWorker(c, dreq, &drained);
  }));
  EXPECT_EQ(drained.state(), v1::WORKER_STATE_DRAINED);  // Holds nothing.
  ASSERT_OK_AND_ASSIGN(v1::Job job, CreateJob(tenant_, CpuJob()));
  WaitRounds(2);
  ASSERT_OK_AND_ASSIGN(v1::Job queued, GetJob(job.id()));
  EXPECT_EQ(queued.state(), v1::JOB_STATE_QUEUED);

  v1::ListWorkersRequest lreq;
  v1::ListWorkersResponse list;
  ASSERT_OK(Call(kAdminKey, [&](grpc::ClientContext* c) {
    return admin_->ListWorkers(c, lreq, &list);
  }));
  ASSERT_EQ(list.workers_size(), 1);
  EXPECT_EQ(list.workers(0).capabilities().hostname(), "cpu-1");
  EXPECT_EQ(list.workers(0).free_cpu_slots(), 1);

  v1::UndrainWorkerRequest ureq;
  ureq.set_worker_id(worker);
  v1::Worker active;
  ASSERT_OK(Call(kAdminKey, [&](grpc::ClientContext* c) {
    return admin_->UndrainWorker(c, ureq, &active);
  }));
  EXPECT_EQ(active.state(), v1::WORKER_STATE_ACTIVE);
  auto stream = Open(worker);
  EXPECT_EQ(Next(*stream).assign_job().job_id(), job.id());
  // A tenant cannot see workers.
  EXPECT_EQ(Call(tenant_.key,
                 [&](grpc::ClientContext* c) {
                   return admin_->ListWorkers(c, lreq, &list);
                 })
                .code(),
            absl::StatusCode::kPermissionDenied);
}

}  // namespace
}  // namespace ftune::server::testing

namespace ftune::server::testing {
namespace {

// Only the worker holding an attempt can end it as PAUSED and record its
// checkpoint: a foreign worker's call changes nothing, the holder's
// succeeds, and the holder's retry is answered from the recorded outcome.
TEST_F(WorkerServiceTest, PauseCheckpointIsRecordedOnlyFromTheHolder) {
  ASSERT_OK_AND_ASSIGN(std::string holder, Register(CpuHost("cpu-1")));
  auto stream = Open(holder);
  ASSERT_OK_AND_ASSIGN(v1::Job job, CreateJob(tenant_, CpuJob()));
  const v1::AssignJobCommand a = Next(*stream).assign_job();
  ASSERT_EQ(a.job_id(), job.id());
  ASSERT_OK_AND_ASSIGN(std::string other, Register(CpuHost("cpu-2")));

  v1::PauseJobRequest preq;
  preq.set_job_id(job.id());
  v1::Job pausing;
  ASSERT_OK(Call(tenant_.key, [&](grpc::ClientContext* c) {
    return jobs_->PauseJob(c, preq, &pausing);
  }));
  EXPECT_TRUE(Next(*stream).has_pause_job());

  v1::FinishAttemptRequest fin;
  fin.set_job_id(a.job_id());
  fin.set_attempt(a.attempt());
  fin.set_outcome(v1::ATTEMPT_OUTCOME_PAUSED);
  v1::Checkpoint* cp = fin.mutable_checkpoint();
  cp->set_path(a.checkpoint_dir() + "/step-7");
  cp->set_step(7);
  cp->set_attempt(a.attempt());

  fin.set_worker_id(other);
  absl::Status st = Finish(fin).status();
  EXPECT_THAT(st,
              ::ftune::testing::StatusIs(absl::StatusCode::kFailedPrecondition,
                                         HasSubstr("not held by worker")));
  v1::ListCheckpointsRequest lreq;
  lreq.set_job_id(job.id());
  v1::ListCheckpointsResponse checkpoints;
  ASSERT_OK(Call(tenant_.key, [&](grpc::ClientContext* c) {
    return jobs_->ListCheckpoints(c, lreq, &checkpoints);
  }));
  EXPECT_EQ(checkpoints.checkpoints_size(), 0);
  ASSERT_OK_AND_ASSIGN(v1::Job still, GetJob(job.id()));
  EXPECT_EQ(still.state(), v1::JOB_STATE_RUNNING);
  EXPECT_TRUE(still.pause_requested());

  fin.set_worker_id(holder);
  ASSERT_OK_AND_ASSIGN(v1::FinishAttemptResponse paused, Finish(fin));
  EXPECT_EQ(paused.job_state(), v1::JOB_STATE_PAUSED);
  ASSERT_OK_AND_ASSIGN(paused, Finish(fin));  // A retry: same answer.
  EXPECT_EQ(paused.job_state(), v1::JOB_STATE_PAUSED);
  ASSERT_OK(Call(tenant_.key, [&](grpc::ClientContext* c) {
    return jobs_->ListCheckpoints(c, lreq, &checkpoints);
  }));
  ASSERT_EQ(checkpoints.checkpoints_size(), 1);
  EXPECT_EQ(checkpoints.checkpoints(0).step(), 7);
  EXPECT_EQ(checkpoints.checkpoints(0).path(), a.checkpoint_dir() + "/step-7");
}

// Sample completions a worker reports: ListJobSamples pages them by (step,
// index) with a step filter, another tenant's job id answers like a
// never-existing one, and WatchJob shows a SAMPLES event per step.
TEST_F(WorkerServiceTest, SamplesAreListedPagedFilteredAndWatched) {
  ASSERT_OK_AND_ASSIGN(std::string worker, Register(CpuHost("cpu-1")));
  auto stream = Open(worker);
  ASSERT_OK_AND_ASSIGN(v1::Job job, CreateJob(tenant_, CpuJob()));
  const v1::AssignJobCommand a = Next(*stream).assign_job();
  ASSERT_EQ(a.job_id(), job.id());
  int64_t number = 0;
  for (int64_t step : {0, 10}) {
    v1::ReportProgressRequest b = Batch(worker, a, ++number);
    for (int i = 0; i < 3; ++i) {
      v1::JobSample* s = b.add_samples();
      s->set_step(step);
      s->set_index(i);
      s->set_prompt("word " + std::to_string(i));
      if (i != 2) s->set_expected_completion("drow");
      s->set_completion("at " + std::to_string(step));
      s->set_finish_reason("end");
    }
    ASSERT_OK(Report(b).status());
  }
  // A sample with a negative index is refused, naming the field.
  v1::ReportProgressRequest bad = Batch(worker, a, ++number);
  bad.add_samples()->set_index(-1);
  EXPECT_THAT(Report(bad).status().ToString(), HasSubstr("samples[0]"));
  bad.mutable_samples(0)->set_index(32);  // more prompts than a job may have
  EXPECT_THAT(Report(bad).status().ToString(),
              HasSubstr("index in [0, 32), got step 0, index 32"));

  auto list = [&](const std::string& key, v1::ListJobSamplesRequest req,
                  v1::ListJobSamplesResponse* resp) {
    return Call(key, [&](grpc::ClientContext* c) {
      return jobs_->ListJobSamples(c, req, resp);
    });
  };
  v1::ListJobSamplesRequest req;
  req.set_job_id(job.id());
  req.set_page_size(4);
  std::vector<std::string> seen;
  for (int page = 0; page < 3; ++page) {
    v1::ListJobSamplesResponse resp;
    ASSERT_OK(list(tenant_.key, req, &resp));
    for (const v1::JobSample& s : resp.samples()) {
      seen.push_back(absl::StrCat(s.step(), ":", s.index(), ":", s.completion(),
                                  s.has_expected_completion() ? "+" : "-"));
      EXPECT_EQ(s.attempt(), a.attempt());
      EXPECT_TRUE(s.has_create_time());
    }
    if (resp.next_page_token().empty()) break;
    req.set_page_token(resp.next_page_token());
  }
  EXPECT_THAT(seen, ElementsAre("0:0:at 0+", "0:1:at 0+", "0:2:at 0-",
                                "10:0:at 10+", "10:1:at 10+", "10:2:at 10-"));
  // The step filter; a token made for other filters is refused.
  v1::ListJobSamplesRequest one;
  one.set_job_id(job.id());
  one.set_step(10);
  v1::ListJobSamplesResponse only;
  ASSERT_OK(list(tenant_.key, one, &only));
  ASSERT_EQ(only.samples_size(), 3);
  EXPECT_EQ(only.samples(0).step(), 10);
  EXPECT_TRUE(only.next_page_token().empty());
  one.set_page_token(req.page_token());
  v1::ListJobSamplesResponse ignored;
  EXPECT_EQ(list(tenant_.key, one, &ignored).code(),
            absl::StatusCode::kInvalidArgument);
  one.clear_page_token();
  one.set_step(-1);
  EXPECT_THAT(list(tenant_.key, one, &ignored).ToString(), HasSubstr("step"));

  // Tenancy: another tenant's job id is NOT_FOUND like a never-existing id.
  TenantKey other = MakeTenant("other");
  v1::ListJobSamplesRequest foreign;
  foreign.set_job_id(job.id());
  absl::Status theirs = list(other.key, foreign, &ignored);
  const std::string never = "job-aaaaaaaaaaaaaaaaaaaaaaaa";
  foreign.set_job_id(never);
  absl::Status missing = list(other.key, foreign, &ignored);
  EXPECT_EQ(theirs.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(missing.code(), absl::StatusCode::kNotFound);
  // Same words, only the id differs.
  std::string theirs_msg(theirs.message());
  theirs_msg.replace(theirs_msg.find(job.id()), job.id().size(), never);
  EXPECT_EQ(theirs_msg, missing.message());

  // WatchJob carries a SAMPLES event per step.
  grpc::ClientContext wctx;
  wctx.AddMetadata("authorization", "Bearer " + tenant_.key);
  wctx.set_deadline(std::chrono::system_clock::now() +
                    std::chrono::seconds(20));
  v1::WatchJobRequest watch;
  watch.set_job_id(job.id());
  watch.set_after_sequence(0);
  auto reader = jobs_->WatchJob(&wctx, watch);
  std::vector<std::string> sample_events;
  v1::WatchJobResponse msg;
  while (sample_events.size() < 2 && reader->Read(&msg)) {
    if (msg.has_event() && msg.event().type() == v1::JOB_EVENT_TYPE_SAMPLES) {
      sample_events.push_back(
          absl::StrCat(msg.event().step(), ": ", msg.event().message()));
    }
  }
  wctx.TryCancel();
  EXPECT_THAT(sample_events,
              ElementsAre("0: 3 sample completions at step 0",
                          "10: 3 sample completions at step 10"));
}

// A SUCCEEDED full fine-tuning job's directory becomes the tenant's model
// "ft:<job id>" only when it is confined: a directory holding a symbolic
// link (here to a file outside it) fails the job and registers nothing; a
// clean one is read like an operator's model and seen by its tenant only.
TEST_F(WorkerServiceTest, FullJobsModelIsRegisteredOnlyFromAConfinedDir) {
  ASSERT_OK_AND_ASSIGN(std::string worker, Register(CpuHost("cpu-1")));
  auto stream = Open(worker);
  TenantKey other = MakeTenant("other");
  v1::CreateJobRequest req = CpuJob();
  req.mutable_spec()->set_method(v1::TRAINING_METHOD_FULL);
  auto run = [&](bool plant_link) -> absl::StatusOr<v1::Job> {
    FTUNE_ASSIGN_OR_RETURN(v1::Job job, CreateJob(tenant_, req));
    const v1::AssignJobCommand a = Next(*stream).assign_job();
    if (a.job_id() != job.id()) return absl::InternalError("other job");
    const std::string dir = dir_.Sub("storage/" + a.adapter_dir());
    std::filesystem::create_directories(dir);
    MakeModelDir(dir, 512, "<|im_start|>");
    WriteFile(dir + "/model.safetensors", "");
    if (plant_link) {
      WriteFile(dir_.Sub("outside.safetensors"), "secret");
      std::filesystem::create_symlink(dir_.Sub("outside.safetensors"),
                                      dir + "/extra.safetensors");
    }
    v1::FinishAttemptRequest fin;
    fin.set_worker_id(worker);
    fin.set_job_id(a.job_id());
    fin.set_attempt(a.attempt());
    fin.set_outcome(v1::ATTEMPT_OUTCOME_SUCCEEDED);
    fin.mutable_adapter()->set_path(a.adapter_dir());
    v1::AdapterFile* f = fin.mutable_adapter()->add_files();
    f->set_path("config.json");
    f->set_size_bytes(1);
    FTUNE_RETURN_IF_ERROR(Finish(fin).status());
    return GetJob(job.id());
  };
  auto get_model = [&](const TenantKey& t,
                       const std::string& name) -> absl::StatusOr<v1::Model> {
    v1::GetModelRequest g;
    g.set_name(name);
    v1::Model m;
    FTUNE_RETURN_IF_ERROR(Call(t.key, [&](grpc::ClientContext* c) {
      return models_->GetModel(c, g, &m);
    }));
    return m;
  };

  ASSERT_OK_AND_ASSIGN(v1::Job bad, run(/*plant_link=*/true));
  EXPECT_EQ(bad.state(), v1::JOB_STATE_FAILED);
  EXPECT_THAT(bad.error().message(),
              ::testing::HasSubstr("extra.safetensors is not a regular file"));
  EXPECT_TRUE(bad.fine_tuned_model().empty());
  EXPECT_EQ(get_model(tenant_, "ft:" + bad.id()).status().code(),
            absl::StatusCode::kNotFound);

  ASSERT_OK_AND_ASSIGN(v1::Job good, run(/*plant_link=*/false));
  ASSERT_EQ(good.state(), v1::JOB_STATE_SUCCEEDED) << good.ShortDebugString();
  EXPECT_EQ(good.fine_tuned_model(), "ft:" + good.id());
  ASSERT_OK_AND_ASSIGN(v1::Model m,
                       get_model(tenant_, good.fine_tuned_model()));
  EXPECT_EQ(m.owner_tenant_id(), tenant_.tenant_id);
  EXPECT_EQ(m.base_model(), "tiny");
  EXPECT_EQ(m.job_id(), good.id());
  EXPECT_EQ(m.hidden_size(), 64);
  EXPECT_EQ(get_model(other, good.fine_tuned_model()).status().code(),
            absl::StatusCode::kNotFound);
  // The owner can train on it (a LoRA job is accepted); the other tenant
  // is told it does not exist.
  v1::CreateJobRequest next = CpuJob();
  next.mutable_spec()->set_model(good.fine_tuned_model());
  EXPECT_OK(CreateJob(tenant_, next).status());
  v1::CreateJobRequest theirs = JobRequest(other);
  theirs.mutable_spec()->mutable_resources()->set_gpus(0);
  theirs.mutable_spec()->set_model(good.fine_tuned_model());
  absl::Status st = CreateJob(other, theirs).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.message()), ::testing::HasSubstr("unknown model"));
}

}  // namespace
}  // namespace ftune::server::testing
