// The real ftune-scheduler binary: webhooks registered over gRPC, an event
// committed, the scheduler SIGKILLed while its POST is in flight (the
// receiver holds it), and the same event (same webhook-id, same body)
// delivered after a restart; tenants' events never cross; bad
// registrations are refused naming the field, and create nothing.
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sys/wait.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "ftune/v1/admin.grpc.pb.h"
#include "ftune/v1/job_service.grpc.pb.h"
#include "ftune/v1/webhook.grpc.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "server/rpc/status_util.h"
#include "server/store/sqlite_store.h"
#include "tests/server/webhook/receiver.h"
#include "tests/server/webhook/webhook_test_util.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/subprocess.h"
#include "tests/testing/temp_dir.h"

namespace ftune {
namespace {

using ::ftune::testing::ReceivedWebhook;
using ::ftune::testing::WebhookReceiver;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::SizeIs;

const std::string kScheduler = std::string(FTUNE_BIN_DIR) + "/ftune-scheduler";
const std::string kCtl = std::string(FTUNE_BIN_DIR) + "/ftunectl";
constexpr char kAdminKey[] = "admin-key-for-the-webhook-test-0123";

void WriteFile(const std::string& path, const std::string& text) {
  std::filesystem::create_directories(
      std::filesystem::path(path).parent_path());
  std::ofstream(path) << text;
}

v1::ErrorInfo ErrorInfoOf(const grpc::ClientContext& ctx) {
  v1::ErrorInfo info;
  const auto& md = ctx.GetServerTrailingMetadata();
  auto it = md.find(server::rpc::kErrorInfoMetadataKey);
  if (it != md.end()) {
    info.ParseFromArray(it->second.data(), static_cast<int>(it->second.size()));
  }
  return info;
}

class SchedulerWebhookTest : public ::testing::Test {
 protected:
  void SetUp() override {
    WriteFile(dir_.Sub("storage/models/tiny/config.json"),
              R"({"architectures": ["LlamaForCausalLM"], "vocab_size": 256,
                  "hidden_size": 64, "intermediate_size": 128,
                  "num_hidden_layers": 2, "num_attention_heads": 4,
                  "max_position_embeddings": 256})");
    WriteFile(dir_.Sub("scheduler.json"), R"({"models": [{"name": "tiny"}]})");
    WriteFile(dir_.Sub("admin.key"), std::string(kAdminKey) + "\n");
  }

  std::vector<std::string> Args() const {
    return {kScheduler,
            "--grpc_address=127.0.0.1:0",
            "--db=" + dir_.Sub("sched.db"),
            "--storage_root=" + dir_.Sub("storage"),
            "--config=" + dir_.Sub("scheduler.json"),
            "--admin_key_file=" + dir_.Sub("admin.key"),
            "--webhook_allow_http",
            "--webhook_allow_private_targets",
            "--webhook_request_timeout=60s",
            "--webhook_poll_interval=50ms"};
  }

  void Connect(testing::Subprocess& proc) {
    ASSERT_OK_AND_ASSIGN(
        std::string address,
        proc.ReadLineWithPrefix("grpc_address=", absl::Seconds(30)));
    address_ = address;
    auto channel =
        grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
    admin_ = v1::AdminService::NewStub(channel);
    jobs_ = v1::JobService::NewStub(channel);
    webhooks_ = v1::WebhookService::NewStub(channel);
  }

  struct Tenant {
    std::string id;
    std::string key;
    std::string file_id;
  };
  Tenant MakeTenant(const std::string& name) {
    Tenant out;
    v1::CreateTenantRequest treq;
    treq.set_display_name(name);
    v1::Tenant tenant;
    {
      grpc::ClientContext ctx;
      ctx.AddMetadata("authorization", std::string("Bearer ") + kAdminKey);
      grpc::Status st = admin_->CreateTenant(&ctx, treq, &tenant);
      EXPECT_TRUE(st.ok()) << st.error_message();
    }
    out.id = tenant.id();
    v1::CreateApiKeyRequest kreq;
    kreq.set_tenant_id(tenant.id());
    v1::CreateApiKeyResponse key;
    {
      grpc::ClientContext ctx;
      ctx.AddMetadata("authorization", std::string("Bearer ") + kAdminKey);
      EXPECT_TRUE(admin_->CreateApiKey(&ctx, kreq, &key).ok());
    }
    out.key = key.secret();
    // A ready file row, written beside the running scheduler (WAL).
    store::SqliteStoreOptions so;
    so.path = dir_.Sub("sched.db");
    auto side = store::SqliteStore::Open(so);
    EXPECT_TRUE(side.ok()) << side.status();
    core::FileRecord f;
    f.tenant_id = tenant.id();
    f.filename = "train.jsonl";
    f.purpose = "fine-tune-train";
    f.status = core::FileStatus::kReady;
    f.format = "text";
    f.example_count = 10;
    f.storage_path = "files/x";
    auto file = (*side)->CreateFile(f);
    EXPECT_TRUE(file.ok()) << file.status();
    out.file_id = file->id;
    return out;
  }

