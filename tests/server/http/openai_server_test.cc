// The OpenAI-compatible HTTP API of a real SchedulerServer (SQLite file,
// storage dir, loopback port 0; tests/server/rpc/rpc_fixture.h) driven over
// real HTTP: files and jobs through the same rules as gRPC, OpenAI's
// objects and errors, refusals that create nothing, and tenants that
// cannot tell another tenant's ids from ids that never existed. No worker:
// jobs stay queued (the node test in tests/clients runs them).
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/server/rpc/rpc_fixture.h"
#include "tests/testing/http_client.h"

namespace ftune::server::testing {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;
using Headers = std::vector<std::pair<std::string, std::string>>;

constexpr char kBoundary[] = "ftune-test-boundary-7d1e";

std::string ChatJsonl(int n) {
  std::string out;
  for (int i = 0; i < n; ++i) {
    absl::StrAppend(&out, R"({"messages": [{"role": "user", "content": "q)", i,
                    R"("}, {"role": "assistant", "content": "a)", i, "\"}]}\n");
  }
  return out;
}

// A multipart/form-data body: (name, filename or "", content) parts.
std::string Multipart(
    const std::vector<std::tuple<std::string, std::string, std::string>>&
        parts) {
  std::string body;
  for (const auto& [name, filename, content] : parts) {
    absl::StrAppend(&body, "--", kBoundary,
                    "\r\nContent-Disposition: form-data; name=\"", name, "\"");
    if (!filename.empty()) {
      absl::StrAppend(&body, "; filename=\"", filename,
                      "\"\r\nContent-Type: application/octet-stream");
    }
    absl::StrAppend(&body, "\r\n\r\n", content, "\r\n");
  }
  absl::StrAppend(&body, "--", kBoundary, "--\r\n");
  return body;
}

struct Reply {
  int status = 0;
  json body;
  std::string raw;
};

class OpenAiServerTest : public RpcTest {
 protected:
  OpenAiServerTest() { http_address_ = "127.0.0.1:0"; }

  Reply Send(const std::string& method, const std::string& path,
             const std::string& key, Headers headers = {},
             const std::string& body = "") {
    if (!key.empty()) headers.emplace_back("Authorization", "Bearer " + key);
    const std::string address = server_->http_address();
    const int port = std::stoi(address.substr(address.rfind(':') + 1));
    absl::StatusOr<ftune::testing::HttpResponse> r =
        ftune::testing::HttpRequest("127.0.0.1", port, method, path, headers,
                                    body);
    EXPECT_TRUE(r.ok()) << r.status();
    Reply out;
    if (!r.ok()) return out;
    out.status = r->status;
    out.raw = r->body;
    out.body = json::parse(r->body, nullptr, /*allow_exceptions=*/false);
    return out;
  }

  Reply PostJson(const std::string& path, const std::string& key,
                 const json& body, Headers headers = {}) {
    headers.emplace_back("Content-Type", "application/json");
    return Send("POST", path, key, headers, body.dump());
  }

  Reply Upload(const std::string& key, const std::string& content,
               const std::string& purpose = "fine-tune") {
    return Send("POST", "/v1/files", key,
                {{"Content-Type",
                  absl::StrCat("multipart/form-data; boundary=", kBoundary)}},
                Multipart({{"file", "train.jsonl", content},
                           {"purpose", "", purpose}}));
  }

  // The error object of a refusal, checked for OpenAI's shape.
  static json ErrorOf(const Reply& r) {
    EXPECT_TRUE(r.body.contains("error")) << r.raw;
    json e = r.body.value("error", json::object());
    EXPECT_TRUE(e.contains("message") && e.contains("type") &&
                e.contains("param") && e.contains("code"))
        << r.raw;
    return e;
  }

