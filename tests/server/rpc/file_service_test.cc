// FileService over a real gRPC server, SQLite store and storage dir.
#include "server/rpc/file_service.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <atomic>
#include <cerrno>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/file_util.h"
#include "common/ids.h"
#include "common/sha256.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/server/rpc/stream_fixture.h"

namespace ftune::server::rpc::testing {
namespace {

using ::testing::HasSubstr;

struct UploadResult {
  grpc::Status status;
  v1::File file;
  v1::ErrorInfo info;
};

std::string ChatLine(int i) {
  return absl::StrCat(R"({"messages":[{"role":"user","content":"question )", i,
                      R"("},{"role":"assistant","content":"answer )", i,
                      R"("}]})", "\n");
}

std::string ChatDataset(int lines) {
  std::string out;
  for (int i = 0; i < lines; ++i) out += ChatLine(i);
  return out;
}

class FileServiceTest : public RpcTest {
 protected:
  void SetUp() override {
    RpcTest::SetUp();
    alice_ = MakeTenant("alice");
    bob_ = MakeTenant("bob");
  }

  UploadResult Upload(
      const TestTenant& t, const std::string& contents, size_t chunk = 1000,
      v1::FilePurpose purpose = v1::FILE_PURPOSE_FINE_TUNE_TRAIN,
      const std::string& filename = "train.jsonl",
      const std::string& expected_sha256 = "",
      std::optional<int64_t> expected_size = std::nullopt) {
    grpc::ClientContext ctx;
    Authorize(&ctx, t);
    UploadResult out;
    auto writer = files_->UploadFile(&ctx, &out.file);
    v1::UploadFileRequest req;
    req.mutable_metadata()->set_filename(filename);
    req.mutable_metadata()->set_purpose(purpose);
    req.mutable_metadata()->set_expected_sha256(expected_sha256);
    if (expected_size)
      req.mutable_metadata()->set_expected_size_bytes(*expected_size);
    bool ok = writer->Write(req);
    for (size_t pos = 0; ok && pos < contents.size(); pos += chunk) {
      v1::UploadFileRequest c;
      c.set_chunk(contents.substr(pos, chunk));
      ok = writer->Write(c);
    }
    writer->WritesDone();
    out.status = writer->Finish();
    out.info = ErrorInfoOf(ctx);
    return out;
  }

  static v1::ErrorInfo ErrorInfoOf(const grpc::ClientContext& ctx) {
    v1::ErrorInfo info;
    const auto& md = ctx.GetServerTrailingMetadata();
    auto it = md.find(kErrorInfoMetadataKey);
    if (it != md.end()) {
      info.ParseFromArray(it->second.data(),
                          static_cast<int>(it->second.size()));
    }
    return info;
  }

  // Entries in the tenant's storage dir (published files and temp files).
  std::vector<std::string> TenantDirEntries(const TestTenant& t) {
    std::vector<std::string> out;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(
             std::filesystem::path(storage_root_) / "files" / t.id, ec)) {
      out.push_back(e.path().filename().string());
    }
    return out;
  }

  grpc::Status GetFile(const TestTenant& t, const std::string& id,
                       v1::File* out) {
    grpc::ClientContext ctx;
    Authorize(&ctx, t);
    v1::GetFileRequest req;
    req.set_file_id(id);
    return files_->GetFile(&ctx, req, out);
  }

  grpc::Status Download(const TestTenant& t, const std::string& id,
                        int64_t offset, std::string* out,
                        size_t* max_chunk = nullptr) {
    grpc::ClientContext ctx;
    Authorize(&ctx, t);
    v1::DownloadFileRequest req;
    req.set_file_id(id);
    req.set_offset(offset);
    auto reader = files_->DownloadFile(&ctx, req);
    v1::DownloadFileResponse resp;
    while (reader->Read(&resp)) {
      EXPECT_EQ(resp.offset(), offset + static_cast<int64_t>(out->size()));
      if (max_chunk) *max_chunk = std::max(*max_chunk, resp.chunk().size());
      *out += resp.chunk();
    }
    return reader->Finish();
  }

  grpc::Status Delete(const TestTenant& t, const std::string& id,
                      v1::ErrorInfo* info = nullptr) {
    grpc::ClientContext ctx;
    Authorize(&ctx, t);
    v1::DeleteFileRequest req;
    req.set_file_id(id);
    google::protobuf::Empty empty;
    grpc::Status s = files_->DeleteFile(&ctx, req, &empty);
    if (info) *info = ErrorInfoOf(ctx);
    return s;
  }

  TestTenant alice_, bob_;
};

