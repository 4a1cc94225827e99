// The real ftune-scheduler binary: a job acknowledged by CreateJob survives
// a SIGKILL of the scheduler; start-up refuses a missing admin credential,
// a bad config and a database from a newer version.
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "ftune/v1/admin.grpc.pb.h"
#include "ftune/v1/job_service.grpc.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/core/types.h"
#include "server/rpc/status_util.h"
#include "server/store/sqlite_store.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/subprocess.h"
#include "tests/testing/temp_dir.h"

namespace ftune {
namespace {

using ::testing::HasSubstr;

const std::string kScheduler = std::string(FTUNE_BIN_DIR) + "/ftune-scheduler";
constexpr char kAdminKey[] = "admin-key-for-the-restart-test-0123";

void WriteFile(const std::string& path, const std::string& text) {
  std::filesystem::create_directories(
      std::filesystem::path(path).parent_path());
  std::ofstream(path) << text;
}

class SchedulerRestartTest : public ::testing::Test {
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
            "--metrics_address=127.0.0.1:0",
            "--db=" + dir_.Sub("sched.db"),
            "--storage_root=" + dir_.Sub("storage"),
            "--config=" + dir_.Sub("scheduler.json"),
            "--admin_key_file=" + dir_.Sub("admin.key")};
  }

  // Exit status of a scheduler that must refuse to start, with its stderr.
  int RunToExit(const std::vector<std::string>& args,
                const std::map<std::string, std::string>& env,
                std::string* stderr_text) {
    testing::Subprocess proc;
    const std::string err = dir_.Sub("stderr.txt");
    EXPECT_OK(proc.Start(args, env, err));
    EXPECT_OK(proc.ReadAll(absl::Seconds(30)));
    absl::StatusOr<int> status = proc.Wait(absl::Seconds(30));
    EXPECT_TRUE(status.ok());
    std::ifstream in(err);
    stderr_text->assign(std::istreambuf_iterator<char>(in), {});
    return status.ok() && WIFEXITED(*status) ? WEXITSTATUS(*status) : -1;
  }

  testing::TempDir dir_;
};

TEST_F(SchedulerRestartTest, AcknowledgedJobSurvivesSigkill) {
  testing::Subprocess proc;
  ASSERT_OK(proc.Start(Args()));
  ASSERT_OK_AND_ASSIGN(
      std::string address,
      proc.ReadLineWithPrefix("grpc_address=", absl::Seconds(30)));
  auto channel =
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  auto admin = v1::AdminService::NewStub(channel);
  auto jobs = v1::JobService::NewStub(channel);

  v1::CreateTenantRequest treq;
  treq.set_display_name("t");
  v1::Tenant tenant;
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", std::string("Bearer ") + kAdminKey);
    ASSERT_TRUE(admin->CreateTenant(&ctx, treq, &tenant).ok());
  }
  v1::CreateApiKeyRequest kreq;
  kreq.set_tenant_id(tenant.id());
  v1::CreateApiKeyResponse key;
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", std::string("Bearer ") + kAdminKey);
    ASSERT_TRUE(admin->CreateApiKey(&ctx, kreq, &key).ok());
  }
  // No FileService in this binary yet: put a ready file row in the database
  // while the scheduler runs (WAL lets a second connection write).
  std::string file_id;
  {
    store::SqliteStoreOptions so;
    so.path = dir_.Sub("sched.db");
    ASSERT_OK_AND_ASSIGN(auto side, store::SqliteStore::Open(so));
    core::FileRecord f;
    f.tenant_id = tenant.id();
    f.filename = "train.jsonl";
    f.purpose = "fine-tune-train";
    f.status = core::FileStatus::kReady;
    f.format = "text";
    f.example_count = 10;
    f.storage_path = "files/x";
    ASSERT_OK_AND_ASSIGN(core::FileRecord file, side->CreateFile(f));
    file_id = file.id;
  }
  v1::CreateJobRequest req;
  req.mutable_spec()->set_model("tiny");
  req.mutable_spec()->set_training_file(file_id);
  req.set_request_id("sigkill-1");
  v1::CreateJobResponse created;
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer " + key.secret());
    grpc::Status st = jobs->CreateJob(&ctx, req, &created);
    ASSERT_TRUE(st.ok()) << st.error_message();
  }
  // Right after the acknowledgement: no graceful anything.
  ASSERT_OK(proc.Signal(SIGKILL));
  ASSERT_OK(proc.Wait(absl::Seconds(30)).status());

  testing::Subprocess again;
  ASSERT_OK(again.Start(Args()));
  ASSERT_OK_AND_ASSIGN(
      address, again.ReadLineWithPrefix("grpc_address=", absl::Seconds(30)));
  channel = grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  jobs = v1::JobService::NewStub(channel);
  v1::GetJobRequest get;
  get.set_job_id(created.job().id());
  v1::Job job;
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer " + key.secret());
    grpc::Status st = jobs->GetJob(&ctx, get, &job);
    ASSERT_TRUE(st.ok()) << st.error_message();
  }
  EXPECT_EQ(job.state(), v1::JOB_STATE_QUEUED);
  EXPECT_EQ(job.request_id(), "sigkill-1");
  // The retry after the crash returns the same job.
  v1::CreateJobResponse retried;
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer " + key.secret());
    ASSERT_TRUE(jobs->CreateJob(&ctx, req, &retried).ok());
  }
  EXPECT_EQ(retried.job().id(), created.job().id());
  ASSERT_OK(again.Signal(SIGTERM));
  ASSERT_OK_AND_ASSIGN(int status, again.Wait(absl::Seconds(30)));
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

TEST_F(SchedulerRestartTest, RefusesToStartWithoutAdminCredential) {
  std::vector<std::string> args = Args();
  args.pop_back();  // --admin_key_file
  std::string err;
  EXPECT_EQ(RunToExit(args, {{"FTUNE_ADMIN_KEY", ""}}, &err), 1);
  EXPECT_THAT(err, HasSubstr("no admin credential"));
  // A too-short credential from the environment is refused too.
  EXPECT_EQ(RunToExit(args, {{"FTUNE_ADMIN_KEY", "short"}}, &err), 1);
  EXPECT_THAT(err, HasSubstr("too short"));
}

TEST_F(SchedulerRestartTest, RefusesABadModelDirectory) {
  WriteFile(dir_.Sub("scheduler.json"),
            R"({"models": [{"name": "tiny"}, {"name": "missing"}]})");
  std::string err;
  EXPECT_EQ(RunToExit(Args(), {}, &err), 1);
  EXPECT_THAT(err, HasSubstr("model missing: directory"));
  EXPECT_THAT(err, HasSubstr("does not exist"));
}

TEST_F(SchedulerRestartTest, RefusesADatabaseFromANewerVersion) {
  {
    store::SqliteStoreOptions so;
    so.path = dir_.Sub("sched.db");
    ASSERT_OK(store::SqliteStore::Open(so).status());
  }
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(dir_.Sub("sched.db").c_str(), &db), SQLITE_OK);
  ASSERT_EQ(
      sqlite3_exec(db, "PRAGMA user_version=9999", nullptr, nullptr, nullptr),
      SQLITE_OK);
  sqlite3_close(db);
  std::string err;
  EXPECT_EQ(RunToExit(Args(), {}, &err), 1);
  EXPECT_THAT(err, HasSubstr("newer"));
}

}  // namespace
}  // namespace ftune
