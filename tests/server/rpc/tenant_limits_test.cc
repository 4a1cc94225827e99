// Per-tenant limits on the whole SchedulerServer over loopback
// (rpc_fixture.h): the stream limit on WatchJob and StreamJobLog, the
// request rate on a fake clock, both per tenant, with ErrorInfo and the
// refusal counter on /metrics.
#include <chrono>
#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/server/rpc/rpc_fixture.h"
#include "tests/testing/http_client.h"

namespace ftune::server::testing {
namespace {

using ::testing::HasSubstr;

class TenantLimitsTest : public RpcTest {
 protected:
  struct Watch {
    grpc::ClientContext ctx;
    std::unique_ptr<grpc::ClientReader<v1::WatchJobResponse>> reader;
    v1::WatchJobResponse first;
    bool opened = false;
  };
  // Opens a watch and reads its first message (the stream is then held on
  // the server) or its refusal.
  std::unique_ptr<Watch> OpenWatch(const TenantKey& t,
                                   const std::string& job_id) {
    auto w = std::make_unique<Watch>();
    w->ctx.AddMetadata("authorization", "Bearer " + t.key);
    w->ctx.set_deadline(std::chrono::system_clock::now() +
                        std::chrono::seconds(30));
    v1::WatchJobRequest req;
    req.set_job_id(job_id);
    w->reader = jobs_->WatchJob(&w->ctx, req);
    w->opened = w->reader->Read(&w->first);
    return w;
  }
  static absl::Status Close(Watch& w) {
    w.ctx.TryCancel();
    v1::WatchJobResponse msg;
    while (w.reader->Read(&msg)) {
    }
    return rpc::FromGrpcStatus(w.reader->Finish(), &w.ctx);
  }
  // ftune_tenant_limit_refusals_total{tenant, limit} from /metrics.
  std::string Scrape() {
    const std::string address = server_->metrics_address();
    const int port = std::stoi(address.substr(address.rfind(':') + 1));
    absl::StatusOr<ftune::testing::HttpResponse> r =
        ftune::testing::HttpGet("127.0.0.1", port, "/metrics");
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? r->body : "";
  }
  static std::string RefusalLine(const std::string& tenant,
                                 const std::string& limit, int n) {
    return absl::StrCat("ftune_tenant_limit_refusals_total{tenant=\"", tenant,
                        "\",limit=\"", limit, "\"} ", n);
  }
};

class StreamLimitTest : public TenantLimitsTest {
 protected:
  void SetUp() override {
    tenant_limits_.max_streams_per_tenant = 2;
    metrics_address_ = "127.0.0.1:0";
    TenantLimitsTest::SetUp();
  }
};

TEST_F(StreamLimitTest, RefusedBeyondTheFlagAndAcceptedAgainAfterOneCloses) {
  TenantKey a = MakeTenant("a");
  TenantKey b = MakeTenant("b");
  ASSERT_OK_AND_ASSIGN(v1::Job job, CreateJob(a, JobRequest(a)));
  ASSERT_OK_AND_ASSIGN(v1::Job bjob, CreateJob(b, JobRequest(b)));
  auto w1 = OpenWatch(a, job.id());
  auto w2 = OpenWatch(a, job.id());
  ASSERT_TRUE(w1->opened && w2->opened);
  EXPECT_TRUE(w1->first.has_job());

  // The third WatchJob of the tenant, and a StreamJobLog (the same limit).
  auto w3 = OpenWatch(a, job.id());
  EXPECT_FALSE(w3->opened);
  absl::Status refused = rpc::FromGrpcStatus(w3->reader->Finish(), &w3->ctx);
  ASSERT_EQ(refused.code(), absl::StatusCode::kResourceExhausted) << refused;
  EXPECT_THAT(refused.message(), HasSubstr("--max_streams_per_tenant"));
  EXPECT_EQ(InfoOf(refused).quota(), "max_streams_per_tenant");
  EXPECT_EQ(InfoOf(refused).limit(), 2);
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer " + a.key);
    v1::StreamJobLogRequest req;
    req.set_job_id(job.id());
    auto reader = jobs_->StreamJobLog(&ctx, req);
    v1::StreamJobLogResponse msg;
    EXPECT_FALSE(reader->Read(&msg));
    absl::Status log = rpc::FromGrpcStatus(reader->Finish(), &ctx);
    EXPECT_EQ(log.code(), absl::StatusCode::kResourceExhausted) << log;
    EXPECT_EQ(InfoOf(log).quota(), "max_streams_per_tenant");
  }

