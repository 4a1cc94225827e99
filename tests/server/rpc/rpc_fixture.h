// Shared set-up for the service tests: the real SchedulerServer on a
// loopback port 0 over a real SQLite file in a temp dir, a model directory
// registered through a real config file, and real tenants and API keys
// created through AdminService with the admin credential.
#ifndef FTUNE_TESTS_SERVER_RPC_RPC_FIXTURE_H_
#define FTUNE_TESTS_SERVER_RPC_RPC_FIXTURE_H_

#include <grpcpp/grpcpp.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "ftune/v1/admin.grpc.pb.h"
#include "ftune/v1/file.grpc.pb.h"
#include "ftune/v1/job_service.grpc.pb.h"
#include "ftune/v1/model.grpc.pb.h"
#include "gtest/gtest.h"
#include "server/rpc/status_util.h"
#include "server/scheduler_server.h"
#include "server/store/sqlite_store.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace ftune::server::testing {

inline constexpr char kAdminKey[] = "admin-secret-for-tests-0123456789";
inline constexpr char kWorkerKey[] = "worker-secret-for-tests-0123456789";

inline void WriteFile(const std::string& path, const std::string& text) {
  std::filesystem::create_directories(
      std::filesystem::path(path).parent_path());
  std::ofstream(path) << text;
}

// A model directory with just what the scheduler reads at start-up.
inline void MakeModelDir(const std::string& dir, int max_positions,
                         const std::string& chat_template_jinja) {
  WriteFile(dir + "/config.json",
            "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 64, "
            "\"intermediate_size\": 128, \"num_hidden_layers\": 2, "
            "\"num_attention_heads\": 4, \"num_key_value_heads\": 2, "
            "\"vocab_size\": 256, \"max_position_embeddings\": " +
                std::to_string(max_positions) +
                ", \"torch_dtype\": \"float32\"}");
  if (!chat_template_jinja.empty()) {
    WriteFile(dir + "/tokenizer_config.json",
              "{\"chat_template\": \"" + chat_template_jinja + "\"}");
  }
}

// Result of a call: the status with the ErrorInfo from trailing metadata.
template <typename Fn>
absl::Status Call(const std::string& key, Fn fn) {
  grpc::ClientContext ctx;
  if (!key.empty()) ctx.AddMetadata("authorization", "Bearer " + key);
  grpc::Status st = fn(&ctx);
  return rpc::FromGrpcStatus(st, &ctx);
}

inline v1::ErrorInfo InfoOf(const absl::Status& st) {
  return rpc::GetErrorInfo(st).value_or(v1::ErrorInfo());
}

