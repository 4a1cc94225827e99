// /v1/webhooks of the HTTP API on a real SchedulerServer (SQLite, loopback;
// tests/server/rpc/rpc_fixture.h) with a real receiver: registration and
// its refusals (OpenAI-shaped errors naming the param, nothing created),
// tenancy, the delivery log, deletion.
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/server/rpc/rpc_fixture.h"
#include "tests/server/webhook/receiver.h"
#include "tests/server/webhook/webhook_test_util.h"
#include "tests/testing/http_client.h"

namespace ftune::server::testing {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

struct Reply {
  int status = 0;
  json body;
  std::string raw;
};

class WebhookHttpTest : public RpcTest {
 protected:
  WebhookHttpTest() {
    http_address_ = "127.0.0.1:0";
    webhooks_.policy = {/*allow_http=*/true, /*allow_private=*/true};
    webhooks_.poll_interval = absl::Milliseconds(20);
  }

  Reply Send(const std::string& method, const std::string& path,
             const std::string& key, const std::string& body = "",
             const std::string& content_type = "application/json") {
    std::vector<std::pair<std::string, std::string>> headers = {
        {"Authorization", "Bearer " + key}};
    if (!body.empty()) headers.emplace_back("Content-Type", content_type);
    const std::string address = server_->http_address();
    const int port = std::stoi(address.substr(address.rfind(':') + 1));
    auto r = ftune::testing::HttpRequest("127.0.0.1", port, method, path,
                                         headers, body);
    EXPECT_TRUE(r.ok()) << r.status();
    Reply out;
    if (!r.ok()) return out;
    out.status = r->status;
    out.raw = r->body;
    out.body = json::parse(r->body, nullptr, /*allow_exceptions=*/false);
    return out;
  }