  // Another tenant has its own streams.
  auto other = OpenWatch(b, bjob.id());
  EXPECT_TRUE(other->opened);

  // Closing one frees its slot once the server has ended the call.
  EXPECT_EQ(Close(*w1).code(), absl::StatusCode::kCancelled);
  std::unique_ptr<Watch> again;
  int refused_meanwhile = 0;  // Until the server has seen the cancel.
  for (int i = 0; i < 500; ++i) {
    again = OpenWatch(a, job.id());
    if (again->opened) break;
    EXPECT_EQ(again->reader->Finish().error_code(),
              grpc::StatusCode::RESOURCE_EXHAUSTED);
    ++refused_meanwhile;
    absl::SleepFor(absl::Milliseconds(10));
  }
  ASSERT_TRUE(again->opened);
  EXPECT_TRUE(again->first.has_job());

  const std::string metrics = Scrape();
  EXPECT_THAT(metrics,
              HasSubstr(RefusalLine(a.tenant_id, "max_streams_per_tenant",
                                    2 + refused_meanwhile)))
      << metrics;
  EXPECT_THAT(metrics, ::testing::Not(HasSubstr(b.tenant_id + "\",limit")));
  for (Watch* w : {w2.get(), again.get(), other.get()}) (void)Close(*w);
}

class RateLimitTest : public TenantLimitsTest {
 protected:
  void SetUp() override {
    tenant_limits_.requests_per_second = 2;  // A token every 500 ms.
    tenant_limits_.request_burst = 3;
    tenant_limits_clock_ = &clock_;
    metrics_address_ = "127.0.0.1:0";
    TenantLimitsTest::SetUp();
  }
  absl::Status GetJob(const TenantKey& t, const std::string& id) {
    v1::GetJobRequest req;
    req.set_job_id(id);
    v1::Job out;
    return Call(t.key, [&](grpc::ClientContext* c) {
      return jobs_->GetJob(c, req, &out);
    });
  }
  FakeClock clock_;
};

TEST_F(RateLimitTest, RefusedWithRetryDelayThenRecovers) {
  TenantKey a = MakeTenant("a");
  TenantKey b = MakeTenant("b");
  ASSERT_OK_AND_ASSIGN(v1::Job job, CreateJob(a, JobRequest(a)));  // 1
  EXPECT_OK(GetJob(a, job.id()));                                  // 2
  EXPECT_OK(GetJob(a, job.id()));                                  // 3
  absl::Status over = GetJob(a, job.id());
  ASSERT_EQ(over.code(), absl::StatusCode::kResourceExhausted) << over;
  EXPECT_THAT(over.message(), HasSubstr("--tenant_requests_per_second"));
  v1::ErrorInfo info = InfoOf(over);
  EXPECT_EQ(info.quota(), "tenant_requests_per_second");
  EXPECT_EQ(info.limit(), 2);
  EXPECT_EQ(info.retry_delay().seconds(), 0);
  EXPECT_EQ(info.retry_delay().nanos(), 500'000'000);
  // Every kind of tenant call takes a token: CreateJob is refused too and
  // creates nothing.
  absl::StatusOr<v1::Job> refused_create = CreateJob(a, JobRequest(a));
  EXPECT_EQ(refused_create.status().code(),
            absl::StatusCode::kResourceExhausted);
  // Another tenant and the admin are not limited by a's calls.
  EXPECT_OK(CreateJob(b, JobRequest(b)).status());
  v1::ListTenantsResponse tenants;
  EXPECT_OK(Call(kAdminKey, [&](grpc::ClientContext* c) {
    return admin_->ListTenants(c, v1::ListTenantsRequest(), &tenants);
  }));

  clock_.Advance(absl::Milliseconds(250));  // Half a token.
  EXPECT_EQ(GetJob(a, job.id()).code(), absl::StatusCode::kResourceExhausted);
  clock_.Advance(absl::Milliseconds(250));
  EXPECT_OK(GetJob(a, job.id()));
  // Only the first job exists: the refused CreateJob stored nothing.
  v1::ListJobsResponse list;
  clock_.Advance(absl::Seconds(10));
  ASSERT_OK(Call(a.key, [&](grpc::ClientContext* c) {
    return jobs_->ListJobs(c, v1::ListJobsRequest(), &list);
  }));
  EXPECT_EQ(list.jobs_size(), 1);

  EXPECT_THAT(Scrape(), HasSubstr(RefusalLine(
                            a.tenant_id, "tenant_requests_per_second", 3)));
}

}  // namespace
}  // namespace ftune::server::testing
