// The delivery loop over a real SQLite store, real libcurl and a real HTTP
// receiver on loopback; time is a FakeClock (due times, backoff, the
// webhook-timestamp header), so no assertion depends on wall-clock time.
#include "server/webhook/delivery_loop.h"

#include <memory>
#include <string>
#include <vector>

#include "common/metrics/registry.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "server/store/sqlite_store.h"
#include "server/webhook/registry.h"
#include "server/webhook/sender.h"
#include "tests/server/webhook/receiver.h"
#include "tests/server/webhook/webhook_test_util.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace ftune::server::webhook {
namespace {

using ::ftune::testing::ReceivedWebhook;
using ::ftune::testing::WebhookReceiver;
using ::testing::HasSubstr;
using ::testing::SizeIs;

class WebhookDeliveryLoopTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store::SqliteStoreOptions so;
    so.path = dir_.Sub("sched.db");
    so.synchronous_full = false;
    so.clock = &clock_;
    ASSERT_OK_AND_ASSIGN(store_, store::SqliteStore::Open(so));
    a_ = MakeTenant("a");
    b_ = MakeTenant("b");
    options_.policy = {/*allow_http=*/true, /*allow_private=*/true};
    options_.poll_interval = absl::Milliseconds(20);
    options_.initial_backoff = absl::Seconds(10);
    options_.max_backoff = absl::Hours(1);
    options_.retry_period = absl::Hours(1);
    options_.max_response_bytes = 8;
    options_.jitter_seed = 42;
  }

  void StartLoop() {
    ASSERT_OK_AND_ASSIGN(
        loop_, DeliveryLoop::Create(store_.get(), &sender_, &clock_, &metrics_,
                                    options_));
    loop_->Start();
  }

  struct Tenant {
    std::string id;
    std::string file_id;
  };
  Tenant MakeTenant(const std::string& name) {
    core::Tenant t;
    t.name = name;
    auto tenant = store_->CreateTenant(t);
    EXPECT_TRUE(tenant.ok()) << tenant.status();
    core::Model m;
    m.name = "tiny";
    m.directory = "models/tiny";
    EXPECT_OK(store_->UpsertModel(m));
    core::FileRecord f;
    f.tenant_id = tenant->id;
    f.filename = "train.jsonl";
    f.purpose = "fine-tune";
    f.status = core::FileStatus::kReady;
    f.storage_path = "files/x";
    auto file = store_->CreateFile(f);
    EXPECT_TRUE(file.ok()) << file.status();
    return {tenant->id, file->id};
  }

  std::string NewJob(const Tenant& t) {
    core::Job j;
    j.tenant_id = t.id;
    j.spec = "spec";
    j.model = "tiny";
    j.training_file_id = t.file_id;
    auto r = store_->CreateJob(j);
    EXPECT_TRUE(r.ok()) << r.status();
    return r->job.id;
  }

  store::WebhookEndpoint Register(const Tenant& t, const std::string& url) {
    WebhookRegistry registry(store_.get(), options_.policy);
    NewEndpoint in;
    in.url = url;
    in.event_types = store::AllWebhookEventTypes();
    auto e = registry.Create(t.id, in);
    EXPECT_TRUE(e.ok()) << e.status();
    return *e;
  }

  store::WebhookDelivery OnlyDelivery(const Tenant& t,
                                      const std::string& endpoint_id) {
    auto page = store_->ListWebhookDeliveries(t.id, endpoint_id, 10, "");
    EXPECT_TRUE(page.ok()) << page.status();
    EXPECT_THAT(page->items, SizeIs(1));
    return page->items.empty() ? store::WebhookDelivery{} : page->items[0];
  }

  // Waits (real time, bounded) until the delivery's attempts reach `n`.
  store::WebhookDelivery AwaitAttempts(const Tenant& t,
                                       const std::string& endpoint_id,
                                       int64_t n) {
    const absl::Time deadline = absl::Now() + absl::Seconds(20);
    store::WebhookDelivery d;
    while (absl::Now() < deadline) {
      d = OnlyDelivery(t, endpoint_id);
      if (d.attempts >= n) return d;
      absl::SleepFor(absl::Milliseconds(5));
    }
    ADD_FAILURE() << "delivery never reached " << n << " attempts";
    return d;
  }

  // The scrape once it has `line` (the loop counts a settled delivery just
  // after recording it, so a test that saw the record may be a moment early).
  std::string AwaitScrape(const std::string& line) {
    const absl::Time deadline = absl::Now() + absl::Seconds(20);
    std::string scrape = metrics_.Scrape();
    while (scrape.find(line) == std::string::npos && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(5));
      scrape = metrics_.Scrape();
    }
    return scrape;
  }

  ::ftune::testing::TempDir dir_;
  FakeClock clock_;
  std::unique_ptr<store::SqliteStore> store_;
  Tenant a_, b_;
  CurlSender sender_;
  metrics::Registry metrics_;
  DeliveryOptions options_;
  std::unique_ptr<DeliveryLoop> loop_;
};

