// End to end: the real ftunectl binary against the real ftune-scheduler
// binary (port 0, a temporary database and storage root, an admin key file,
// one registered model). Checks what a user sees: stdout, stderr and the
// exit code of each command.
#include <google/protobuf/util/json_util.h>
#include <signal.h>
#include <sys/wait.h>
#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "client/commands.h"
#include "ftune/v1/admin.pb.h"
#include "ftune/v1/file.pb.h"
#include "ftune/v1/job.pb.h"
#include "ftune/v1/job_service.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/subprocess.h"
#include "tests/testing/temp_dir.h"

namespace ftune {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

const std::string kScheduler = std::string(FTUNE_BIN_DIR) + "/ftune-scheduler";
const std::string kCtl = std::string(FTUNE_BIN_DIR) + "/ftunectl";
constexpr char kAdminKey[] = "admin-key-for-the-ftunectl-test-0123";

constexpr char kValidChat[] =
    R"({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]})"
    "\n"
    R"({"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]})"
    "\n";
// Line 2 has a role the format does not know.
constexpr char kInvalidChat[] =
    R"({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]})"
    "\n"
    R"({"messages": [{"role": "user", "content": "hi"}, {"role": "bot", "content": "hello"}]})"
    "\n";

void WriteFile(const std::string& path, const std::string& text) {
  std::filesystem::create_directories(
      std::filesystem::path(path).parent_path());
  std::ofstream(path) << text;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

struct CtlResult {
  int exit_code = -1;
  std::string out;  // stdout, lines joined with "\n"
  std::string err;  // stderr
};

template <typename Message>
Message FromJson(const std::string& json) {
  Message message;
  auto status = google::protobuf::util::JsonStringToMessage(json, &message);
  EXPECT_TRUE(status.ok()) << status.ToString() << " in: " << json;
  return message;
}

class FtunectlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // A model directory with what the scheduler reads at start-up, and a
    // chat template so chat datasets can use it.
    WriteFile(dir_.Sub("storage/models/tiny/config.json"),
              R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 64,
                  "intermediate_size": 128, "num_hidden_layers": 2,
                  "num_attention_heads": 4, "num_key_value_heads": 2,
                  "vocab_size": 256, "max_position_embeddings": 512,
                  "torch_dtype": "float32"})");
    WriteFile(
        dir_.Sub("storage/models/tiny/tokenizer_config.json"),
        R"({"chat_template": "{% for m in messages %}<|im_start|>{{ m.role }}{% endfor %}"})");
    WriteFile(dir_.Sub("scheduler.json"), R"({"models": [{"name": "tiny"}]})");
    WriteFile(dir_.Sub("admin.key"), std::string(kAdminKey) + "\n");
    WriteFile(dir_.Sub("valid.jsonl"), kValidChat);
    WriteFile(dir_.Sub("invalid.jsonl"), kInvalidChat);

    ASSERT_OK(StartScheduler(&scheduler_, "127.0.0.1:0"));
  }

  // Starts the scheduler on `address` (port 0: any) over this test's
  // database and storage, and records the address it bound.
  absl::Status StartScheduler(testing::Subprocess* proc,
                              const std::string& address) {
    absl::Status started =
        proc->Start({kScheduler, "--grpc_address=" + address,
                     "--metrics_address=127.0.0.1:0", "--db=" + dir_.Sub("db"),
                     "--storage_root=" + dir_.Sub("storage"),
                     "--config=" + dir_.Sub("scheduler.json"),
                     "--admin_key_file=" + dir_.Sub("admin.key")},
                    {}, dir_.Sub("scheduler.stderr"));
    if (!started.ok()) return started;
    auto bound = proc->ReadLineWithPrefix("grpc_address=", absl::Seconds(30));
    if (!bound.ok()) {
      return absl::Status(bound.status().code(),
                          absl::StrCat(bound.status().message(), "\n",
                                       ReadFile(dir_.Sub("scheduler.stderr"))));
    }
    address_ = *bound;
    return absl::OkStatus();
  }

  // Runs ftunectl with `args` after --address; the environment carries no
  // FTUNE_* variables of the test's own, and the default config file is
  // looked for under the test's directory.
  CtlResult Ctl(const std::vector<std::string>& args,
                std::map<std::string, std::string> env = {}) {
    std::vector<std::string> with_address = {"--address", address_};
    with_address.insert(with_address.end(), args.begin(), args.end());
    return CtlWithoutAddress(with_address, std::move(env));
  }

  CtlResult CtlWithoutAddress(const std::vector<std::string>& args,
                              std::map<std::string, std::string> env = {}) {
    std::vector<std::string> argv = {kCtl};
    argv.insert(argv.end(), args.begin(), args.end());
    for (const char* name :
         {"FTUNE_ADDRESS", "FTUNE_ENDPOINT", "FTUNE_API_KEY",
          "FTUNE_API_KEY_FILE", "FTUNE_CONFIG", "FTUNE_PROFILE",
          "FTUNE_TIMEOUT", "FTUNE_OUTPUT", "FTUNE_TLS", "FTUNE_TLS_CA",
          "FTUNE_TLS_CERT", "FTUNE_TLS_KEY", "FTUNE_TLS_SERVER_NAME"}) {
      env.emplace(name, "");
    }
    env.emplace("XDG_CONFIG_HOME", dir_.Sub("xdg"));
    const std::string err_path = dir_.Sub("ctl.stderr");
    CtlResult result;
    testing::Subprocess ctl;
    absl::Status started = ctl.Start(argv, env, err_path);
    EXPECT_TRUE(started.ok()) << started;
    if (!started.ok()) return result;
    EXPECT_OK(ctl.ReadAll(absl::Seconds(60)));
    absl::StatusOr<int> status = ctl.Wait(absl::Seconds(30));
    EXPECT_TRUE(status.ok()) << status.status();
    if (status.ok() && WIFEXITED(*status)) {
      result.exit_code = WEXITSTATUS(*status);
    }
    result.out = absl::StrJoin(ctl.lines(), "\n");
    result.err = ReadFile(err_path);
    return result;
  }

  CtlResult Admin(std::vector<std::string> args) {
    args.insert(args.begin(), {"--api-key-file", dir_.Sub("admin.key")});
    return Ctl(args);
  }

  // A tenant and its API key, written to tenant.key; returns the tenant id.
  std::string MakeTenantWithKey(const std::string& name) {
    CtlResult tenant = Admin({"tenants", "create", name});
    EXPECT_EQ(tenant.exit_code, 0) << tenant.err;
    const std::string tenant_id(absl::StripAsciiWhitespace(tenant.out));
    EXPECT_THAT(tenant_id, ::testing::StartsWith("tenant-"));

    CtlResult key = Admin({"keys", "create", "--tenant", tenant_id,
                           "--description", "test", "--output=json"});
    EXPECT_EQ(key.exit_code, 0) << key.err;
    auto resp = FromJson<v1::CreateApiKeyResponse>(key.out);
    EXPECT_THAT(resp.secret(), ::testing::StartsWith("ftk_"));
    EXPECT_EQ(resp.api_key().tenant_id(), tenant_id);
    WriteFile(dir_.Sub("tenant.key"), resp.secret() + "\n");
    key_id_ = resp.api_key().id();
    return tenant_id;
  }

  CtlResult Tenant(std::vector<std::string> args) {
    args.insert(args.begin(), {"--api-key-file", dir_.Sub("tenant.key")});
    return Ctl(args);
  }

  std::string UploadValid() {
    CtlResult up = Tenant({"files", "upload", dir_.Sub("valid.jsonl")});
    EXPECT_EQ(up.exit_code, 0) << up.err;
    return std::string(absl::StripAsciiWhitespace(up.out));
  }

  testing::TempDir dir_;
  testing::Subprocess scheduler_;
  std::string address_;
  std::string key_id_;
};