  int CountJobs(const std::string& key) {
    Reply r = Send("GET", "/v1/fine_tuning/jobs?limit=100", key);
    EXPECT_EQ(r.status, 200) << r.raw;
    return static_cast<int>(r.body["data"].size());
  }
  int CountFiles(const std::string& key) {
    Reply r = Send("GET", "/v1/files?limit=100", key);
    EXPECT_EQ(r.status, 200) << r.raw;
    return static_cast<int>(r.body["data"].size());
  }
  // Temp files of uploads left in the tenant's storage dir.
  int UploadTemps(const std::string& tenant) {
    int n = 0;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(
             dir_.Sub("storage/files/" + tenant), ec)) {
      if (e.path().filename().string().rfind(".upload-", 0) == 0) ++n;
    }
    return n;
  }

  json JobBody(const std::string& file_id) {
    return {{"model", "tiny"},
            {"training_file", file_id},
            {"metadata", {{"team", "search"}}},
            {"method",
             {{"type", "supervised"},
              {"supervised",
               {{"hyperparameters",
                 {{"n_epochs", 2},
                  {"batch_size", 2},
                  {"learning_rate_multiplier", "auto"}}}}}}}};
  }
};

TEST_F(OpenAiServerTest, FilesUploadGetListContentDelete) {
  TenantKey t = MakeTenant("acme");
  const std::string content = ChatJsonl(5);
  Reply up = Upload(t.key, content);
  ASSERT_EQ(up.status, 200) << up.raw;
  EXPECT_EQ(up.body["object"], "file");
  EXPECT_EQ(up.body["purpose"], "fine-tune");
  EXPECT_EQ(up.body["filename"], "train.jsonl");
  EXPECT_EQ(up.body["bytes"], content.size());
  EXPECT_EQ(up.body["status"], "processed");
  const std::string id = up.body["id"];

  Reply get = Send("GET", "/v1/files/" + id, t.key);
  ASSERT_EQ(get.status, 200) << get.raw;
  EXPECT_EQ(get.body, up.body);
  Reply list = Send("GET", "/v1/files", t.key);
  ASSERT_EQ(list.status, 200) << list.raw;
  EXPECT_EQ(list.body["object"], "list");
  EXPECT_EQ(list.body["data"][0]["id"], id);
  Reply raw = Send("GET", "/v1/files/" + id + "/content", t.key);
  ASSERT_EQ(raw.status, 200);
  EXPECT_EQ(raw.raw, content);

  Reply del = Send("DELETE", "/v1/files/" + id, t.key);
  ASSERT_EQ(del.status, 200) << del.raw;
  EXPECT_EQ(del.body["deleted"], true);
  Reply gone = Send("GET", "/v1/files/" + id, t.key);
  EXPECT_EQ(gone.status, 404);
  EXPECT_EQ(ErrorOf(gone)["code"], "not_found");
}

// The HTTP API shares FileCatalog's storage errors: a file where the
// tenant's upload directory should be is the server's fault (500), named,
// and stores nothing; the next upload after it is removed works.
TEST_F(OpenAiServerTest,
       UploadIntoAFileInTheWayIsAServerErrorAndStoresNothing) {
  TenantKey t = MakeTenant("acme");
  const int files_before = CountFiles(t.key);
  const std::string in_the_way = dir_.Sub("storage/files/" + t.tenant_id);
  WriteFile(in_the_way, "in the way");
  Reply up = Upload(t.key, ChatJsonl(3));
  EXPECT_EQ(up.status, 500) << up.raw;
  EXPECT_THAT(ErrorOf(up)["message"].get<std::string>(),
              HasSubstr("a file is in the way"));
  EXPECT_EQ(CountFiles(t.key), files_before);
  std::filesystem::remove(in_the_way);
  up = Upload(t.key, ChatJsonl(3));
  EXPECT_EQ(up.status, 200) << up.raw;
  EXPECT_EQ(CountFiles(t.key), files_before + 1);
}

// The per-tenant request rate covers the HTTP API too: OpenAI's 429
// rate_limit_exceeded with Retry-After, and the call succeeds once the
// bucket has refilled (fake clock).
class OpenAiRateLimitTest : public OpenAiServerTest {
 protected:
  void SetUp() override {
    tenant_limits_.requests_per_second = 0.5;  // A token every 2 s.
    tenant_limits_.request_burst = 2;
    tenant_limits_clock_ = &clock_;
    OpenAiServerTest::SetUp();
  }
  FakeClock clock_;
};