TEST_F(WebhookDeliveryLoopTest, EventsArriveSignedAndOnlyToTheirTenant) {
  ASSERT_OK_AND_ASSIGN(auto receiver, WebhookReceiver::Start());
  const store::WebhookEndpoint ea = Register(a_, receiver->url("/a"));
  const store::WebhookEndpoint eb = Register(b_, receiver->url("/b"));
  StartLoop();
  const std::string job_a = NewJob(a_);
  const std::string job_b = NewJob(b_);
  ASSERT_OK(store_->PauseJob(a_.id, job_a));
  ASSERT_OK(store_->CancelJob(a_.id, job_a, "done"));
  ASSERT_OK(store_->CancelJob(b_.id, job_b, "done"));
  ASSERT_TRUE(receiver->AwaitCount(3));

  std::vector<ReceivedWebhook> to_a, to_b;
  for (const ReceivedWebhook& r : receiver->received()) {
    (r.path == "/a" ? to_a : to_b).push_back(r);
  }
  ASSERT_THAT(to_a, SizeIs(2));
  ASSERT_THAT(to_b, SizeIs(1));
  std::vector<std::string> a_types;
  for (const ReceivedWebhook& r : to_a) {
    const nlohmann::json body = nlohmann::json::parse(r.body);
    EXPECT_EQ(body["data"]["id"], job_a);  // Never B's job.
    EXPECT_EQ(r.headers.at("webhook-id"), body["id"]);
    EXPECT_EQ(r.headers.at("webhook-timestamp"),
              std::to_string(absl::ToUnixSeconds(clock_.Now())));
    EXPECT_EQ(r.headers.at("content-type"), "application/json");
    a_types.push_back(body["type"]);
  }
  EXPECT_THAT(a_types,
              ::testing::UnorderedElementsAre("fine_tuning.job.paused",
                                              "fine_tuning.job.cancelled"));
  const nlohmann::json b_body = nlohmann::json::parse(to_b[0].body);
  EXPECT_EQ(b_body["data"]["id"], job_b);
  EXPECT_EQ(b_body["type"], "fine_tuning.job.cancelled");

  // An independent implementation accepts every signature with the
  // endpoint's own secret, and refuses them with another tenant's secret or
  // a body changed by one byte.
  std::string out;
  EXPECT_EQ(
      testing::VerifyWithPython(ea.secret, to_a, dir_.Sub("a.json"), &out), 0)
      << out;
  EXPECT_THAT(out, HasSubstr("ok 2"));
  out.clear();
  EXPECT_EQ(
      testing::VerifyWithPython(eb.secret, to_b, dir_.Sub("b.json"), &out), 0)
      << out;
  out.clear();
  EXPECT_EQ(
      testing::VerifyWithPython(eb.secret, to_a, dir_.Sub("x.json"), &out), 1)
      << out;
  std::vector<ReceivedWebhook> tampered = to_b;
  tampered[0].body[tampered[0].body.size() - 2] ^= 1;
  out.clear();
  EXPECT_EQ(
      testing::VerifyWithPython(eb.secret, tampered, dir_.Sub("t.json"), &out),
      1)
      << out;

  // Both settle as delivered in the log.
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (absl::Now() < deadline &&
         OnlyDelivery(b_, eb.id).state !=
             store::WebhookDeliveryState::kDelivered) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  const store::WebhookDelivery d = OnlyDelivery(b_, eb.id);
  EXPECT_EQ(d.state, store::WebhookDeliveryState::kDelivered);
  EXPECT_EQ(d.attempts, 1);
  EXPECT_EQ(d.last_status_code, 204);
}