TEST_F(FileServiceTest, UploadStoresValidatedFileAtLayoutPath) {
  const std::string data = ChatDataset(200);
  UploadResult r =
      Upload(alice_, data, /*chunk=*/777, v1::FILE_PURPOSE_FINE_TUNE_TRAIN,
             "train.jsonl", Sha256Hex(data), static_cast<int64_t>(data.size()));
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_TRUE(IsValidId(r.file.id(), "file")) << r.file.id();
  EXPECT_EQ(r.file.tenant_id(), alice_.id);
  EXPECT_EQ(r.file.filename(), "train.jsonl");
  EXPECT_EQ(r.file.purpose(), v1::FILE_PURPOSE_FINE_TUNE_TRAIN);
  EXPECT_EQ(r.file.size_bytes(), static_cast<int64_t>(data.size()));
  EXPECT_EQ(r.file.sha256(), Sha256Hex(data));
  EXPECT_EQ(r.file.status(), v1::FILE_STATUS_VALIDATED);
  EXPECT_EQ(r.file.format(), v1::FILE_FORMAT_CHAT);
  EXPECT_EQ(r.file.example_count(), 200);
  EXPECT_GT(r.file.create_time().seconds(), 0);

  auto on_disk = ReadFile(JoinPath(
      storage_root_, absl::StrCat("files/", alice_.id, "/", r.file.id())));
  ASSERT_OK(on_disk);
  EXPECT_EQ(*on_disk, data);
  EXPECT_THAT(TenantDirEntries(alice_),
              ::testing::ElementsAre(r.file.id()));  // No temp file left.

  v1::File got;
  ASSERT_TRUE(GetFile(alice_, r.file.id(), &got).ok());
  EXPECT_EQ(got.SerializeAsString(), r.file.SerializeAsString());
}

TEST_F(FileServiceTest, DetectsEachFormat) {
  UploadResult pc = Upload(alice_,
                           R"({"prompt":"a","completion":"b"})"
                           "\n",
                           1000, v1::FILE_PURPOSE_FINE_TUNE_VALIDATION);
  ASSERT_TRUE(pc.status.ok()) << pc.status.error_message();
  EXPECT_EQ(pc.file.format(), v1::FILE_FORMAT_PROMPT_COMPLETION);
  EXPECT_EQ(pc.file.purpose(), v1::FILE_PURPOSE_FINE_TUNE_VALIDATION);
  UploadResult text = Upload(alice_, "{\"text\":\"x\"}\r\n{\"text\":\"y\"}");
  ASSERT_TRUE(text.status.ok()) << text.status.error_message();
  EXPECT_EQ(text.file.format(), v1::FILE_FORMAT_TEXT);
  EXPECT_EQ(text.file.example_count(), 2);
}

struct BadCase {
  const char* name;
  std::string contents;
  int64_t line;
  std::string field;   // "" when no single field is at fault.
  std::string reason;  // Substring of the message.
};

TEST_F(FileServiceTest, EveryValidationErrorNamesLineAndField) {
  const std::string good = ChatLine(0);
  const std::vector<BadCase> cases = {
      {"unknown role",
       good + R"({"messages":[{"role":"bot","content":"x"}]})"
              "\n",
       2, "messages[0].role", "unknown role"},
      {"content not a string",
       good + good +
           R"({"messages":[{"role":"user","content":"q"},{"role":"assistant","content":5}]})",
       3, "messages[1].content", "content"},
      {"no assistant", R"({"messages":[{"role":"user","content":"q"}]})", 1,
       "messages", "assistant"},
      {"system not first",
       good +
           R"({"messages":[{"role":"user","content":"q"},{"role":"system","content":"s"},{"role":"assistant","content":"a"}]})",
       2, "messages[1].role", "system"},
      {"empty completion", R"({"prompt":"p","completion":""})", 1, "completion",
       "empty"},
      {"empty text", "{\"text\":\"a\"}\n{\"text\":\"\"}\n", 2, "text", "empty"},
      {"invalid json", good + "{\"text\": oops}\n", 2, "", "invalid JSON"},
      {"not an object", "[1,2]\n", 1, "", "JSON object"},
      {"mixed formats", good + "{\"text\":\"t\"}\n", 2, "", "format"},
      {"invalid utf8", std::string("{\"text\":\"a\xff\"}\n"), 1, "", "UTF-8"},
      {"no examples", "\n  \n", 0, "", "no examples"},
  };
  for (const BadCase& c : cases) {
    SCOPED_TRACE(c.name);
    UploadResult r = Upload(alice_, c.contents);
    EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << r.status.error_message();
    EXPECT_EQ(r.info.line(), c.line);
    EXPECT_EQ(r.info.field(), c.field);
    EXPECT_THAT(r.status.error_message(), HasSubstr(c.reason));
    if (c.line > 0) {
      EXPECT_THAT(r.status.error_message(),
                  HasSubstr(absl::StrCat("line ", c.line, ": ", c.field)));
    }
  }
  EXPECT_THAT(TenantDirEntries(alice_), ::testing::IsEmpty());
  grpc::ClientContext ctx;
  Authorize(&ctx, alice_);
  v1::ListFilesResponse list;
  ASSERT_TRUE(files_->ListFiles(&ctx, v1::ListFilesRequest(), &list).ok());
  EXPECT_EQ(list.files_size(), 0);
}