TEST_F(FtunectlTest, StatusStillWorksWithEndpointFlag) {
  testing::Subprocess ctl;
  ASSERT_OK(ctl.Start({kCtl, "--endpoint", address_, "status"}));
  ASSERT_OK(ctl.ReadAll(absl::Seconds(30)));
  ASSERT_OK_AND_ASSIGN(int status, ctl.Wait(absl::Seconds(10)));
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_THAT(ctl.lines(), ::testing::Contains("health:   SERVING"));
}

TEST_F(FtunectlTest, TenantsKeysAndQuotas) {
  const std::string tenant_id = MakeTenantWithKey("search team");

  CtlResult list = Admin({"tenants", "list"});
  EXPECT_EQ(list.exit_code, 0) << list.err;
  EXPECT_THAT(list.out, HasSubstr(tenant_id));
  EXPECT_THAT(list.out, HasSubstr("search team"));

  CtlResult get = Admin({"tenants", "get", tenant_id});
  EXPECT_EQ(get.exit_code, 0) << get.err;
  EXPECT_THAT(get.out, HasSubstr("name:"));

  CtlResult set = Admin({"quotas", "set", tenant_id, "--max-queued-jobs", "5"});
  EXPECT_EQ(set.exit_code, 0) << set.err;
  CtlResult quota = Admin({"--output=json", "quotas", "get", tenant_id});
  EXPECT_EQ(quota.exit_code, 0) << quota.err;
  EXPECT_EQ(FromJson<v1::QuotaStatus>(quota.out).quota().max_queued_jobs(), 5);
  // Limits not given keep their value.
  EXPECT_EQ(Admin({"quotas", "set", tenant_id, "--max-gpus", "2"}).exit_code,
            0);
  quota = Admin({"--output=json", "quotas", "get", tenant_id});
  EXPECT_EQ(FromJson<v1::QuotaStatus>(quota.out).quota().max_queued_jobs(), 5);
  EXPECT_EQ(FromJson<v1::QuotaStatus>(quota.out).quota().max_gpus(), 2);

  CtlResult keys = Admin({"keys", "list"});
  EXPECT_EQ(keys.exit_code, 0) << keys.err;
  EXPECT_THAT(keys.out, HasSubstr(key_id_));

  // The tenant key works until it is revoked.
  EXPECT_EQ(Tenant({"files", "list"}).exit_code, 0);
  CtlResult revoke = Admin({"keys", "revoke", key_id_});
  EXPECT_EQ(revoke.exit_code, 0) << revoke.err;
  CtlResult after = Tenant({"files", "list"});
  EXPECT_EQ(after.exit_code, 1);
  EXPECT_THAT(after.err, HasSubstr("ftunectl: UNAUTHENTICATED"));

  // A tenant key cannot use the admin API.
  CtlResult denied = Tenant({"tenants", "list"});
  EXPECT_EQ(denied.exit_code, 1);
}