TEST_F(WebhookDeliveryLoopTest,
       ReceiverFailingNTimesGetsNPlusOneAttemptsWithGrowingGaps) {
  constexpr int kFailures = 3;
  ASSERT_OK_AND_ASSIGN(auto receiver, WebhookReceiver::Start([](int n) {
                         return n < kFailures ? 500 : 200;
                       }));
  const store::WebhookEndpoint e = Register(a_, receiver->url());
  StartLoop();
  ASSERT_OK(store_->CancelJob(a_.id, NewJob(a_), ""));

  std::vector<absl::Duration> gaps;
  for (int attempt = 1; attempt <= kFailures; ++attempt) {
    const store::WebhookDelivery d = AwaitAttempts(a_, e.id, attempt);
    ASSERT_EQ(d.state, store::WebhookDeliveryState::kPending);
    EXPECT_EQ(d.last_status_code, 500);
    // Only max_response_bytes (8) of "answer N status 500" are kept.
    EXPECT_EQ(d.last_response, "answer " + std::to_string(attempt - 1));
    const absl::Duration gap = d.next_attempt_time - d.last_attempt_time;
    // initial * 2^(n-1) times a factor in [0.5, 1).
    const absl::Duration base = options_.initial_backoff * (1 << (attempt - 1));
    EXPECT_GE(gap, base / 2);
    EXPECT_LT(gap, base);
    gaps.push_back(gap);
    // Nothing happens before the due time...
    clock_.SetTime(d.next_attempt_time - absl::Seconds(1));
    absl::SleepFor(options_.poll_interval * 3);
    EXPECT_EQ(OnlyDelivery(a_, e.id).attempts, attempt);
    // ...and the next attempt comes when it is due.
    clock_.SetTime(d.next_attempt_time);
  }
  const store::WebhookDelivery done = AwaitAttempts(a_, e.id, kFailures + 1);
  EXPECT_EQ(done.state, store::WebhookDeliveryState::kDelivered);
  EXPECT_EQ(done.last_status_code, 200);
  for (size_t i = 1; i < gaps.size(); ++i) EXPECT_GT(gaps[i], gaps[i - 1]);

  // N+1 requests, all the same event: one webhook-id, one body.
  const std::vector<ReceivedWebhook> got = receiver->received();
  ASSERT_THAT(got, SizeIs(kFailures + 1));
  for (const ReceivedWebhook& r : got) {
    EXPECT_EQ(r.headers.at("webhook-id"), done.event_id);
    EXPECT_EQ(r.body, done.payload);
  }
  std::string out;
  EXPECT_EQ(testing::VerifyWithPython(e.secret, got, dir_.Sub("r.json"), &out),
            0)
      << out;
  const std::string scrape =
      AwaitScrape("ftune_webhook_deliveries_total{result=\"delivered\"} 1");
  EXPECT_THAT(
      scrape,
      HasSubstr("ftune_webhook_attempts_total{result=\"http_error\"} 3"));
  EXPECT_THAT(scrape,
              HasSubstr("ftune_webhook_attempts_total{result=\"success\"} 1"));
  EXPECT_THAT(scrape, HasSubstr("ftune_webhook_deliveries_total{result="
                                "\"delivered\"} 1"));
}

// Rotating the secret: during the grace period an event is signed with the
// new and the old secret (an independent verifier accepts either); after
// it, with the new one only.
TEST_F(WebhookDeliveryLoopTest, RotatedSecretsSignWithBothDuringTheGrace) {
  ASSERT_OK_AND_ASSIGN(auto receiver, WebhookReceiver::Start());
  const store::WebhookEndpoint e = Register(a_, receiver->url());
  WebhookRegistry registry(store_.get(), options_.policy);
  EXPECT_THAT(registry.RotateSecret(a_.id, e.id, absl::Hours(24 * 8)),
              ::ftune::testing::StatusIs(absl::StatusCode::kInvalidArgument,
                                         HasSubstr("grace_seconds")));
  EXPECT_THAT(
      registry.RotateSecret(b_.id, e.id, absl::Hours(1)),
      ::ftune::testing::StatusIs(absl::StatusCode::kNotFound, HasSubstr(e.id)));
  ASSERT_OK_AND_ASSIGN(store::WebhookEndpoint rotated,
                       registry.RotateSecret(a_.id, e.id, absl::Hours(1)));
  ASSERT_NE(rotated.secret, e.secret);
  StartLoop();
  ASSERT_OK(store_->CancelJob(a_.id, NewJob(a_), ""));
  ASSERT_TRUE(receiver->AwaitCount(1));
  std::vector<ReceivedWebhook> during = receiver->received();
  EXPECT_THAT(during[0].headers.at("webhook-signature"), HasSubstr(" v1,"));
  std::string out;
  EXPECT_EQ(testing::VerifyWithPython(rotated.secret, during,
                                      dir_.Sub("new.json"), &out),
            0)
      << out;
  EXPECT_EQ(
      testing::VerifyWithPython(e.secret, during, dir_.Sub("old.json"), &out),
      0)
      << out;

  // The grace period is over: the old secret no longer verifies.
  clock_.Advance(absl::Hours(1) + absl::Seconds(1));
  ASSERT_OK(store_->PauseJob(a_.id, NewJob(a_)));
  ASSERT_TRUE(receiver->AwaitCount(2));
  const std::vector<ReceivedWebhook> after = {receiver->received()[1]};
  EXPECT_EQ(testing::VerifyWithPython(rotated.secret, after,
                                      dir_.Sub("new2.json"), &out),
            0)
      << out;
  EXPECT_EQ(
      testing::VerifyWithPython(e.secret, after, dir_.Sub("old2.json"), &out),
      1)
      << out;
}