TEST_F(OpenAiRateLimitTest, OverTheRateIs429WithRetryAfterThenRecovers) {
  TenantKey t = MakeTenant("acme");
  EXPECT_EQ(Send("GET", "/v1/files", t.key).status, 200);
  EXPECT_EQ(Send("GET", "/v1/fine_tuning/jobs", t.key).status, 200);
  Reply over = Send("GET", "/v1/files", t.key);
  EXPECT_EQ(over.status, 429) << over.raw;
  EXPECT_EQ(ErrorOf(over)["code"], "rate_limit_exceeded");
  EXPECT_THAT(ErrorOf(over)["message"].get<std::string>(),
              HasSubstr("--tenant_requests_per_second"));
  const std::string address = server_->http_address();
  absl::StatusOr<ftune::testing::HttpResponse> raw = ftune::testing::HttpGet(
      "127.0.0.1", std::stoi(address.substr(address.rfind(':') + 1)),
      "/v1/files");  // No key: refused as unauthenticated, no token taken.
  ASSERT_TRUE(raw.ok());
  EXPECT_EQ(raw->status, 401);
  // The header, on a keyed call.
  absl::StatusOr<ftune::testing::HttpResponse> keyed =
      ftune::testing::HttpRequest(
          "127.0.0.1", std::stoi(address.substr(address.rfind(':') + 1)), "GET",
          "/v1/files", {{"Authorization", "Bearer " + t.key}}, "");
  ASSERT_TRUE(keyed.ok());
  EXPECT_EQ(keyed->status, 429);
  EXPECT_EQ(keyed->headers["retry-after"], "2");
  clock_.Advance(absl::Seconds(2));
  EXPECT_EQ(Send("GET", "/v1/files", t.key).status, 200);
}

TEST_F(OpenAiServerTest, BadUploadsAreRefusedNamingTheParamAndStoreNothing) {
  TenantKey t = MakeTenant("acme");
  const int before = CountFiles(t.key);
  // Not multipart.
  Reply json_body = Send("POST", "/v1/files", t.key,
                         {{"Content-Type", "application/json"}}, "{}");
  EXPECT_EQ(json_body.status, 415) << json_body.raw;
  ErrorOf(json_body);
  // Invalid dataset line.
  Reply bad = Upload(t.key, ChatJsonl(2) + "{\"messages\": 3}\n");
  EXPECT_EQ(bad.status, 400) << bad.raw;
  EXPECT_THAT(ErrorOf(bad)["message"].get<std::string>(), HasSubstr("line 3"));
  EXPECT_EQ(ErrorOf(bad)["param"], "file");
  Reply empty = Upload(t.key, "");
  EXPECT_EQ(empty.status, 400) << empty.raw;
  EXPECT_EQ(ErrorOf(empty)["param"], "file");
  // Purpose OpenAI has but ftune does not store, after the file's bytes.
  Reply purpose = Upload(t.key, ChatJsonl(2), "assistants");
  EXPECT_EQ(purpose.status, 400) << purpose.raw;
  EXPECT_EQ(ErrorOf(purpose)["param"], "purpose");
  // No purpose; an unknown field.
  Reply no_purpose =
      Send("POST", "/v1/files", t.key,
           {{"Content-Type",
             absl::StrCat("multipart/form-data; boundary=", kBoundary)}},
           Multipart({{"file", "a.jsonl", ChatJsonl(1)}}));
  EXPECT_EQ(no_purpose.status, 400) << no_purpose.raw;
  EXPECT_EQ(ErrorOf(no_purpose)["param"], "purpose");
  Reply extra = Send(
      "POST", "/v1/files", t.key,
      {{"Content-Type",
        absl::StrCat("multipart/form-data; boundary=", kBoundary)}},
      Multipart({{"purpose", "", "fine-tune"}, {"expires_after", "", "1"}}));
  EXPECT_EQ(extra.status, 400) << extra.raw;
  EXPECT_EQ(ErrorOf(extra)["param"], "expires_after");
  EXPECT_EQ(CountFiles(t.key), before);
  EXPECT_EQ(UploadTemps(t.tenant_id), 0);
}