TEST_F(FtunectlTest, UploadListDownloadAndRejectInvalidFile) {
  MakeTenantWithKey("files");
  const std::string file_id = UploadValid();
  EXPECT_THAT(file_id, ::testing::StartsWith("file-"));

  CtlResult bad = Tenant({"files", "upload", dir_.Sub("invalid.jsonl")});
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_THAT(bad.err, HasSubstr("INVALID_ARGUMENT"));
  EXPECT_THAT(bad.err, HasSubstr("line 2"));
  EXPECT_THAT(bad.out, Not(HasSubstr("file-")));

  CtlResult list = Tenant({"files", "list"});
  EXPECT_EQ(list.exit_code, 0) << list.err;
  EXPECT_THAT(list.out, HasSubstr(file_id));
  EXPECT_THAT(list.out, HasSubstr("valid.jsonl"));

  CtlResult get = Tenant({"--output", "json", "files", "get", file_id});
  EXPECT_EQ(get.exit_code, 0) << get.err;
  v1::File file = FromJson<v1::File>(get.out);
  EXPECT_EQ(file.example_count(), 2);
  EXPECT_EQ(file.format(), v1::FILE_FORMAT_CHAT);

  CtlResult download = Tenant(
      {"files", "download", file_id, "-o", dir_.Sub("downloaded.jsonl")});
  EXPECT_EQ(download.exit_code, 0) << download.err;
  EXPECT_EQ(ReadFile(dir_.Sub("downloaded.jsonl")), kValidChat);

  EXPECT_EQ(Tenant({"files", "delete", file_id}).exit_code, 0);
  CtlResult gone = Tenant({"files", "get", file_id});
  EXPECT_EQ(gone.exit_code, 1);
  EXPECT_THAT(gone.err, HasSubstr("NOT_FOUND"));

  CtlResult missing = Tenant({"files", "upload", dir_.Sub("no-such.jsonl")});
  EXPECT_EQ(missing.exit_code, 2);
}

