// A hostile or broken worker against the real SchedulerServer
// (worker_fixture.h): every path it reports is confined to the job's
// directories when reported, and DownloadAdapterFile serves only regular
// files beneath the job's adapter directory, reached without following a
// symbolic link. None of the files planted around the storage root (the
// scheduler's admin credential, another tenant's upload) is ever sent.
#include <sys/stat.h>
#include <sys/types.h>

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/core/storage_layout.h"
#include "tests/server/rpc/worker_fixture.h"

namespace ftune::server::testing {
namespace {

using ::ftune::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kSecret[] = "admin-secret-that-must-never-leak-0123456789\n";

struct Download {
  absl::Status status;
  std::string data;
};

class HostileWorkerTest : public WorkerServiceTest {
 protected:
  void SetUp() override {
    WorkerServiceTest::SetUp();
    // Outside the storage root, next to it, as an operator might keep it.
    WriteFile(dir_.Sub("admin.key"), kSecret);
    // Inside the storage root, but another tenant's.
    other_ = MakeTenant("other");
    WriteFile(dir_.Sub("storage/files/" + other_.tenant_id + "/secret"),
              kSecret);
    ASSERT_OK_AND_ASSIGN(worker_, Register(CpuHost("cpu-1")));
    stream_ = Open(worker_);
    ASSERT_OK_AND_ASSIGN(v1::Job job, CreateJob(tenant_, CpuJob()));
    assign_ = Next(*stream_).assign_job();
    ASSERT_EQ(assign_.job_id(), job.id());
    adapter_dir_ = dir_.Sub("storage/" + assign_.adapter_dir());
    std::filesystem::create_directories(adapter_dir_);
  }

  v1::FinishAttemptRequest Succeeded() {
    v1::FinishAttemptRequest fin;
    fin.set_worker_id(worker_);
    fin.set_job_id(assign_.job_id());
    fin.set_attempt(assign_.attempt());
    fin.set_outcome(v1::ATTEMPT_OUTCOME_SUCCEEDED);
    fin.mutable_adapter()->set_path(assign_.adapter_dir());
    return fin;
  }
  static void AddFile(v1::FinishAttemptRequest& fin, const std::string& path,
                      int64_t size) {
    v1::AdapterFile* f = fin.mutable_adapter()->add_files();
    f->set_path(path);
    f->set_size_bytes(size);
    f->set_sha256(std::string(64, '0'));
  }

  Download Get(const std::string& path, int64_t offset = 0) {
    Download d;
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer " + tenant_.key);
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(30));
    v1::DownloadAdapterFileRequest req;
    req.set_job_id(assign_.job_id());
    req.set_path(path);
    req.set_offset(offset);
    auto reader = jobs_->DownloadAdapterFile(&ctx, req);
    v1::DownloadAdapterFileResponse msg;
    while (reader->Read(&msg)) d.data += msg.chunk();
    d.status = rpc::FromGrpcStatus(reader->Finish(), &ctx);
    return d;
  }