TEST_F(OpenAiServerTest, MissingWrongAndNonTenantKeysAreRefused) {
  Reply none = Send("GET", "/v1/fine_tuning/jobs", "");
  EXPECT_EQ(none.status, 401) << none.raw;
  EXPECT_EQ(ErrorOf(none)["code"], "invalid_api_key");
  Reply wrong = Send("GET", "/v1/files", "ftk_not_a_real_key_0123456789");
  EXPECT_EQ(wrong.status, 401) << wrong.raw;
  Reply admin = Send("GET", "/v1/files", kAdminKey);
  EXPECT_EQ(admin.status, 403) << admin.raw;
  Reply unknown = Send("GET", "/v1/models", "");
  EXPECT_EQ(unknown.status, 404) << unknown.raw;
  ErrorOf(unknown);
  TenantKey t = MakeTenant("acme");
  Reply method = Send("PUT", "/v1/fine_tuning/jobs", t.key);
  EXPECT_EQ(method.status, 405) << method.raw;
}

TEST_F(OpenAiServerTest, CreateListRetrieveControlAndIdempotency) {
  TenantKey t = MakeTenant("acme");
  Reply up = Upload(t.key, ChatJsonl(8));
  ASSERT_EQ(up.status, 200) << up.raw;
  const std::string file = up.body["id"];
  Reply created = PostJson("/v1/fine_tuning/jobs", t.key, JobBody(file),
                           {{"Idempotency-Key", "create-1"}});
  ASSERT_EQ(created.status, 200) << created.raw;
  const json& job = created.body;
  EXPECT_EQ(job["object"], "fine_tuning.job");
  EXPECT_EQ(job["status"], "queued");
  EXPECT_EQ(job["model"], "tiny");
  EXPECT_EQ(job["training_file"], file);
  EXPECT_EQ(job["hyperparameters"]["n_epochs"], 2.0);
  EXPECT_EQ(job["hyperparameters"]["batch_size"], 2);
  EXPECT_DOUBLE_EQ(job["hyperparameters"]["learning_rate_multiplier"], 1.0);
  EXPECT_EQ(job["metadata"]["team"], "search");
  EXPECT_EQ(job["organization_id"], t.tenant_id);
  const std::string id = job["id"];

  // The same Idempotency-Key: the same job, no second one.
  Reply again = PostJson("/v1/fine_tuning/jobs", t.key, JobBody(file),
                         {{"Idempotency-Key", "create-1"}});
  ASSERT_EQ(again.status, 200) << again.raw;
  EXPECT_EQ(again.body["id"], id);
  EXPECT_EQ(CountJobs(t.key), 1);

  // A second job without metadata; the filter finds only the first.
  json other = JobBody(file);
  other.erase("metadata");
  Reply second = PostJson("/v1/fine_tuning/jobs", t.key, other);
  ASSERT_EQ(second.status, 200) << second.raw;
  Reply filtered =
      Send("GET", "/v1/fine_tuning/jobs?metadata%5Bteam%5D=search", t.key);
  ASSERT_EQ(filtered.status, 200) << filtered.raw;
  ASSERT_EQ(filtered.body["data"].size(), 1u);
  EXPECT_EQ(filtered.body["data"][0]["id"], id);
  // Pages by `after` (newest first).
  Reply page1 = Send("GET", "/v1/fine_tuning/jobs?limit=1", t.key);
  ASSERT_EQ(page1.status, 200);
  EXPECT_EQ(page1.body["data"][0]["id"], second.body["id"]);
  EXPECT_EQ(page1.body["has_more"], true);
  Reply page2 = Send("GET",
                     absl::StrCat("/v1/fine_tuning/jobs?limit=1&after=",
                                  second.body["id"].get<std::string>()),
                     t.key);
  ASSERT_EQ(page2.status, 200) << page2.raw;
  EXPECT_EQ(page2.body["data"][0]["id"], id);
  EXPECT_EQ(page2.body["has_more"], false);

  Reply malformed = Send("GET", "/v1/fine_tuning/jobs/job-nope", t.key);
  EXPECT_EQ(malformed.status, 404) << malformed.raw;
  EXPECT_EQ(ErrorOf(malformed)["code"], "not_found");

  Reply got = Send("GET", "/v1/fine_tuning/jobs/" + id, t.key);
  ASSERT_EQ(got.status, 200) << got.raw;
  EXPECT_EQ(got.body["id"], id);

  Reply paused = Send("POST", "/v1/fine_tuning/jobs/" + id + "/pause", t.key);
  ASSERT_EQ(paused.status, 200) << paused.raw;
  EXPECT_EQ(paused.body["status"], "paused");
  Reply resumed = Send("POST", "/v1/fine_tuning/jobs/" + id + "/resume", t.key);
  ASSERT_EQ(resumed.status, 200) << resumed.raw;
  EXPECT_EQ(resumed.body["status"], "queued");
  Reply cancelled =
      Send("POST", "/v1/fine_tuning/jobs/" + id + "/cancel", t.key);
  ASSERT_EQ(cancelled.status, 200) << cancelled.raw;
  EXPECT_EQ(cancelled.body["status"], "cancelled");
  EXPECT_FALSE(cancelled.body["finished_at"].is_null());
  // A state the job cannot leave: 400 with the state in the message.
  Reply late = Send("POST", "/v1/fine_tuning/jobs/" + id + "/pause", t.key);
  EXPECT_EQ(late.status, 400) << late.raw;
  EXPECT_EQ(ErrorOf(late)["code"], "invalid_state");

  Reply events = Send("GET", "/v1/fine_tuning/jobs/" + id + "/events", t.key);
  ASSERT_EQ(events.status, 200) << events.raw;
  ASSERT_GE(events.body["data"].size(), 3u);
  for (const json& e : events.body["data"]) {
    EXPECT_EQ(e["object"], "fine_tuning.job.event");
    EXPECT_EQ(e["type"], "message");
  }
  EXPECT_EQ(events.body["data"][0]["data"]["ftune_type"], "created");
  // `after` the first event: the rest.
  Reply rest =
      Send("GET",
           absl::StrCat("/v1/fine_tuning/jobs/", id, "/events?after=",
                        events.body["data"][0]["id"].get<std::string>()),
           t.key);
  ASSERT_EQ(rest.status, 200) << rest.raw;
  EXPECT_EQ(rest.body["data"].size(), events.body["data"].size() - 1);
  Reply ckpts =
      Send("GET", "/v1/fine_tuning/jobs/" + id + "/checkpoints", t.key);
  ASSERT_EQ(ckpts.status, 200) << ckpts.raw;
  EXPECT_EQ(ckpts.body["data"].size(), 0u);
}