TEST_F(FtunectlTest, JobsCreateGetListCancel) {
  MakeTenantWithKey("jobs");
  const std::string file_id = UploadValid();

  CtlResult models = Tenant({"models", "list"});
  EXPECT_EQ(models.exit_code, 0) << models.err;
  EXPECT_THAT(models.out, HasSubstr("tiny"));

  const std::vector<std::string> create = {"jobs",
                                           "create",
                                           "--model",
                                           "tiny",
                                           "--training-file",
                                           file_id,
                                           "--gpus",
                                           "0",
                                           "--max-steps",
                                           "2",
                                           "--label",
                                           "team=search",
                                           "--request-id",
                                           "req-1"};
  CtlResult created = Tenant(create);
  ASSERT_EQ(created.exit_code, 0) << created.err;
  const std::string job_id(absl::StripAsciiWhitespace(created.out));
  EXPECT_THAT(job_id, ::testing::StartsWith("job-"));
  // Same request_id, same spec: the same job, nothing new.
  CtlResult again = Tenant(create);
  EXPECT_EQ(again.exit_code, 0) << again.err;
  EXPECT_EQ(absl::StripAsciiWhitespace(again.out), job_id);

  CtlResult get = Tenant({"jobs", "get", job_id});
  EXPECT_EQ(get.exit_code, 0) << get.err;
  EXPECT_THAT(get.out, HasSubstr("QUEUED"));
  EXPECT_THAT(get.out, HasSubstr("team=search"));

  CtlResult list = Tenant({"jobs", "list", "--state", "queued"});
  EXPECT_EQ(list.exit_code, 0) << list.err;
  EXPECT_THAT(list.out, HasSubstr(job_id));
  CtlResult filtered = Tenant({"jobs", "list", "--state", "succeeded"});
  EXPECT_EQ(filtered.exit_code, 0) << filtered.err;
  EXPECT_THAT(filtered.out, Not(HasSubstr(job_id)));

  CtlResult cancel = Tenant({"jobs", "cancel", job_id});
  EXPECT_EQ(cancel.exit_code, 0) << cancel.err;
  EXPECT_THAT(cancel.out, HasSubstr("CANCELLED"));
  CtlResult json = Tenant({"--output=json", "jobs", "get", job_id});
  EXPECT_EQ(FromJson<v1::Job>(json.out).state(), v1::JOB_STATE_CANCELLED);

  CtlResult events = Tenant({"jobs", "events", job_id});
  EXPECT_EQ(events.exit_code, 0) << events.err;
  EXPECT_THAT(events.out, HasSubstr("CREATED"));
  EXPECT_THAT(events.out, HasSubstr("QUEUED -> CANCELLED"));

  // Watching a cancelled job ends at once with exit code 1.
  CtlResult watch = Tenant({"jobs", "watch", job_id});
  EXPECT_EQ(watch.exit_code, 1) << watch.err;
  EXPECT_THAT(watch.err, HasSubstr("CANCELLED"));

  // Pausing a cancelled job is refused, naming its state.
  CtlResult pause = Tenant({"jobs", "pause", job_id});
  EXPECT_EQ(pause.exit_code, 1);
  EXPECT_THAT(pause.err, HasSubstr("FAILED_PRECONDITION"));
  EXPECT_THAT(pause.err, HasSubstr("current_state: JOB_STATE_CANCELLED"));

  // An unknown model is the server's INVALID_ARGUMENT, with the field.
  CtlResult bad = Tenant({"jobs", "create", "--model", "nope",
                          "--training-file", file_id, "--gpus", "0"});
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_THAT(bad.err, HasSubstr("field: spec.model"));
}

TEST_F(FtunectlTest, WatchPrintsLiveStateChangesAndExits1OnCancel) {
  MakeTenantWithKey("watch");
  const std::string file_id = UploadValid();
  CtlResult created = Tenant({"jobs", "create", "--model", "tiny",
                              "--training-file", file_id, "--gpus", "0"});
  ASSERT_EQ(created.exit_code, 0) << created.err;
  const std::string job_id(absl::StripAsciiWhitespace(created.out));

  testing::Subprocess watch;
  ASSERT_OK(watch.Start({kCtl, "--address", address_, "--api-key-file",
                         dir_.Sub("tenant.key"), "jobs", "watch", job_id},
                        {{"FTUNE_API_KEY", ""}}, dir_.Sub("watch.stderr")));
  // The first line is the job's current state, with a timestamp.
  ASSERT_OK_AND_ASSIGN(std::string first,
                       watch.ReadLineWithPrefix("2", absl::Seconds(30)));
  EXPECT_THAT(first, HasSubstr(job_id + " QUEUED"));

  EXPECT_EQ(Tenant({"jobs", "pause", job_id}).exit_code, 0);
  EXPECT_EQ(Tenant({"jobs", "cancel", job_id}).exit_code, 0);
  ASSERT_OK(watch.ReadAll(absl::Seconds(30)));
  ASSERT_OK_AND_ASSIGN(int status, watch.Wait(absl::Seconds(10)));
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 1);
  const std::string out = absl::StrJoin(watch.lines(), "\n");
  EXPECT_THAT(out, HasSubstr("QUEUED -> PAUSED"));
  EXPECT_THAT(out, HasSubstr("PAUSED -> CANCELLED"));
  EXPECT_THAT(ReadFile(dir_.Sub("watch.stderr")),
              HasSubstr(job_id + " CANCELLED"));
}

TEST_F(FtunectlTest, WatchReconnectsAfterSchedulerRestart) {
  MakeTenantWithKey("reconnect");
  const std::string file_id = UploadValid();
  CtlResult created = Tenant({"jobs", "create", "--model", "tiny",
                              "--training-file", file_id, "--gpus", "0"});
  ASSERT_EQ(created.exit_code, 0) << created.err;
  const std::string job_id(absl::StripAsciiWhitespace(created.out));

  testing::Subprocess watch;
  ASSERT_OK(watch.Start({kCtl, "--address", address_, "--api-key-file",
                         dir_.Sub("tenant.key"), "jobs", "watch", job_id},
                        {{"FTUNE_API_KEY", ""}}, dir_.Sub("watch.stderr")));
  ASSERT_OK_AND_ASSIGN(std::string first,
                       watch.ReadLineWithPrefix("2", absl::Seconds(30)));
  EXPECT_THAT(first, HasSubstr(job_id + " QUEUED"));

  // Stop the scheduler under the watch, then bring it back on the same port.
  ASSERT_OK(scheduler_.Signal(SIGTERM));
  ASSERT_OK(scheduler_.Wait(absl::Seconds(30)).status());
  const std::string address = address_;
  testing::Subprocess restarted;
  ASSERT_OK(StartScheduler(&restarted, address));

  EXPECT_EQ(Tenant({"jobs", "cancel", job_id}).exit_code, 0);
  ASSERT_OK(watch.ReadAll(absl::Seconds(60)));
  ASSERT_OK_AND_ASSIGN(int status, watch.Wait(absl::Seconds(10)));
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 1);
  const std::string err = ReadFile(dir_.Sub("watch.stderr"));
  EXPECT_THAT(err, HasSubstr("reconnecting from sequence"));
  EXPECT_THAT(err, HasSubstr(job_id + " CANCELLED"));
  EXPECT_THAT(absl::StrJoin(watch.lines(), "\n"),
              HasSubstr("QUEUED -> CANCELLED"));
}