  int CountWebhooks(const std::string& key) {
    Reply r = Send("GET", "/v1/webhooks", key);
    EXPECT_EQ(r.status, 200) << r.raw;
    return static_cast<int>(r.body["data"].size());
  }
};

TEST_F(WebhookHttpTest, RegisterListDeliverDelete) {
  ASSERT_OK_AND_ASSIGN(auto receiver, ftune::testing::WebhookReceiver::Start());
  const TenantKey a = MakeTenant("a");
  const TenantKey b = MakeTenant("b");

  // Refusals: OpenAI's error shape, the param named, nothing created.
  struct Bad {
    std::string body;
    std::string content_type;
    int status;
    json param;
  };
  const std::string url = receiver->url("/a");
  for (const Bad& bad : std::vector<Bad>{
           {json({{"url", url}, {"event_types", {"x.y"}}}).dump(),
            "application/json", 400, "event_types"},
           {json({{"url", "https://hooks.nothing.invalid/"},
                  {"event_types", {"fine_tuning.job.failed"}}})
                .dump(),
            "application/json", 400, "url"},
           {json({{"url", url},
                  {"event_types", {"fine_tuning.job.failed"}},
                  {"colour", "red"}})
                .dump(),
            "application/json", 400, "colour"},
           {json({{"url", 7}}).dump(), "application/json", 400, "url"},
           {"{\"url\": ", "application/json", 400, nullptr},
           {json({{"url", url}}).dump(), "text/plain", 400, nullptr},
       }) {
    Reply r = Send("POST", "/v1/webhooks", a.key, bad.body, bad.content_type);
    EXPECT_EQ(r.status, bad.status) << bad.body << " -> " << r.raw;
    ASSERT_TRUE(r.body.contains("error")) << r.raw;
    EXPECT_EQ(r.body["error"]["type"], "invalid_request_error") << r.raw;
    EXPECT_EQ(r.body["error"]["param"], bad.param) << r.raw;
  }
  EXPECT_EQ(CountWebhooks(a.key), 0);

  Reply created = Send("POST", "/v1/webhooks", a.key,
                       json({{"url", url},
                             {"event_types", {"fine_tuning.job.cancelled"}},
                             {"description", "ci"}})
                           .dump());
  ASSERT_EQ(created.status, 200) << created.raw;
  const std::string id = created.body["id"];
  const std::string secret = created.body["secret"];
  EXPECT_EQ(created.body["object"], "webhook_endpoint");
  EXPECT_EQ(created.body["url"], url);
  EXPECT_THAT(secret, ::testing::StartsWith("whsec_"));

  Reply got = Send("GET", "/v1/webhooks/" + id, a.key);
  ASSERT_EQ(got.status, 200) << got.raw;
  EXPECT_FALSE(got.body.contains("secret"));  // Shown once.
  EXPECT_EQ(CountWebhooks(a.key), 1);
  EXPECT_EQ(CountWebhooks(b.key), 0);
  // Another tenant's id answers like one that never existed.
  Reply foreign = Send("GET", "/v1/webhooks/" + id, b.key);
  Reply never = Send("GET", "/v1/webhooks/wh-aaaaaaaaaaaaaaaaaaaaaaaa", b.key);
  EXPECT_EQ(foreign.status, 404);
  EXPECT_EQ(never.status, 404);
  EXPECT_EQ(foreign.body["error"]["code"], never.body["error"]["code"]);
  EXPECT_EQ(Send("DELETE", "/v1/webhooks/" + id, b.key).status, 404);
  EXPECT_EQ(Send("GET", "/v1/webhooks/" + id + "/deliveries", b.key).status,
            404);
  EXPECT_EQ(Send("PUT", "/v1/webhooks/" + id, a.key).status, 405);

  // A's job is cancelled: the event arrives signed, and the log shows it.
  ASSERT_OK_AND_ASSIGN(v1::Job job, CreateJob(a, JobRequest(a)));
  ASSERT_OK(store().CancelJob(a.tenant_id, job.id(), "test"));
  ASSERT_TRUE(receiver->AwaitCount(1));
  std::string out;
  EXPECT_EQ(ftune::testing::VerifyWithPython(secret, receiver->received(),
                                             dir_.Sub("v.json"), &out),
            0)
      << out;
  Reply log;
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  do {
    log = Send("GET", "/v1/webhooks/" + id + "/deliveries?limit=5", a.key);
    ASSERT_EQ(log.status, 200) << log.raw;
    ASSERT_EQ(log.body["data"].size(), 1u) << log.raw;
    if (log.body["data"][0]["status"] == "delivered") break;
    absl::SleepFor(absl::Milliseconds(20));
  } while (absl::Now() < deadline);
  const json d = log.body["data"][0];
  EXPECT_EQ(d["status"], "delivered") << log.raw;
  EXPECT_EQ(d["event_type"], "fine_tuning.job.cancelled");
  EXPECT_EQ(d["job_id"], job.id());
  EXPECT_EQ(d["attempts"], 1);
  EXPECT_EQ(d["last_status_code"], 204);
  EXPECT_EQ(d["payload"]["data"]["id"], job.id());
  EXPECT_EQ(Send("GET", "/v1/webhooks/" + id + "/deliveries?colour=1", a.key)
                .body["error"]["param"],
            "colour");

  Reply deleted = Send("DELETE", "/v1/webhooks/" + id, a.key);
  EXPECT_EQ(deleted.status, 200) << deleted.raw;
  EXPECT_EQ(deleted.body["deleted"], true);
  EXPECT_EQ(Send("GET", "/v1/webhooks/" + id, a.key).status, 404);
  EXPECT_EQ(CountWebhooks(a.key), 0);
}

// Redelivery sends the same event again (same webhook-id and body) as a new
// delivery; a disabled endpoint gets no deliveries for new events and
// cannot redeliver; updates are checked like registrations.
TEST_F(WebhookHttpTest, UpdateDisableAndRedeliver) {
  ASSERT_OK_AND_ASSIGN(auto receiver, ftune::testing::WebhookReceiver::Start());
  const TenantKey a = MakeTenant("a");
  const TenantKey b = MakeTenant("b");
  Reply created = Send("POST", "/v1/webhooks", a.key,
                       json({{"url", receiver->url("/a")},
                             {"event_types", {"fine_tuning.job.cancelled"}}})
                           .dump());
  ASSERT_EQ(created.status, 200) << created.raw;
  const std::string id = created.body["id"];
  const std::string base = "/v1/webhooks/" + id;
  auto deliveries = [&] {
    Reply log = Send("GET", base + "/deliveries", a.key);
    EXPECT_EQ(log.status, 200) << log.raw;
    return log.body["data"];
  };

  ASSERT_OK_AND_ASSIGN(v1::Job first, CreateJob(a, JobRequest(a)));
  ASSERT_OK(store().CancelJob(a.tenant_id, first.id(), "test"));
  ASSERT_TRUE(receiver->AwaitCount(1));
  const json original = deliveries()[0];

  // Redeliver: a new delivery of the same event, sent again.
  const std::string redeliver =
      base + "/deliveries/" + original["id"].get<std::string>() + "/redeliver";
  EXPECT_EQ(Send("POST", redeliver, b.key).status, 404);  // Not B's.
  Reply again = Send("POST", redeliver, a.key);
  ASSERT_EQ(again.status, 200) << again.raw;
  EXPECT_NE(again.body["id"], original["id"]);
  EXPECT_EQ(again.body["event_id"], original["event_id"]);
  EXPECT_EQ(again.body["status"], "pending");
  EXPECT_EQ(again.body["attempts"], 0);
  ASSERT_TRUE(receiver->AwaitCount(2));
  const auto got = receiver->received();
  EXPECT_EQ(got[1].headers.at("webhook-id"), got[0].headers.at("webhook-id"));
  EXPECT_EQ(got[1].body, got[0].body);
  EXPECT_EQ(deliveries().size(), 2u);
  EXPECT_EQ(
      Send("POST", base + "/deliveries/whdel-nope/redeliver", a.key).status,
      404);

  // Bad updates change nothing.
  EXPECT_EQ(Send("POST", base, a.key, json({{"event_types", {"x.y"}}}).dump())
                .body["error"]["param"],
            "event_types");
  EXPECT_EQ(Send("POST", base, a.key, json({{"colour", 1}}).dump())
                .body["error"]["param"],
            "colour");
  EXPECT_EQ(Send("POST", base, a.key, "{}").status, 400);
  EXPECT_EQ(Send("POST", base, b.key, json({{"disabled", true}}).dump()).status,
            404);

  // Disabled: a new event queues nothing, and redelivery is refused.
  Reply disabled =
      Send("POST", base, a.key,
           json({{"disabled", true}, {"description", "paused"}}).dump());
  ASSERT_EQ(disabled.status, 200) << disabled.raw;
  EXPECT_EQ(disabled.body["disabled"], true);
  EXPECT_EQ(disabled.body["description"], "paused");
  ASSERT_OK_AND_ASSIGN(v1::Job second, CreateJob(a, JobRequest(a)));
  ASSERT_OK(store().CancelJob(a.tenant_id, second.id(), "test"));
  EXPECT_EQ(deliveries().size(), 2u);
  Reply refused = Send("POST", redeliver, a.key);
  EXPECT_GE(refused.status, 400) << refused.raw;
  EXPECT_THAT(refused.raw, HasSubstr("disabled"));

  // Enabled again, with another event type list.
  Reply enabled =
      Send("POST", base, a.key,
           json({{"disabled", false},
                 {"event_types",
                  {"fine_tuning.job.cancelled", "ftune.job.eval_improved"}}})
               .dump());
  ASSERT_EQ(enabled.status, 200) << enabled.raw;
  EXPECT_EQ(enabled.body["disabled"], false);
  EXPECT_EQ(enabled.body["event_types"].size(), 2u);
  EXPECT_EQ(Send("POST", redeliver, a.key).status, 200);
}

}  // namespace
}  // namespace ftune::server::testing