// Stopping (the scheduler shutting down) abandons a POST the receiver is
// still holding instead of waiting out the request timeout: no attempt is
// recorded, the delivery stays pending and is sent after a restart.
TEST_F(WebhookDeliveryLoopTest, StopAbandonsPostsInFlightAndKeepsThemPending) {
  options_.request_timeout = absl::Seconds(60);
  ASSERT_OK_AND_ASSIGN(auto receiver, WebhookReceiver::Start([](int n) {
                         return n == 0 ? WebhookReceiver::kHang : 204;
                       }));
  const store::WebhookEndpoint e = Register(a_, receiver->url());
  StartLoop();
  ASSERT_OK(store_->CancelJob(a_.id, NewJob(a_), ""));
  ASSERT_TRUE(receiver->AwaitCount(1));  // The first POST is being held.
  loop_->Stop();  // Returns while the receiver still holds it.
  store::WebhookDelivery d = OnlyDelivery(a_, e.id);
  EXPECT_EQ(d.state, store::WebhookDeliveryState::kPending);
  EXPECT_EQ(d.attempts, 0);
  receiver->Release();

  // After a restart the same event goes out again, and is delivered (the
  // new loop without metrics: the registry has the first loop's).
  ASSERT_OK_AND_ASSIGN(loop_, DeliveryLoop::Create(store_.get(), &sender_,
                                                   &clock_, nullptr, options_));
  loop_->Start();
  d = AwaitAttempts(a_, e.id, 1);
  EXPECT_EQ(d.state, store::WebhookDeliveryState::kDelivered);
  const std::vector<ReceivedWebhook> got = receiver->received();
  ASSERT_THAT(got, SizeIs(2));
  EXPECT_EQ(got[0].headers.at("webhook-id"), got[1].headers.at("webhook-id"));
}

TEST_F(WebhookDeliveryLoopTest, GivesUpWhenTheRetryPeriodRunsOut) {
  options_.retry_period = absl::Seconds(25);
  ASSERT_OK_AND_ASSIGN(auto receiver,
                       WebhookReceiver::Start([](int) { return 503; }));
  const store::WebhookEndpoint e = Register(a_, receiver->url());
  StartLoop();
  ASSERT_OK(store_->CancelJob(a_.id, NewJob(a_), ""));
  // 10s * [0.5,1) then 20s * [0.5,1): the third wait always ends past 25s.
  store::WebhookDelivery d = AwaitAttempts(a_, e.id, 1);
  for (int i = 0; i < 5 && d.state == store::WebhookDeliveryState::kPending;
       ++i) {
    clock_.SetTime(d.next_attempt_time);
    d = AwaitAttempts(a_, e.id, d.attempts + 1);
  }
  EXPECT_EQ(d.state, store::WebhookDeliveryState::kFailed);
  EXPECT_GE(d.attempts, 2);
  EXPECT_LE(d.attempts, 3);
  EXPECT_EQ(d.last_status_code, 503);
  EXPECT_EQ(d.last_response.size(), 8u);
  EXPECT_THAT(d.last_response, ::testing::StartsWith("answer "));
  EXPECT_THAT(
      AwaitScrape("ftune_webhook_deliveries_total{result=\"failed\"} 1"),
      HasSubstr("ftune_webhook_deliveries_total{result=\"failed\"} 1"));
}

TEST_F(WebhookDeliveryLoopTest, PrivateTargetsAreRefusedAtDeliveryToo) {
  ASSERT_OK_AND_ASSIGN(auto receiver, WebhookReceiver::Start());
  // Registered while private targets were allowed; the loop does not allow
  // them (an operator changed the flag, or DNS now points inside).
  const store::WebhookEndpoint e = Register(a_, receiver->url());
  options_.policy.allow_private = false;
  StartLoop();
  ASSERT_OK(store_->CancelJob(a_.id, NewJob(a_), ""));
  const store::WebhookDelivery d = AwaitAttempts(a_, e.id, 1);
  EXPECT_EQ(d.state, store::WebhookDeliveryState::kPending);
  EXPECT_EQ(d.last_status_code, 0);
  EXPECT_THAT(d.last_error, HasSubstr("target refused"));
  EXPECT_THAT(d.last_error, HasSubstr("127.0.0.1"));
  EXPECT_TRUE(receiver->received().empty());
}

}  // namespace
}  // namespace ftune::server::webhook