TEST_F(FtunectlTest, LargeFileUploadsInChunks) {
  MakeTenantWithKey("large");
  // About 3 MiB: more than one 1 MiB chunk.
  std::string text;
  int lines = 0;
  while (text.size() < (3u << 20)) {
    text += kValidChat;
    lines += 2;
  }
  WriteFile(dir_.Sub("large.jsonl"), text);
  CtlResult up =
      Tenant({"--output=json", "files", "upload", dir_.Sub("large.jsonl")});
  ASSERT_EQ(up.exit_code, 0) << up.err;
  v1::File file = FromJson<v1::File>(up.out);
  EXPECT_EQ(file.size_bytes(), static_cast<int64_t>(text.size()));
  EXPECT_EQ(file.example_count(), lines);
}

TEST_F(FtunectlTest, ListFollowsPagesWithAll) {
  MakeTenantWithKey("pages");
  const std::string file_id = UploadValid();
  UploadValid();
  UploadValid();
  CtlResult files =
      Tenant({"--output=json", "files", "list", "--page-size", "1", "--all"});
  EXPECT_EQ(files.exit_code, 0) << files.err;
  EXPECT_EQ(FromJson<v1::ListFilesResponse>(files.out).files_size(), 3);
  CtlResult text = Tenant({"files", "list", "--page-size", "2"});
  EXPECT_EQ(text.exit_code, 0) << text.err;
  EXPECT_THAT(text.err, HasSubstr("(more: --page-token "));

  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(Tenant({"jobs", "create", "--model", "tiny", "--training-file",
                      file_id, "--gpus", "0"})
                  .exit_code,
              0);
  }
  CtlResult one = Tenant({"--output=json", "jobs", "list", "--page-size", "1"});
  EXPECT_EQ(one.exit_code, 0) << one.err;
  v1::ListJobsResponse page = FromJson<v1::ListJobsResponse>(one.out);
  EXPECT_EQ(page.jobs_size(), 1);
  EXPECT_FALSE(page.next_page_token().empty());

  CtlResult all =
      Tenant({"--output=json", "jobs", "list", "--page-size", "1", "--all"});
  EXPECT_EQ(all.exit_code, 0) << all.err;
  v1::ListJobsResponse every = FromJson<v1::ListJobsResponse>(all.out);
  EXPECT_EQ(every.jobs_size(), 3);
  EXPECT_TRUE(every.next_page_token().empty());
}

TEST_F(FtunectlTest, WrongKeyIsUnauthenticated) {
  WriteFile(dir_.Sub("wrong.key"),
            "ftk_thisisnotakeythisisnotakeythisisnotake\n");
  CtlResult result =
      Ctl({"--api-key-file", dir_.Sub("wrong.key"), "jobs", "list"});
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_THAT(result.err, HasSubstr("ftunectl: UNAUTHENTICATED"));

  // The same through $FTUNE_API_KEY.
  CtlResult env = Ctl({"jobs", "list"}, {{"FTUNE_API_KEY", "ftk_wrong"}});
  EXPECT_EQ(env.exit_code, 1);
  EXPECT_THAT(env.err, HasSubstr("UNAUTHENTICATED"));
}

TEST_F(FtunectlTest, UsageErrorsExitWith2) {
  CtlResult flag = Ctl({"jobs", "list", "--bogus"});
  EXPECT_EQ(flag.exit_code, 2);
  EXPECT_THAT(flag.err, HasSubstr("unknown flag --bogus"));
  CtlResult arg = Ctl({"jobs", "get"});
  EXPECT_EQ(arg.exit_code, 2);
  EXPECT_THAT(arg.err, HasSubstr("needs JOB_ID"));
  CtlResult help = Ctl({"jobs", "--help"});
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_THAT(help.out, HasSubstr("jobs watch"));
}