// Issue 16, defect 3: a line's values are quoted short in the status (a
// default client refuses trailing metadata above 8 KiB and would report
// another error).
TEST_F(FileServiceTest, HugeValuesInLinesAreQuotedShort) {
  const std::string huge(70000, 'r');
  for (const std::string& contents :
       {R"({"messages":[{"role":")" + huge + R"(","content":"x"}]})",
        R"({"messages":[{"role":"assistant","content":"x","weight":")" + huge +
            R"("}]})",
        R"({"text": )" + huge + "}"}) {
    UploadResult r = Upload(alice_, contents, /*chunk=*/65536);
    EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << r.status.error_message().substr(0, 200);
    EXPECT_EQ(r.info.line(), 1);
    EXPECT_LT(r.status.error_message().size(), 1024u);
  }
  UploadResult role = Upload(
      alice_, R"({"messages":[{"role":")" + huge + R"(","content":"x"}]})");
  EXPECT_THAT(role.status.error_message(), HasSubstr("(70000 bytes)"));
}

TEST_F(FileServiceTest, RejectsBadMetadataAndChecksums) {
  const std::string data = ChatDataset(3);
  UploadResult r = Upload(alice_, data, 1000, v1::FILE_PURPOSE_UNSPECIFIED);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(r.info.field(), "metadata.purpose");

  r = Upload(alice_, data, 1000, v1::FILE_PURPOSE_FINE_TUNE_TRAIN, "a/b");
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(r.info.field(), "metadata.filename");

  r = Upload(alice_, data, 1000, v1::FILE_PURPOSE_FINE_TUNE_TRAIN, "t.jsonl",
             Sha256Hex("something else"));
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(r.info.field(), "metadata.expected_sha256");

  r = Upload(alice_, data, 1000, v1::FILE_PURPOSE_FINE_TUNE_TRAIN, "t.jsonl",
             "", static_cast<int64_t>(data.size()) + 1);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(r.info.field(), "metadata.expected_size_bytes");

  r = Upload(alice_, "");
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  {  // First message is a chunk, not metadata.
    grpc::ClientContext ctx;
    Authorize(&ctx, alice_);
    v1::File file;
    auto writer = files_->UploadFile(&ctx, &file);
    v1::UploadFileRequest c;
    c.set_chunk(data);
    writer->Write(c);
    writer->WritesDone();
    grpc::Status s = writer->Finish();
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_EQ(ErrorInfoOf(ctx).field(), "metadata");
  }
  EXPECT_THAT(TenantDirEntries(alice_), ::testing::IsEmpty());
}