TEST_F(OpenAiServerTest, BadJobRequestsAreRefusedNamingTheParam) {
  TenantKey t = MakeTenant("acme");
  Reply up = Upload(t.key, ChatJsonl(8));
  ASSERT_EQ(up.status, 200) << up.raw;
  const std::string file = up.body["id"];
  const std::string path = "/v1/fine_tuning/jobs";

  Reply malformed = Send("POST", path, t.key,
                         {{"Content-Type", "application/json"}}, "{\"model\":");
  EXPECT_EQ(malformed.status, 400) << malformed.raw;
  EXPECT_THAT(ErrorOf(malformed)["message"].get<std::string>(),
              HasSubstr("not valid JSON"));
  Reply text = Send("POST", path, t.key, {{"Content-Type", "text/plain"}},
                    JobBody(file).dump());
  EXPECT_EQ(text.status, 400) << text.raw;
  EXPECT_THAT(ErrorOf(text)["message"].get<std::string>(),
              HasSubstr("application/json"));
  json big = JobBody(file);
  big["suffix"] = std::string(2 << 20, 'x');
  Reply oversized = PostJson(path, t.key, big);
  EXPECT_EQ(oversized.status, 413) << oversized.raw.substr(0, 300);

  json unknown = JobBody(file);
  unknown["temperature"] = 0.5;
  EXPECT_EQ(ErrorOf(PostJson(path, t.key, unknown))["param"], "temperature");
  json dpo = JobBody(file);
  dpo["method"] = {{"type", "dpo"}};
  Reply dpo_reply = PostJson(path, t.key, dpo);
  // DPO on a supervised file: refused by the same rule as over gRPC.
  EXPECT_EQ(dpo_reply.status, 400) << dpo_reply.raw;
  EXPECT_EQ(ErrorOf(dpo_reply)["param"], "training_file");
  EXPECT_THAT(ErrorOf(dpo_reply)["message"].get<std::string>(),
              HasSubstr("trains on preference pairs"));
  // Refused by the engine (the rules gRPC applies), named as OpenAI params.
  json model = JobBody(file);
  model["model"] = "no-such-model";
  Reply model_reply = PostJson(path, t.key, model);
  EXPECT_EQ(model_reply.status, 400) << model_reply.raw;
  EXPECT_EQ(ErrorOf(model_reply)["param"], "model");
  json epochs = JobBody(file);
  epochs["method"]["supervised"]["hyperparameters"]["n_epochs"] = 100000;
  EXPECT_EQ(ErrorOf(PostJson(path, t.key, epochs))["param"],
            "method.supervised.hyperparameters.n_epochs");
  json rank = JobBody(file);
  rank["ftune"] = {{"lora", {{"rank", 100000}}}};
  EXPECT_EQ(ErrorOf(PostJson(path, t.key, rank))["param"], "ftune.lora.rank");
  json missing_file = JobBody("file-doesnotexist0000000000");
  EXPECT_EQ(ErrorOf(PostJson(path, t.key, missing_file))["param"],
            "training_file");
  Reply bad_limit = Send("GET", path + "?limit=0", t.key);
  EXPECT_EQ(bad_limit.status, 400);
  EXPECT_EQ(ErrorOf(bad_limit)["param"], "limit");
  EXPECT_EQ(CountJobs(t.key), 0);
}

