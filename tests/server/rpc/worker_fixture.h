// The worker agent's side of WorkerService over the real SchedulerServer
// (rpc_fixture.h): register, open the command stream, report, finish, as a
// plain gRPC client. Shared by the WorkerService tests.
#ifndef FTUNE_TESTS_SERVER_RPC_WORKER_FIXTURE_H_
#define FTUNE_TESTS_SERVER_RPC_WORKER_FIXTURE_H_

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "ftune/v1/worker.grpc.pb.h"
#include "gtest/gtest.h"
#include "server/engine/dispatcher.h"
#include "tests/server/rpc/rpc_fixture.h"

namespace ftune::server::testing {

class WorkerServiceTest : public RpcTest {
 protected:
  void SetUp() override {
    RpcTest::SetUp();
    workers_ = v1::WorkerService::NewStub(channel_);
    tenant_ = MakeTenant("acme");
  }

  static v1::WorkerCapabilities CpuHost(const std::string& host) {
    v1::WorkerCapabilities c;
    c.set_hostname(host);
    c.set_cpu_slots(1);
    c.set_software_version("test");
    return c;
  }

  static v1::WorkerCapabilities GpuHost(const std::string& host,
                                        std::vector<int> indices) {
    v1::WorkerCapabilities c = CpuHost(host);
    for (int i : indices) {
      v1::GpuDevice* g = c.add_gpus();
      g->set_index(i);
      g->set_name("NVIDIA H100 80GB HBM3");
      g->set_memory_bytes(int64_t{80} << 30);
    }
    return c;
  }

  absl::StatusOr<std::string> Register(const v1::WorkerCapabilities& caps,
                                       const std::string& previous = "") {
    v1::RegisterWorkerRequest req;
    *req.mutable_capabilities() = caps;
    req.set_previous_worker_id(previous);
    v1::RegisterWorkerResponse resp;
    absl::Status st = Call(kWorkerKey, [&](grpc::ClientContext* c) {
      return workers_->RegisterWorker(c, req, &resp);
    });
    if (!st.ok()) return st;
    return resp.worker_id();
  }

  // An open StreamCommands call.
  struct Stream {
    grpc::ClientContext ctx;
    std::unique_ptr<grpc::ClientReader<v1::WorkerCommand>> reader;
  };
  std::unique_ptr<Stream> Open(const std::string& worker_id) {
    auto s = std::make_unique<Stream>();
    s->ctx.AddMetadata("authorization", std::string("Bearer ") + kWorkerKey);
    s->ctx.set_deadline(std::chrono::system_clock::now() +
                        std::chrono::seconds(20));
    v1::StreamCommandsRequest req;
    req.set_worker_id(worker_id);
    s->reader = workers_->StreamCommands(&s->ctx, req);
    return s;
  }
  static v1::WorkerCommand Next(Stream& s) {
    v1::WorkerCommand c;
    EXPECT_TRUE(s.reader->Read(&c)) << "stream ended";
    return c;
  }

  absl::StatusOr<v1::Job> GetJob(const std::string& id) {
    v1::GetJobRequest req;
    req.set_job_id(id);
    v1::Job job;
    absl::Status st = Call(tenant_.key, [&](grpc::ClientContext* c) {
      return jobs_->GetJob(c, req, &job);
    });
    if (!st.ok()) return st;
    return job;
  }

  absl::StatusOr<v1::ReportProgressResponse> Report(
      const v1::ReportProgressRequest& req) {
    v1::ReportProgressResponse resp;
    absl::Status st = Call(kWorkerKey, [&](grpc::ClientContext* c) {
      return workers_->ReportProgress(c, req, &resp);
    });
    if (!st.ok()) return st;
    return resp;
  }

  absl::StatusOr<v1::FinishAttemptResponse> Finish(
      const v1::FinishAttemptRequest& req) {
    v1::FinishAttemptResponse resp;
    absl::Status st = Call(kWorkerKey, [&](grpc::ClientContext* c) {
      return workers_->FinishAttempt(c, req, &resp);
    });
    if (!st.ok()) return st;
    return resp;
  }

  static v1::ReportProgressRequest Batch(const std::string& worker,
                                         const v1::AssignJobCommand& a,
                                         int64_t number) {
    v1::ReportProgressRequest r;
    r.set_worker_id(worker);
    r.set_job_id(a.job_id());
    r.set_attempt(a.attempt());
    r.set_batch_number(number);
    return r;
  }

  // Waits until the dispatcher has run `n` more rounds.
  void WaitRounds(int n) {
    const int64_t target = server_->dispatcher()->rounds() + n;
    server_->dispatcher()->Notify();
    while (server_->dispatcher()->rounds() < target) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }

  // A job for a CPU worker (the default asks for a GPU).
  v1::CreateJobRequest CpuJob() {
    v1::CreateJobRequest req = JobRequest(tenant_);
    req.mutable_spec()->mutable_resources()->set_gpus(0);
    return req;
  }

  std::unique_ptr<v1::WorkerService::Stub> workers_;
  TenantKey tenant_;
};

}  // namespace ftune::server::testing

#endif  // FTUNE_TESTS_SERVER_RPC_WORKER_FIXTURE_H_