TEST_F(FileServiceTest, RequiresTenantKey) {
  grpc::ClientContext ctx;
  v1::File file;
  v1::GetFileRequest req;
  req.set_file_id("file-aaaaaaaaaaaaaaaaaaaaaaaa");
  EXPECT_EQ(files_->GetFile(&ctx, req, &file).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  TestTenant bogus{alice_.id, "ftk_" + std::string(40, 'a')};
  UploadResult r = Upload(bogus, ChatDataset(1));
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
}

class FileLimitsTest : public FileServiceTest {
 protected:
  void SetUp() override {
    file_options_.max_file_size_bytes = 1000;
    file_options_.max_chunk_size_bytes = 300;
    FileServiceTest::SetUp();
  }
};

TEST_F(FileLimitsTest, ChunkAndFileLimitsAreResourceExhausted) {
  const std::string data = ChatDataset(30);  // > 1000 bytes
  ASSERT_GT(data.size(), 1000u);
  UploadResult r = Upload(alice_, data, /*chunk=*/301);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(r.info.quota(), "max_chunk_size_bytes");
  EXPECT_EQ(r.info.limit(), 300);

  r = Upload(alice_, data, /*chunk=*/300);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(r.info.quota(), "max_file_size_bytes");
  EXPECT_EQ(r.info.limit(), 1000);

  r = Upload(alice_, ChatDataset(1), 300, v1::FILE_PURPOSE_FINE_TUNE_TRAIN,
             "t.jsonl", "", /*expected_size=*/5000);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(r.info.quota(), "max_file_size_bytes");

  // Exactly at the limits is fine.
  std::string fits = ChatDataset(1);
  fits += std::string(1000 - fits.size(), '\n');
  r = Upload(alice_, fits, 300);
  EXPECT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.file.size_bytes(), 1000);
  EXPECT_EQ(TenantDirEntries(alice_).size(), 1u);
}

// A file where files/ or the tenant's directory should be is storage that
// ftune did not write: DATA_LOSS naming the path below the root, nothing
// stored, and uploads work again once it is gone.
TEST_F(FileServiceTest, FileInTheWayOfTheTenantDirectoryIsDataLoss) {
  const std::string data = ChatDataset(3);
  std::filesystem::create_directories(storage_root_);
  std::ofstream(storage_root_ + "/files") << "in the way";
  ASSERT_TRUE(std::filesystem::is_regular_file(storage_root_ + "/files"));
  UploadResult r = Upload(alice_, data);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::DATA_LOSS)
      << r.status.error_message();
  EXPECT_THAT(r.status.error_message(),
              HasSubstr("files/" + alice_.id + ": a file is in the way"));
  EXPECT_THAT(r.status.error_message(),
              ::testing::Not(HasSubstr(storage_root_)));
  std::filesystem::remove(storage_root_ + "/files");

  std::filesystem::create_directories(storage_root_ + "/files");
  std::ofstream(storage_root_ + "/files/" + bob_.id) << "in the way";
  r = Upload(bob_, data);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::DATA_LOSS)
      << r.status.error_message();
  EXPECT_TRUE(std::filesystem::is_regular_file(storage_root_ + "/files/" +
                                               bob_.id));  // Left alone.
  EXPECT_THAT(store_->ListFiles(bob_.id, "", 0, "")->items,
              ::testing::IsEmpty());

  std::filesystem::remove(storage_root_ + "/files/" + bob_.id);
  r = Upload(bob_, data);
  EXPECT_TRUE(r.status.ok()) << r.status.error_message();
}

// fsync(2) failing (injected) on the temp file or on the directory after
// the rename: UNAVAILABLE (ENOSPC: RESOURCE_EXHAUSTED), never INTERNAL;
// nothing stays on storage or in the store; the next upload works.
class FileFsyncFaultTest : public FileServiceTest {
 protected:
  void SetUp() override {
    file_options_.fsync_for_testing = [this](int fd) {
      struct stat st;
      const bool is_dir = ::fstat(fd, &st) == 0 && S_ISDIR(st.st_mode);
      const int err = is_dir ? fail_dir_errno_.load() : fail_file_errno_.load();
      if (err != 0) {
        errno = err;
        return -1;
      }
      return ::fsync(fd);
    };
    FileServiceTest::SetUp();
  }
  std::atomic<int> fail_file_errno_{0};
  std::atomic<int> fail_dir_errno_{0};
};