TEST_F(FtunectlTest, ConfigFileFlagEnvironmentPrecedence) {
  MakeTenantWithKey("config");
  const std::string file_id = UploadValid();
  // The key file is named relative to the config file.
  WriteFile(dir_.Sub("conf/ftune.yaml"),
            absl::StrCat("address: ", address_,
                         "\napi_key_file: ../tenant.key\noutput: json\n"));
  CtlResult from_file = CtlWithoutAddress(
      {"--config", dir_.Sub("conf/ftune.yaml"), "files", "get", file_id});
  ASSERT_EQ(from_file.exit_code, 0) << from_file.err;
  EXPECT_EQ(FromJson<v1::File>(from_file.out).id(), file_id);

  // The environment beats the file: $FTUNE_OUTPUT, $FTUNE_ADDRESS over an
  // unreachable address in the file.
  WriteFile(dir_.Sub("conf/unreachable.yaml"),
            "address: 127.0.0.1:1\napi_key_file: ../tenant.key\n"
            "output: json\n");
  CtlResult env =
      CtlWithoutAddress({"files", "get", file_id},
                        {{"FTUNE_CONFIG", dir_.Sub("conf/unreachable.yaml")},
                         {"FTUNE_ADDRESS", address_},
                         {"FTUNE_OUTPUT", "text"}});
  ASSERT_EQ(env.exit_code, 0) << env.err;
  EXPECT_THAT(env.out, HasSubstr("examples:"));

  // The flag beats both.
  CtlResult flag = CtlWithoutAddress(
      {"--address", address_, "--output", "yaml", "files", "get", file_id},
      {{"FTUNE_CONFIG", dir_.Sub("conf/unreachable.yaml")},
       {"FTUNE_ADDRESS", "127.0.0.1:1"},
       {"FTUNE_OUTPUT", "text"}});
  ASSERT_EQ(flag.exit_code, 0) << flag.err;
  EXPECT_EQ(YAML::Load(flag.out)["id"].as<std::string>(), file_id);

  // The file wins over the default; the default file needs no flag.
  WriteFile(dir_.Sub("xdg/ftune/config.yaml"),
            absl::StrCat("address: ", address_, "\n"));
  CtlResult fallback = CtlWithoutAddress({"status"});
  ASSERT_EQ(fallback.exit_code, 0) << fallback.err;
  EXPECT_THAT(fallback.out, HasSubstr("health:   SERVING"));
  EXPECT_THAT(fallback.out,
              HasSubstr("config:   " + dir_.Sub("xdg/ftune/config.yaml")));
}