class RpcTest : public ::testing::Test {
 protected:
  void SetUp() override {
    MakeModelDir(dir_.Sub("storage/models/tiny"), 512,
                 "{% for m in messages %}<|im_start|>{{ m.role }}{% endfor %}");
    MakeModelDir(dir_.Sub("storage/models/plain"), 4096, "");
    WriteFile(dir_.Sub("scheduler.json"),
              R"({"models": [{"name": "tiny"},
                  {"name": "plain", "supported_methods": ["lora"]}]})");
    ASSERT_OK(StartServer());
  }

  absl::Status StartServer() {
    server_.reset();
    SchedulerOptions options;
    options.grpc_address = "127.0.0.1:0";
    options.db_path = dir_.Sub("sched.db");
    options.storage_root = dir_.Sub("storage");
    options.config_path = dir_.Sub("scheduler.json");
    options.auth.admin_secrets = {kAdminKey};
    options.auth.worker_secrets = {kWorkerKey};
    options.shutdown_grace = absl::Seconds(1);
    options.dispatch = dispatch_;
    options.http_address = http_address_;
    options.metrics_address = metrics_address_;
    options.tenant_limits = tenant_limits_;
    options.tenant_limits_clock = tenant_limits_clock_;
    options.webhooks = webhooks_;
    server_ = std::make_unique<SchedulerServer>(options);
    FTUNE_RETURN_IF_ERROR(server_->Start());
    channel_ = grpc::CreateChannel(server_->address(),
                                   grpc::InsecureChannelCredentials());
    jobs_ = v1::JobService::NewStub(channel_);
    admin_ = v1::AdminService::NewStub(channel_);
    models_ = v1::ModelService::NewStub(channel_);
    return absl::OkStatus();
  }

  store::SqliteStore& store() { return *server_->store(); }

  struct TenantKey {
    std::string tenant_id;
    std::string key;
    std::string key_id;
    std::string file_id;  // A READY training file of 100 chat examples.
  };
  // A tenant and an API key through AdminService, plus a ready file row
  // (FileService is another part; files are store rows).
  TenantKey MakeTenant(const std::string& name, v1::Quota quota = {}) {
    TenantKey out;
    v1::CreateTenantRequest req;
    req.set_display_name(name);
    *req.mutable_quota() = quota;
    v1::Tenant tenant;
    EXPECT_OK(Call(kAdminKey, [&](grpc::ClientContext* c) {
      return admin_->CreateTenant(c, req, &tenant);
    }));
    out.tenant_id = tenant.id();
    v1::CreateApiKeyRequest kreq;
    kreq.set_tenant_id(tenant.id());
    kreq.set_display_name("tests");
    v1::CreateApiKeyResponse kresp;
    EXPECT_OK(Call(kAdminKey, [&](grpc::ClientContext* c) {
      return admin_->CreateApiKey(c, kreq, &kresp);
    }));
    out.key = kresp.secret();
    out.key_id = kresp.api_key().id();
    out.file_id = MakeFile(out.tenant_id, "fine-tune-train", 100);
    return out;
  }

  std::string MakeFile(const std::string& tenant_id, const std::string& purpose,
                       int64_t examples,
                       core::FileStatus status = core::FileStatus::kReady) {
    core::FileRecord f;
    f.tenant_id = tenant_id;
    f.filename = "data.jsonl";
    f.purpose = purpose;
    f.status = status;
    f.format = "chat";
    f.example_count = examples;
    f.storage_path = "files/" + tenant_id + "/x";
    auto file = store().CreateFile(f);
    EXPECT_TRUE(file.ok()) << file.status();
    return file.ok() ? file->id : "";
  }

  v1::CreateJobRequest JobRequest(const TenantKey& t) {
    v1::CreateJobRequest req;
    req.mutable_spec()->set_model("tiny");
    req.mutable_spec()->set_training_file(t.file_id);
    return req;
  }

  absl::StatusOr<v1::Job> CreateJob(const TenantKey& t,
                                    const v1::CreateJobRequest& req) {
    v1::CreateJobResponse resp;
    absl::Status st = Call(t.key, [&](grpc::ClientContext* c) {
      return jobs_->CreateJob(c, req, &resp);
    });
    if (!st.ok()) return st;
    return resp.job();
  }

  // Tests that grant leases through the store by hand turn the
  // dispatcher off (it would race them for the jobs).
  bool dispatch_ = true;
  // The OpenAI-compatible HTTP API's address ("" = off).
  std::string http_address_;
  // The /metrics endpoint's address ("" = off).
  std::string metrics_address_;
  // Per-tenant limits (defaults as in production) and their clock (null =
  // real).
  engine::TenantLimitOptions tenant_limits_;
  Clock* tenant_limits_clock_ = nullptr;
  // Webhook delivery and target policy (defaults as in production).
  webhook::DeliveryOptions webhooks_;
  ftune::testing::TempDir dir_;
  std::unique_ptr<SchedulerServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::JobService::Stub> jobs_;
  std::unique_ptr<v1::AdminService::Stub> admin_;
  std::unique_ptr<v1::ModelService::Stub> models_;
};

}  // namespace ftune::server::testing

#endif  // FTUNE_TESTS_SERVER_RPC_RPC_FIXTURE_H_