TEST_F(FileFsyncFaultTest, FailingFsyncIsUnavailableAndStoresNothing) {
  const std::string data = ChatDataset(3);
  fail_file_errno_ = EIO;
  UploadResult r = Upload(alice_, data);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::UNAVAILABLE)
      << r.status.error_message();
  EXPECT_THAT(r.status.error_message(), HasSubstr("cannot fsync"));
  EXPECT_THAT(TenantDirEntries(alice_), ::testing::IsEmpty());

  fail_file_errno_ = 0;
  fail_dir_errno_ = EIO;
  r = Upload(alice_, data);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::UNAVAILABLE)
      << r.status.error_message();
  EXPECT_THAT(r.status.error_message(),
              HasSubstr("cannot fsync files/" + alice_.id));
  EXPECT_THAT(TenantDirEntries(alice_), ::testing::IsEmpty());

  fail_dir_errno_ = ENOSPC;
  r = Upload(alice_, data);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << r.status.error_message();
  EXPECT_THAT(TenantDirEntries(alice_), ::testing::IsEmpty());
  EXPECT_THAT(store_->ListFiles(alice_.id, "", 0, "")->items,
              ::testing::IsEmpty());

  fail_dir_errno_ = 0;
  r = Upload(alice_, data);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_THAT(TenantDirEntries(alice_), ::testing::ElementsAre(r.file.id()));
}

TEST_F(FileServiceTest, AbortedUploadLeavesNothing) {
  grpc::ClientContext ctx;
  Authorize(&ctx, alice_);
  v1::File file;
  auto writer = files_->UploadFile(&ctx, &file);
  v1::UploadFileRequest req;
  req.mutable_metadata()->set_filename("t.jsonl");
  req.mutable_metadata()->set_purpose(v1::FILE_PURPOSE_FINE_TUNE_TRAIN);
  ASSERT_TRUE(writer->Write(req));
  v1::UploadFileRequest c;
  c.set_chunk(ChatDataset(50));
  ASSERT_TRUE(writer->Write(c));
  // Wait until the server has the temp file open, then abort.
  for (int i = 0; i < 500 && TenantDirEntries(alice_).empty(); ++i) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_EQ(TenantDirEntries(alice_).size(), 1u);
  ctx.TryCancel();
  EXPECT_EQ(writer->Finish().error_code(), grpc::StatusCode::CANCELLED);
  for (int i = 0; i < 500 && !TenantDirEntries(alice_).empty(); ++i) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_THAT(TenantDirEntries(alice_), ::testing::IsEmpty());
  auto page = store_->ListFiles(alice_.id, "", 0, "");
  ASSERT_OK(page);
  EXPECT_TRUE(page->items.empty());
}