TEST_F(FtunectlTest, BadConfigKeyIsAUsageErrorNamingFileKeyAndLine) {
  WriteFile(dir_.Sub("bad.yaml"), "output: json\nadress: 127.0.0.1:1\n");
  CtlResult bad = Ctl({"--config", dir_.Sub("bad.yaml"), "status"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_THAT(bad.err, HasSubstr("ftunectl: config " + dir_.Sub("bad.yaml") +
                                 ": line 2: unknown key \"adress\""));
  WriteFile(dir_.Sub("key.yaml"), "api_key: ftk_inline\n");
  CtlResult key = Ctl({"--config", dir_.Sub("key.yaml"), "status"});
  EXPECT_EQ(key.exit_code, 2);
  EXPECT_THAT(key.err, HasSubstr("api_key_file"));
  CtlResult profile =
      Ctl({"--config", dir_.Sub("bad.yaml"), "--profile", "prod", "--help"});
  EXPECT_EQ(profile.exit_code, 0) << "help reads no config";
}

TEST_F(FtunectlTest, YamlOutputParsesBack) {
  MakeTenantWithKey("yaml");
  const std::string file_id = UploadValid();

  CtlResult get = Tenant({"--output", "yaml", "files", "get", file_id});
  ASSERT_EQ(get.exit_code, 0) << get.err;
  YAML::Node file = YAML::Load(get.out);
  EXPECT_EQ(file["id"].as<std::string>(), file_id);
  EXPECT_EQ(file["exampleCount"].as<int>(), 2);
  EXPECT_EQ(file["format"].as<std::string>(), "FILE_FORMAT_CHAT");
  // The same content as JSON.
  CtlResult json = Tenant({"--output", "json", "files", "get", file_id});
  v1::File from_json = FromJson<v1::File>(json.out);
  EXPECT_EQ(file["sha256"].as<std::string>(), from_json.sha256());
  EXPECT_EQ(file["sizeBytes"].as<int64_t>(), from_json.size_bytes());

  CtlResult list = Tenant({"--output=yaml", "files", "list"});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  YAML::Node files = YAML::Load(list.out)["files"];
  ASSERT_TRUE(files.IsSequence());
  EXPECT_EQ(files[0]["id"].as<std::string>(), file_id);

  // `table` prints what text does.
  CtlResult table = Tenant({"--output=table", "files", "list"});
  CtlResult text = Tenant({"files", "list"});
  EXPECT_EQ(table.out, text.out);
  EXPECT_THAT(table.out, ::testing::StartsWith("ID "));

  // A stream: one YAML document per message.
  CtlResult created = Tenant({"jobs", "create", "--model", "tiny",
                              "--training-file", file_id, "--gpus", "0"});
  ASSERT_EQ(created.exit_code, 0) << created.err;
  const std::string job_id(absl::StripAsciiWhitespace(created.out));
  ASSERT_EQ(Tenant({"jobs", "cancel", job_id}).exit_code, 0);
  CtlResult watch =
      Tenant({"--output", "yaml", "jobs", "watch", job_id, "--after", "0"});
  EXPECT_EQ(watch.exit_code, 1) << watch.err;
  std::vector<YAML::Node> docs = YAML::LoadAll(watch.out);
  ASSERT_GE(docs.size(), 3u) << watch.out;
  for (const YAML::Node& doc : docs) EXPECT_TRUE(doc["sequence"]) << doc;
  EXPECT_TRUE(docs[0]["job"]) << "the stream opens with a snapshot";
  EXPECT_EQ(docs[1]["event"]["type"].as<std::string>(),
            "JOB_EVENT_TYPE_CREATED");
  EXPECT_EQ(docs.back()["job"]["state"].as<std::string>(),
            "JOB_STATE_CANCELLED");

  CtlResult status = Ctl({"--output", "yaml", "status"});
  ASSERT_EQ(status.exit_code, 0) << status.err;
  EXPECT_EQ(YAML::Load(status.out)["health"].as<std::string>(), "SERVING");
}

TEST_F(FtunectlTest, YamlSpecFileAndDryRun) {
  MakeTenantWithKey("spec");
  const std::string file_id = UploadValid();
  WriteFile(dir_.Sub("spec.yaml"),
            absl::StrCat("model: tiny\n"
                         "trainingFile: ",
                         file_id,
                         "\n"
                         "hyperparameters:\n"
                         "  maxSteps: 2\n"
                         "  learningRate: 1e-4\n"
                         "lora:\n"
                         "  rank: 4\n"
                         "  targetModules: [q_proj, v_proj]\n"
                         "resources:\n"
                         "  gpus: 0\n"
                         "labels:\n"
                         "  team: search\n"));

  // --dry-run checks and estimates, creating nothing.
  CtlResult dry = Tenant(
      {"jobs", "create", "--spec-file", dir_.Sub("spec.yaml"), "--dry-run"});
  ASSERT_EQ(dry.exit_code, 0) << dry.err;
  EXPECT_THAT(dry.out, HasSubstr("valid (nothing created)"));
  EXPECT_THAT(dry.out, HasSubstr("total_steps:"));
  CtlResult none = Tenant({"--output=json", "jobs", "list"});
  ASSERT_EQ(none.exit_code, 0) << none.err;
  EXPECT_EQ(FromJson<v1::ListJobsResponse>(none.out).jobs_size(), 0);
  // A dry run the server refuses exits 1 all the same.
  CtlResult refused =
      Tenant({"jobs", "create", "--spec-file", dir_.Sub("spec.yaml"), "--model",
              "nope", "--dry-run"});
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_THAT(refused.err, HasSubstr("field: spec.model"));

  CtlResult created = Tenant({"jobs", "create", "--spec-file",
                              dir_.Sub("spec.yaml"), "--label", "stage=dev"});
  ASSERT_EQ(created.exit_code, 0) << created.err;
  const std::string job_id(absl::StripAsciiWhitespace(created.out));
  v1::Job job =
      FromJson<v1::Job>(Tenant({"--output=json", "jobs", "get", job_id}).out);
  EXPECT_EQ(job.spec().hyperparameters().max_steps(), 2);
  EXPECT_EQ(job.spec().lora().rank(), 4);
  EXPECT_EQ(job.spec().lora().target_modules_size(), 2);
  EXPECT_EQ(job.spec().labels().at("team"), "search");
  EXPECT_EQ(job.spec().labels().at("stage"), "dev");

  // An unknown field is a usage error naming it; nothing is sent.
  WriteFile(dir_.Sub("typo.yaml"),
            absl::StrCat("model: tiny\ntrainingFile: ", file_id,
                         "\nhyperparameters:\n  maxStep: 2\n"));
  CtlResult typo =
      Tenant({"jobs", "create", "--spec-file", dir_.Sub("typo.yaml")});
  EXPECT_EQ(typo.exit_code, 2);
  EXPECT_THAT(typo.err, HasSubstr("line 4: unknown field "
                                  "\"hyperparameters.maxStep\""));
  CtlResult after = Tenant({"--output=json", "jobs", "list"});
  EXPECT_EQ(FromJson<v1::ListJobsResponse>(after.out).jobs_size(), 1);
}

TEST_F(FtunectlTest, MetricsCsvAndAdapterDownloadOfUnfinishedJob) {
  MakeTenantWithKey("csv");
  const std::string file_id = UploadValid();
  CtlResult created = Tenant({"jobs", "create", "--model", "tiny",
                              "--training-file", file_id, "--gpus", "0"});
  ASSERT_EQ(created.exit_code, 0) << created.err;
  const std::string job_id(absl::StripAsciiWhitespace(created.out));

  // No points yet: the header alone.
  CtlResult csv = Tenant({"jobs", "metrics", job_id, "--format", "csv"});
  ASSERT_EQ(csv.exit_code, 0) << csv.err;
  EXPECT_EQ(csv.out,
            "attempt,step,epoch,time,train_loss,eval_loss,learning_rate,"
            "tokens_per_second,grad_norm,peak_memory_bytes,sequence,"
            "eval_exact_match,eval_normalized_match,eval_token_f1,"
            "eval_pattern_match");
  EXPECT_EQ(Tenant({"jobs", "metrics", job_id, "--format", "xml"}).exit_code,
            2);
  EXPECT_EQ(
      Tenant({"jobs", "metrics", job_id, "-o", dir_.Sub("m.csv")}).exit_code,
      2);

  // Only a SUCCEEDED job has an adapter.
  CtlResult queued =
      Tenant({"adapters", "download", job_id, "-o", dir_.Sub("adapter")});
  EXPECT_EQ(queued.exit_code, 1);
  EXPECT_THAT(queued.err, HasSubstr(job_id + " is QUEUED; only a SUCCEEDED "
                                             "job has an adapter"));
  EXPECT_FALSE(std::filesystem::exists(dir_.Sub("adapter")));
  CtlResult unknown = Tenant({"adapters", "download", "job-nope"});
  EXPECT_EQ(unknown.exit_code, 1);

  // --no-progress is accepted (a pipe gets lines either way).
  ASSERT_EQ(Tenant({"jobs", "cancel", job_id}).exit_code, 0);
  CtlResult watch =
      Tenant({"jobs", "watch", job_id, "--after", "0", "--no-progress"});
  EXPECT_EQ(watch.exit_code, 1);
  EXPECT_THAT(watch.out, HasSubstr("QUEUED -> CANCELLED"));
}

TEST_F(FtunectlTest, UploadDrawsAProgressLineOnlyOnATerminal) {
  MakeTenantWithKey("progress");
  std::string text;
  while (text.size() < (3u << 20)) text += kValidChat;
  WriteFile(dir_.Sub("large.jsonl"), text);
  const std::vector<std::string> args = {
      "--address", address_, "--api-key-file",       dir_.Sub("tenant.key"),
      "files",     "upload", dir_.Sub("large.jsonl")};

  // In process, so stderr can pretend to be a terminal.
  client::TerminalInfo terminal;
  terminal.stderr_is_tty = true;
  terminal.columns = [] { return 80; };
  std::ostringstream out, err;
  ASSERT_EQ(client::RunFtunectl(args, {}, out, err, terminal), 0) << err.str();
  EXPECT_THAT(out.str(), ::testing::MatchesRegex("file-[a-z0-9]+\n"));
  // Redrawn in place, ending at 100% with the size (and the rate, when
  // the upload took long enough to tell one), kept.
  EXPECT_THAT(err.str(), ::testing::StartsWith("\r["));
  EXPECT_THAT(err.str(), HasSubstr("]  100%  3.0 MiB / 3.0 MiB  "));
  EXPECT_THAT(err.str(), ::testing::EndsWith("large.jsonl\033[K\n"));

  // Not a terminal: nothing on stderr.
  std::ostringstream piped_out, piped_err;
  ASSERT_EQ(client::RunFtunectl(args, {}, piped_out, piped_err), 0);
  EXPECT_EQ(piped_err.str(), "");
}

TEST(FtunectlUnreachableTest, ExitsWith3) {
  testing::TempDir dir;
  for (const std::vector<std::string>& command :
       std::vector<std::vector<std::string>>{
           {"jobs", "list"}, {"status"}, {"files", "list"}}) {
    std::vector<std::string> argv = {kCtl, "--address", "127.0.0.1:1",
                                     "--timeout", "2"};
    argv.insert(argv.end(), command.begin(), command.end());
    testing::Subprocess ctl;
    ASSERT_OK(ctl.Start(argv, {{"FTUNE_API_KEY", "ftk_x"}}, dir.Sub("stderr")));
    ASSERT_OK(ctl.ReadAll(absl::Seconds(30)));
    ASSERT_OK_AND_ASSIGN(int status, ctl.Wait(absl::Seconds(30)));
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 3) << absl::StrJoin(command, " ");
  }
}

}  // namespace
}  // namespace ftune