  TenantKey other_;
  std::string worker_;
  std::unique_ptr<Stream> stream_;
  v1::AssignJobCommand assign_;
  std::string adapter_dir_;
};

// Report time: FinishAttempt(SUCCEEDED) naming any file outside the adapter
// directory is refused, naming the field, and changes nothing.
TEST_F(HostileWorkerTest, AdapterFilePathsLeavingTheDirectoryAreRefused) {
  const std::vector<std::string> hostile = {
      "../../admin.key",
      "../../../../../../admin.key",
      "/etc/passwd",
      "a/../../x",
      "..",
      ".",
      "./adapter_config.json",
      "",
      "a//b",
      "a/",
      std::string("a\0b", 3),
      std::string(300, 'x'),
  };
  for (const std::string& path : hostile) {
    SCOPED_TRACE(path);
    v1::FinishAttemptRequest fin = Succeeded();
    AddFile(fin, "adapter_config.json", 2);
    AddFile(fin, "nested/ok.json", 2);
    AddFile(fin, path, 45);
    absl::Status st = Finish(fin).status();
    EXPECT_THAT(st, StatusIs(absl::StatusCode::kInvalidArgument,
                             HasSubstr("adapter.files[2].path")));
    EXPECT_EQ(InfoOf(st).field(), "adapter.files[2].path");
    EXPECT_LT(st.message().size(), 400u);
  }
  v1::FinishAttemptRequest negative = Succeeded();
  AddFile(negative, "adapter_config.json", -1);
  EXPECT_EQ(InfoOf(Finish(negative).status()).field(),
            "adapter.files[0].size_bytes");
  // Nothing changed: the job still runs and has no adapter.
  ASSERT_OK_AND_ASSIGN(v1::Job job, GetJob(assign_.job_id()));
  EXPECT_EQ(job.state(), v1::JOB_STATE_RUNNING);
  EXPECT_EQ(job.adapter().files_size(), 0);
}

// Checkpoint paths, reported or deleted, are confined the same way.
TEST_F(HostileWorkerTest, CheckpointPathsLeavingTheDirectoryAreRefused) {
  const std::string dir = assign_.checkpoint_dir();
  const std::vector<std::string> hostile = {
      dir + "/step-1/../../../../admin.key",
      dir + "/../adapter",
      dir + "/",
      dir + "//x",
      "/etc/passwd",
      "files/x",
      dir};
  int64_t batch = 1;
  for (const std::string& path : hostile) {
    SCOPED_TRACE(path);
    v1::ReportProgressRequest add = Batch(worker_, assign_, batch);
    add.add_checkpoints()->set_path(path);
    EXPECT_EQ(InfoOf(Report(add).status()).field(), "checkpoints[0].path");
    v1::ReportProgressRequest del = Batch(worker_, assign_, batch);
    del.add_deleted_checkpoint_paths(dir + "/step-1");
    del.add_deleted_checkpoint_paths(path);
    EXPECT_EQ(InfoOf(Report(del).status()).field(),
              "deleted_checkpoint_paths[1]");
  }
  v1::ReportProgressRequest ok = Batch(worker_, assign_, batch);
  ok.add_checkpoints()->set_path(dir + "/step-00000001");
  ok.mutable_checkpoints(0)->set_step(1);
  ASSERT_OK(Report(ok).status());
}

// Read time: what a worker planted in the adapter directory is not served
// unless it is a regular file there, and a tenant cannot name anything the
// record does not list.
TEST_F(HostileWorkerTest, DownloadServesOnlyRegularFilesBeneathTheAdapterDir) {
  namespace fs = std::filesystem;
  WriteFile(adapter_dir_ + "/adapter_config.json", "{}");
  WriteFile(adapter_dir_ + "/nested/ok.json", "[]");
  fs::create_symlink(dir_.Sub("admin.key"), adapter_dir_ + "/leak.txt");
  fs::create_symlink("../../../../../admin.key", adapter_dir_ + "/rel.txt");
  fs::create_directory_symlink(dir_.Sub("storage/files/" + other_.tenant_id),
                               adapter_dir_ + "/sub");
  ASSERT_EQ(::mkfifo((adapter_dir_ + "/pipe").c_str(), 0644), 0);
  fs::create_directory(adapter_dir_ + "/dir");

  const int64_t secret_size = sizeof(kSecret) - 1;
  v1::FinishAttemptRequest fin = Succeeded();
  AddFile(fin, "adapter_config.json", 2);
  AddFile(fin, "nested/ok.json", 2);
  AddFile(fin, "leak.txt", secret_size);
  AddFile(fin, "rel.txt", secret_size);
  AddFile(fin, "sub/secret", secret_size);
  AddFile(fin, "pipe", 0);
  AddFile(fin, "dir", 0);
  AddFile(fin, "gone.bin", 7);
  ASSERT_OK_AND_ASSIGN(v1::FinishAttemptResponse done, Finish(fin));
  ASSERT_EQ(done.job_state(), v1::JOB_STATE_SUCCEEDED);

  Download good = Get("adapter_config.json");
  ASSERT_OK(good.status);
  EXPECT_EQ(good.data, "{}");
  Download nested = Get("nested/ok.json");
  ASSERT_OK(nested.status);
  EXPECT_EQ(nested.data, "[]");

  for (const char* planted : {"leak.txt", "rel.txt", "sub/secret"}) {
    SCOPED_TRACE(planted);
    Download d = Get(planted);
    EXPECT_THAT(d.status, StatusIs(absl::StatusCode::kDataLoss,
                                   HasSubstr("symbolic link")));
    EXPECT_EQ(d.data, "");
  }
  for (const char* odd : {"pipe", "dir"}) {
    SCOPED_TRACE(odd);
    Download d = Get(odd);  // A FIFO must not hang the call.
    EXPECT_EQ(d.status.code(), absl::StatusCode::kDataLoss);
    EXPECT_EQ(d.data, "");
  }
  Download gone = Get("gone.bin");
  EXPECT_EQ(gone.status.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(InfoOf(gone.status).resource_id(), assign_.job_id());

  // Names the record does not list, or that leave the directory, whatever
  // the offset.
  for (const std::string& path :
       {std::string("../../../../../admin.key"), std::string("/etc/passwd"),
        std::string("nested/../adapter_config.json")}) {
    SCOPED_TRACE(path);
    Download d = Get(path, 0);
    EXPECT_EQ(d.status.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(InfoOf(d.status).field(), "path");
    EXPECT_EQ(d.data, "");
  }
  EXPECT_EQ(Get("unlisted.bin").status.code(), absl::StatusCode::kNotFound);
}

// A record written before report-time checks existed (or by a store
// bypassing them) is still never followed out of the directory: the
// download refuses the path before looking at storage.
TEST_F(HostileWorkerTest, AStoredHostilePathIsRefusedAtReadTime) {
  core::AttemptEnd end;
  end.outcome = core::AttemptOutcome::kSucceeded;
  end.adapter.path = assign_.adapter_dir();
  end.adapter.files.push_back({"../../../../../admin.key",
                               static_cast<int64_t>(sizeof(kSecret) - 1),
                               std::string(64, '0')});
  ASSERT_OK(
      store().EndAttempt(assign_.job_id(), assign_.attempt(), worker_, end));
  Download d = Get("../../../../../admin.key");
  EXPECT_EQ(d.status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(d.status.message()), Not(HasSubstr("admin-secret")));
  EXPECT_EQ(d.data, "");
}

// Issue 16, defect 4: a worker's labels obey the job spec's label rule
// (core/labels.h), and its free-text values are bounded.
TEST_F(HostileWorkerTest, RegistrationRefusesBadLabelsAndHugeValues) {
  auto with_labels = [](std::map<std::string, std::string> labels) {
    v1::WorkerCapabilities c = CpuHost("h");
    for (const auto& [k, v] : labels) (*c.mutable_labels())[k] = v;
    return c;
  };
  const std::vector<std::pair<std::map<std::string, std::string>, std::string>>
      bad = {
          {{{"../x", "v"}}, "capabilities.labels[\"../x\"]"},
          {{{"/abs", "v"}}, "capabilities.labels[\"/abs\"]"},
          {{{"%2e%2e", "v"}}, "capabilities.labels[\"%2e%2e\"]"},
          {{{"Zone", "v"}}, "capabilities.labels[\"Zone\"]"},
          {{{"zone", "../../etc"}}, "capabilities.labels[\"zone\"]"},
          {{{"zone", std::string(64, 'v')}}, "capabilities.labels[\"zone\"]"},
          {{{std::string(70000, 'k'), "v"}},
           "capabilities.labels[\"" + std::string(64, 'k') +
               "...\" (70000 bytes)]"},
      };
  for (const auto& [labels, field] : bad) {
    SCOPED_TRACE(field.substr(0, 100));
    absl::Status st = Register(with_labels(labels)).status();
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(InfoOf(st).field(), field);
    EXPECT_LT(st.message().size(), 500u);
  }
  std::map<std::string, std::string> many;
  for (int i = 0; i < 33; ++i) many[absl::StrCat("k", i)] = "v";
  EXPECT_EQ(InfoOf(Register(with_labels(many)).status()).field(),
            "capabilities.labels");
  v1::WorkerCapabilities long_host = CpuHost(std::string(70000, 'h'));
  absl::Status host = Register(long_host).status();
  EXPECT_EQ(InfoOf(host).field(), "capabilities.hostname");
  EXPECT_LT(host.message().size(), 500u);
  v1::WorkerCapabilities gpu = GpuHost("h", {0});
  gpu.mutable_gpus(0)->set_name(std::string(200, 'g'));
  EXPECT_EQ(InfoOf(Register(gpu).status()).field(),
            "capabilities.gpus[0].name");

  // Labels that follow the rule are kept as given.
  ASSERT_OK_AND_ASSIGN(
      std::string id,
      Register(with_labels({{"zone", "eu-1"}, {"node", "ip-10-0-1-23.ec2"}})));
  v1::ListWorkersRequest lreq;
  v1::ListWorkersResponse list;
  ASSERT_OK(Call(kAdminKey, [&](grpc::ClientContext* c) {
    return admin_->ListWorkers(c, lreq, &list);
  }));
  bool found = false;
  for (const v1::Worker& w : list.workers()) {
    if (w.id() != id) continue;
    found = true;
    EXPECT_EQ(w.capabilities().labels().at("node"), "ip-10-0-1-23.ec2");
  }
  EXPECT_TRUE(found);
}

}  // namespace
}  // namespace ftune::server::testing
