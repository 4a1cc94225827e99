// Shared set-up for the server/rpc tests: a real SQLite store and storage
// root in a temp dir, a WatchHub on the store's commit hook, and a real gRPC
// server on 127.0.0.1:0 hosting FileService and a JobService whose only rpc
// is WatchJob (delegating to StartWatchJob), with the scheduler's
// StoreAuthenticator resolving bearer tokens through API keys stored in the
// real Store.
#ifndef FTUNE_TESTS_SERVER_RPC_STREAM_FIXTURE_H_
#define FTUNE_TESTS_SERVER_RPC_STREAM_FIXTURE_H_

#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>

#include "ftune/v1/file.grpc.pb.h"
#include "ftune/v1/job_service.grpc.pb.h"
#include "gtest/gtest.h"
#include "server/core/api_key.h"
#include "server/engine/watch_hub.h"
#include "server/rpc/auth.h"
#include "server/rpc/file_service.h"
#include "server/rpc/job_watch.h"
#include "server/rpc/principal.h"
#include "server/rpc/status_util.h"
#include "server/store/sqlite_store.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace ftune::server::rpc::testing {

// JobService with only WatchJob, as the real one delegates it.
class WatchOnlyJobService : public v1::JobService::CallbackService {
 public:
  WatchOnlyJobService(engine::WatchHub* hub, store::Store* store,
                      Authenticator* auth, WatchJobOptions options)
      : hub_(hub), store_(store), auth_(auth), options_(options) {}
  grpc::ServerWriteReactor<v1::WatchJobResponse>* WatchJob(
      grpc::CallbackServerContext* ctx,
      const v1::WatchJobRequest* request) override {
    absl::StatusOr<Principal> p = auth_->Authenticate(*ctx);
    if (!p.ok()) {
      auto* r = new Refused();
      r->Finish(ToGrpcStatus(p.status(), ctx));
      return r;
    }
    return StartWatchJob(hub_, store_, ctx, request, *p, options_);
  }

 private:
  struct Refused : grpc::ServerWriteReactor<v1::WatchJobResponse> {
    void OnDone() override { delete this; }
  };
  engine::WatchHub* hub_;
  store::Store* store_;
  Authenticator* auth_;
  WatchJobOptions options_;
};

class RpcTest : public ::testing::Test {
 protected:
  void SetUp() override {
    storage_root_ = dir_.Sub("storage");
    file_options_.storage_root = storage_root_;
    store::SqliteStoreOptions so;
    so.path = dir_.Sub("sched.db");
    so.synchronous_full = false;
    so.on_commit = hub_.CommitHook();
    auto st = store::SqliteStore::Open(so);
    ASSERT_TRUE(st.ok()) << st.status();
    store_ = std::move(st).value();
    auth_ = std::make_unique<StoreAuthenticator>(store_.get(), AuthOptions{});
    file_service_ =
        std::make_unique<FileService>(store_.get(), auth_.get(), file_options_);
    job_service_ = std::make_unique<WatchOnlyJobService>(
        &hub_, store_.get(), auth_.get(), watch_options_);
    grpc::ServerBuilder builder;
    builder.AddChannelArgument("grpc.so_reuseport", 0);
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                             &port_);
    builder.RegisterService(file_service_.get());
    builder.RegisterService(job_service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_GT(port_, 0);
    channel_ = grpc::CreateChannel(absl::StrCat("127.0.0.1:", port_),
                                   grpc::InsecureChannelCredentials());
    files_ = v1::FileService::NewStub(channel_);
    jobs_ = v1::JobService::NewStub(channel_);
    core::Model m;
    m.name = "tiny";
    m.directory = "models/tiny";
    ASSERT_OK(store_->UpsertModel(m));
  }

  void TearDown() override { StopServer(); }

  void StopServer() {
    if (server_ == nullptr) return;
    hub_.Shutdown();
    server_->Shutdown(std::chrono::system_clock::now() +
                      std::chrono::seconds(5));
    server_->Wait();
    server_.reset();
  }

  struct TestTenant {
    std::string id;
    std::string key;  // Bearer secret.
  };
  TestTenant MakeTenant(const std::string& name) {
    core::Tenant t;
    t.name = name;
    auto tenant = store_->CreateTenant(t);
    EXPECT_TRUE(tenant.ok()) << tenant.status();
    core::GeneratedApiKey gen = core::GenerateApiKey();
    core::ApiKey key;
    key.role = core::ApiKeyRole::kTenant;
    key.tenant_id = tenant->id;
    key.prefix = gen.prefix;
    key.hash = gen.hash;
    EXPECT_OK(store_->CreateApiKey(key));
    return {tenant->id, gen.key};
  }

  static void Authorize(grpc::ClientContext* ctx, const TestTenant& t,
                        int deadline_s = 60) {
    ctx->AddMetadata("authorization", "Bearer " + t.key);
    ctx->set_deadline(std::chrono::system_clock::now() +
                      std::chrono::seconds(deadline_s));
  }

  ::ftune::testing::TempDir dir_;
  std::string storage_root_;
  FileServiceOptions file_options_;
  WatchJobOptions watch_options_;
  engine::WatchHub hub_;
  std::unique_ptr<store::SqliteStore> store_;
  std::unique_ptr<StoreAuthenticator> auth_;
  std::unique_ptr<FileService> file_service_;
  std::unique_ptr<WatchOnlyJobService> job_service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::FileService::Stub> files_;
  std::unique_ptr<v1::JobService::Stub> jobs_;
};

}  // namespace ftune::server::rpc::testing

#endif  // FTUNE_TESTS_SERVER_RPC_STREAM_FIXTURE_H_