  std::string CreateJob(const Tenant& t) {
    v1::CreateJobRequest req;
    req.mutable_spec()->set_model("tiny");
    req.mutable_spec()->set_training_file(t.file_id);
    v1::CreateJobResponse created;
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer " + t.key);
    grpc::Status st = jobs_->CreateJob(&ctx, req, &created);
    EXPECT_TRUE(st.ok()) << st.error_message();
    return created.job().id();
  }

  void CancelJob(const Tenant& t, const std::string& job_id) {
    v1::CancelJobRequest req;
    req.set_job_id(job_id);
    v1::Job job;
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer " + t.key);
    grpc::Status st = jobs_->CancelJob(&ctx, req, &job);
    EXPECT_TRUE(st.ok()) << st.error_message();
  }

  grpc::Status CreateWebhook(const Tenant& t, const std::string& url,
                             std::vector<std::string> types,
                             v1::CreateWebhookResponse* out,
                             v1::ErrorInfo* info = nullptr) {
    v1::CreateWebhookRequest req;
    req.set_url(url);
    for (const auto& type : types) req.add_event_types(type);
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer " + t.key);
    grpc::Status st = webhooks_->CreateWebhook(&ctx, req, out);
    if (info != nullptr) *info = ErrorInfoOf(ctx);
    return st;
  }

  grpc::Status ListDeliveries(const Tenant& t, const std::string& webhook_id,
                              v1::ListWebhookDeliveriesResponse* out) {
    v1::ListWebhookDeliveriesRequest req;
    req.set_webhook_id(webhook_id);
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer " + t.key);
    return webhooks_->ListWebhookDeliveries(&ctx, req, out);
  }

  // ftunectl against the running scheduler: exit code, stdout + stderr.
  std::pair<int, std::string> Ctl(const Tenant& t,
                                  std::vector<std::string> args) {
    args.insert(args.begin(), {kCtl, "--address", address_});
    testing::Subprocess proc;
    const std::string err = dir_.Sub("ctl.stderr");
    EXPECT_OK(proc.Start(args, {{"FTUNE_API_KEY", t.key}}, err));
    EXPECT_OK(proc.ReadAll(absl::Seconds(30)));
    absl::StatusOr<int> status = proc.Wait(absl::Seconds(30));
    std::string text;
    for (const std::string& line : proc.lines()) text += line + "\n";
    std::ifstream in(err);
    text.append(std::istreambuf_iterator<char>(in), {});
    return {status.ok() && WIFEXITED(*status) ? WEXITSTATUS(*status) : -1,
            text};
  }