TEST_F(FileServiceTest, DownloadRoundTripsInChunks) {
  std::string data;
  for (int i = 0; data.size() < (5u << 19); ++i) data += ChatLine(i);  // 2.5MiB
  UploadResult r = Upload(alice_, data, /*chunk=*/1 << 20);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  std::string got;
  size_t max_chunk = 0;
  ASSERT_TRUE(Download(alice_, r.file.id(), 0, &got, &max_chunk).ok());
  EXPECT_EQ(got, data);
  EXPECT_EQ(max_chunk, 1u << 20);

  got.clear();
  ASSERT_TRUE(Download(alice_, r.file.id(), 1234567, &got).ok());
  EXPECT_EQ(got, data.substr(1234567));
  got.clear();
  ASSERT_TRUE(
      Download(alice_, r.file.id(), static_cast<int64_t>(data.size()), &got)
          .ok());
  EXPECT_TRUE(got.empty());
  EXPECT_EQ(
      Download(alice_, r.file.id(), static_cast<int64_t>(data.size()) + 1, &got)
          .error_code(),
      grpc::StatusCode::OUT_OF_RANGE);
  EXPECT_EQ(Download(alice_, r.file.id(), -1, &got).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(FileServiceTest, DeleteRefusedWhileLiveJobUsesFile) {
  UploadResult r = Upload(alice_, ChatDataset(5));
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  core::Job job;
  job.tenant_id = alice_.id;
  job.model = "tiny";
  job.training_file_id = r.file.id();
  auto created = store_->CreateJob(job);
  ASSERT_OK(created);

  v1::ErrorInfo info;
  grpc::Status s = Delete(alice_, r.file.id(), &info);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(), HasSubstr(created->job.id));
  EXPECT_EQ(info.resource_id(), created->job.id);
  EXPECT_EQ(info.current_state(), "JOB_STATE_QUEUED");
  v1::File still;
  EXPECT_TRUE(GetFile(alice_, r.file.id(), &still).ok());

  ASSERT_OK(store_->CancelJob(alice_.id, created->job.id, "test"));
  ASSERT_TRUE(Delete(alice_, r.file.id()).ok());
  EXPECT_EQ(GetFile(alice_, r.file.id(), &still).error_code(),
            grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(TenantDirEntries(alice_), ::testing::IsEmpty());
  EXPECT_EQ(Delete(alice_, r.file.id()).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

TEST_F(FileServiceTest, OtherTenantsFileIsNotFound) {
  UploadResult r = Upload(alice_, ChatDataset(5));
  ASSERT_TRUE(r.status.ok());
  const std::string never = NewId("file");
  for (const std::string& id : {r.file.id(), never}) {
    SCOPED_TRACE(id);
    v1::File f;
    grpc::Status get = GetFile(bob_, id, &f);
    EXPECT_EQ(get.error_code(), grpc::StatusCode::NOT_FOUND);
    std::string bytes;
    EXPECT_EQ(Download(bob_, id, 0, &bytes).error_code(),
              grpc::StatusCode::NOT_FOUND);
    EXPECT_EQ(Delete(bob_, id).error_code(), grpc::StatusCode::NOT_FOUND);
  }
  // Same message shape for both, so the answer reveals nothing.
  v1::File f;
  EXPECT_EQ(GetFile(bob_, r.file.id(), &f).error_message(),
            absl::StrCat("file ", r.file.id(), " not found"));
  grpc::ClientContext ctx;
  Authorize(&ctx, bob_);
  v1::ListFilesResponse list;
  ASSERT_TRUE(files_->ListFiles(&ctx, v1::ListFilesRequest(), &list).ok());
  EXPECT_EQ(list.files_size(), 0);
  EXPECT_TRUE(GetFile(alice_, r.file.id(), &f).ok());
  v1::File bad;
  EXPECT_EQ(GetFile(alice_, "nope", &bad).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(FileServiceTest, ListFilesPaginatesNewestFirst) {
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) {
    UploadResult r = Upload(alice_, ChatDataset(1), 1000,
                            i % 2 ? v1::FILE_PURPOSE_FINE_TUNE_VALIDATION
                                  : v1::FILE_PURPOSE_FINE_TUNE_TRAIN);
    ASSERT_TRUE(r.status.ok());
    ids.insert(ids.begin(), r.file.id());  // Newest first.
  }
  std::vector<std::string> seen;
  std::string token;
  int pages = 0;
  do {
    grpc::ClientContext ctx;
    Authorize(&ctx, alice_);
    v1::ListFilesRequest req;
    req.set_page_size(2);
    req.set_page_token(token);
    v1::ListFilesResponse resp;
    ASSERT_TRUE(files_->ListFiles(&ctx, req, &resp).ok());
    for (const auto& f : resp.files()) seen.push_back(f.id());
    token = resp.next_page_token();
    ++pages;
  } while (!token.empty() && pages < 10);
  EXPECT_EQ(seen, ids);
  EXPECT_EQ(pages, 3);

  // Purpose filter, and a token is bound to it.
  grpc::ClientContext ctx;
  Authorize(&ctx, alice_);
  v1::ListFilesRequest req;
  req.set_page_size(1);
  req.set_purpose(v1::FILE_PURPOSE_FINE_TUNE_VALIDATION);
  v1::ListFilesResponse resp;
  ASSERT_TRUE(files_->ListFiles(&ctx, req, &resp).ok());
  ASSERT_EQ(resp.files_size(), 1);
  EXPECT_EQ(resp.files(0).purpose(), v1::FILE_PURPOSE_FINE_TUNE_VALIDATION);
  ASSERT_FALSE(resp.next_page_token().empty());
  grpc::ClientContext ctx2;
  Authorize(&ctx2, alice_);
  req.set_purpose(v1::FILE_PURPOSE_FINE_TUNE_TRAIN);
  req.set_page_token(resp.next_page_token());
  EXPECT_EQ(files_->ListFiles(&ctx2, req, &resp).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  grpc::ClientContext ctx3;
  Authorize(&ctx3, alice_);
  v1::ListFilesRequest big;
  big.set_page_size(1001);
  EXPECT_EQ(files_->ListFiles(&ctx3, big, &resp).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(FileServiceTest, StaleTempFilesAreRemovedAtStartup) {
  const std::string dir = JoinPath(storage_root_, "files/" + alice_.id);
  ASSERT_OK(MakeDirs(dir));
  ASSERT_OK(WriteFileAtomically(JoinPath(dir, ".upload-deadbeef"), "x"));
  FileService again(store_.get(), auth_.get(), file_options_);
  EXPECT_THAT(TenantDirEntries(alice_), ::testing::IsEmpty());
}

}  // namespace
}  // namespace ftune::server::rpc::testing