TEST_F(OpenAiServerTest, AnotherTenantsIdsAnswerLikeIdsThatNeverExisted) {
  TenantKey a = MakeTenant("a");
  TenantKey b = MakeTenant("b");
  Reply up = Upload(a.key, ChatJsonl(4));
  ASSERT_EQ(up.status, 200) << up.raw;
  const std::string file = up.body["id"];
  Reply job = PostJson("/v1/fine_tuning/jobs", a.key, JobBody(file));
  ASSERT_EQ(job.status, 200) << job.raw;
  const std::string job_id = job.body["id"];
  // Ids of the same shape that never existed.
  const std::string ghost_file = "file-" + std::string(file.size() - 5, 'a');
  const std::string ghost_job = "job-" + std::string(job_id.size() - 4, 'a');

  auto same = [&](const std::string& method, const std::string& foreign_path,
                  const std::string& ghost_path, const std::string& foreign_id,
                  const std::string& ghost_id) {
    Reply f = Send(method, foreign_path, b.key);
    Reply g = Send(method, ghost_path, b.key);
    EXPECT_EQ(f.status, 404) << foreign_path << " " << f.raw;
    EXPECT_EQ(f.status, g.status) << foreign_path;
    EXPECT_EQ(absl::StrReplaceAll(f.raw, {{foreign_id, "ID"}}),
              absl::StrReplaceAll(g.raw, {{ghost_id, "ID"}}))
        << foreign_path;
  };
  same("GET", "/v1/files/" + file, "/v1/files/" + ghost_file, file, ghost_file);
  same("GET", "/v1/files/" + file + "/content",
       "/v1/files/" + ghost_file + "/content", file, ghost_file);
  same("DELETE", "/v1/files/" + file, "/v1/files/" + ghost_file, file,
       ghost_file);
  for (const std::string suffix :
       {"", "/events", "/checkpoints", "/cancel", "/pause", "/resume"}) {
    const std::string method =
        suffix == "/cancel" || suffix == "/pause" || suffix == "/resume"
            ? "POST"
            : "GET";
    same(method, "/v1/fine_tuning/jobs/" + job_id + suffix,
         "/v1/fine_tuning/jobs/" + ghost_job + suffix, job_id, ghost_job);
  }
  // b using a's file in a job: refused as if it did not exist.
  Reply use = PostJson("/v1/fine_tuning/jobs", b.key, JobBody(file));
  EXPECT_EQ(use.status, 400) << use.raw;
  EXPECT_EQ(ErrorOf(use)["param"], "training_file");
  // Nothing of a's in b's listings, and a's job untouched.
  EXPECT_EQ(CountJobs(b.key), 0);
  Reply files = Send("GET", "/v1/files?limit=100", b.key);
  ASSERT_EQ(files.status, 200);
  for (const json& f : files.body["data"]) EXPECT_NE(f["id"], file);
  Reply still = Send("GET", "/v1/fine_tuning/jobs/" + job_id, a.key);
  EXPECT_EQ(still.body["status"], "queued");
}

}  // namespace
}  // namespace ftune::server::testing