  testing::TempDir dir_;
  std::string address_;
  std::unique_ptr<v1::AdminService::Stub> admin_;
  std::unique_ptr<v1::JobService::Stub> jobs_;
  std::unique_ptr<v1::WebhookService::Stub> webhooks_;
};

TEST_F(SchedulerWebhookTest, DeliveryInFlightAtSigkillIsSentAgainAfterRestart) {
  // The first POST is held open: the scheduler dies with it in flight.
  ASSERT_OK_AND_ASSIGN(auto receiver, WebhookReceiver::Start([](int n) {
                         return n == 0 ? WebhookReceiver::kHang : 204;
                       }));
  testing::Subprocess proc;
  ASSERT_OK(proc.Start(Args()));
  Connect(proc);
  const Tenant a = MakeTenant("a");
  const Tenant b = MakeTenant("b");

  // Bad registrations: refused naming the field; nothing created.
  v1::CreateWebhookResponse bad;
  v1::ErrorInfo info;
  grpc::Status st =
      CreateWebhook(a, receiver->url("/a"), {"job.exploded"}, &bad, &info);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(info.field(), "event_types");
  st = CreateWebhook(a, "https://hooks.nothing.invalid/x",
                     {"fine_tuning.job.cancelled"}, &bad, &info);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(info.field(), "url");
  EXPECT_THAT(st.error_message(), HasSubstr("does not resolve"));
  {
    v1::ListWebhooksResponse list;
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer " + a.key);
    ASSERT_TRUE(
        webhooks_->ListWebhooks(&ctx, v1::ListWebhooksRequest(), &list).ok());
    EXPECT_EQ(list.webhooks_size(), 0);
  }

  v1::CreateWebhookResponse wa, wb;
  ASSERT_TRUE(
      CreateWebhook(a, receiver->url("/a"), {"fine_tuning.job.cancelled"}, &wa)
          .ok());
  ASSERT_TRUE(
      CreateWebhook(b, receiver->url("/b"), {"fine_tuning.job.cancelled"}, &wb)
          .ok());
  EXPECT_THAT(wa.secret(), ::testing::StartsWith("whsec_"));
  {
    // The secret is shown once: Get does not carry it (no field for it),
    // and another tenant's id is NOT_FOUND.
    v1::GetWebhookRequest get;
    get.set_id(wa.webhook().id());
    v1::Webhook got;
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer " + b.key);
    EXPECT_EQ(webhooks_->GetWebhook(&ctx, get, &got).error_code(),
              grpc::StatusCode::NOT_FOUND);
  }

  const std::string job_a = CreateJob(a);
  CancelJob(a, job_a);
  ASSERT_TRUE(receiver->AwaitCount(1));  // Held: not answered.
  ASSERT_OK(proc.Signal(SIGKILL));
  ASSERT_OK(proc.Wait(absl::Seconds(30)).status());

  testing::Subprocess again;
  ASSERT_OK(again.Start(Args()));
  Connect(again);
  ASSERT_TRUE(receiver->AwaitCount(2));
  // After the restart, tenant b's event goes only to b.
  const std::string job_b = CreateJob(b);
  CancelJob(b, job_b);
  ASSERT_TRUE(receiver->AwaitCount(3));
  receiver->Release();

  const std::vector<ReceivedWebhook> got = receiver->received();
  ASSERT_THAT(got, SizeIs(3));
  std::vector<ReceivedWebhook> to_a, to_b;
  for (const ReceivedWebhook& r : got) {
    (r.path == "/a" ? to_a : to_b).push_back(r);
  }
  ASSERT_THAT(to_a, SizeIs(2));
  ASSERT_THAT(to_b, SizeIs(1));
  // The same event twice: at least once, identified by webhook-id.
  EXPECT_EQ(to_a[0].headers.at("webhook-id"), to_a[1].headers.at("webhook-id"));
  EXPECT_EQ(to_a[0].body, to_a[1].body);
  const nlohmann::json body_a = nlohmann::json::parse(to_a[0].body);
  EXPECT_EQ(body_a["type"], "fine_tuning.job.cancelled");
  EXPECT_EQ(body_a["data"]["id"], job_a);
  EXPECT_EQ(nlohmann::json::parse(to_b[0].body)["data"]["id"], job_b);
  std::string out;
  EXPECT_EQ(
      testing::VerifyWithPython(wa.secret(), to_a, dir_.Sub("a.json"), &out), 0)
      << out;
  out.clear();
  EXPECT_EQ(
      testing::VerifyWithPython(wb.secret(), to_b, dir_.Sub("b.json"), &out), 0)
      << out;

  // The log: delivered on the attempt after the restart; b cannot read a's.
  v1::ListWebhookDeliveriesResponse log;
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  do {
    log.Clear();
    ASSERT_TRUE(ListDeliveries(a, wa.webhook().id(), &log).ok());
    ASSERT_EQ(log.deliveries_size(), 1);
    if (log.deliveries(0).state() == v1::WebhookDelivery::STATE_DELIVERED)
      break;
    absl::SleepFor(absl::Milliseconds(20));
  } while (absl::Now() < deadline);
  EXPECT_EQ(log.deliveries(0).state(), v1::WebhookDelivery::STATE_DELIVERED);
  EXPECT_EQ(log.deliveries(0).attempts(), 1);
  EXPECT_EQ(log.deliveries(0).event_id(), to_a[0].headers.at("webhook-id"));
  EXPECT_EQ(log.deliveries(0).last_status_code(), 204);
  v1::ListWebhookDeliveriesResponse foreign;
  EXPECT_EQ(ListDeliveries(b, wa.webhook().id(), &foreign).error_code(),
            grpc::StatusCode::NOT_FOUND);

  // The same through ftunectl.
  auto [rc, text] = Ctl(a, {"webhooks", "deliveries", wa.webhook().id()});
  EXPECT_EQ(rc, 0) << text;
  EXPECT_THAT(text, HasSubstr("fine_tuning.job.cancelled"));
  EXPECT_THAT(text, HasSubstr("DELIVERED"));
  std::tie(rc, text) = Ctl(a, {"webhooks", "list", "--output", "json"});
  EXPECT_EQ(rc, 0) << text;
  EXPECT_THAT(text, HasSubstr(wa.webhook().id()));
  EXPECT_THAT(text, Not(HasSubstr(wb.webhook().id())));
  std::tie(rc, text) =
      Ctl(a, {"webhooks", "create", "https://hooks.nothing.invalid/",
              "--event-type", "fine_tuning.job.failed"});
  EXPECT_NE(rc, 0) << text;
  EXPECT_THAT(text, HasSubstr("url"));
  std::tie(rc, text) = Ctl(a, {"webhooks", "create", receiver->url("/c"),
                               "--event-type", "fine_tuning.job.failed",
                               "--event-type", "fine_tuning.job.succeeded"});
  EXPECT_EQ(rc, 0) << text;
  EXPECT_THAT(text, HasSubstr("whsec_"));
  std::tie(rc, text) = Ctl(b, {"webhooks", "delete", wa.webhook().id()});
  EXPECT_NE(rc, 0) << text;
  EXPECT_THAT(text, HasSubstr("NOT_FOUND"));
  std::tie(rc, text) = Ctl(a, {"webhooks", "delete", wa.webhook().id()});
  EXPECT_EQ(rc, 0) << text;
  std::tie(rc, text) = Ctl(a, {"webhooks", "get", wa.webhook().id()});
  EXPECT_NE(rc, 0) << text;

  ASSERT_OK(again.Signal(SIGTERM));
  ASSERT_OK_AND_ASSIGN(int status, again.Wait(absl::Seconds(30)));
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

}  // namespace
}  // namespace ftune
