// Standard Webhooks signing against the specification's published example,
// the target policy (https, length, credentials, DNS, private ranges), the
// registration rules, and the backoff schedule.
#include <memory>
#include <string>

#include "absl/strings/escaping.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/engine/error_info.h"
#include "server/store/sqlite_store.h"
#include "server/webhook/delivery_loop.h"
#include "server/webhook/registry.h"
#include "server/webhook/signature.h"
#include "server/webhook/target.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace ftune::server::webhook {
namespace {

using ::ftune::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::StartsWith;

TEST(WebhookSignatureTest, MatchesTheSpecificationsExample) {
  // The example of the Standard Webhooks specification (and of its
  // reference libraries' tests).
  ASSERT_OK_AND_ASSIGN(std::string sig,
                       SignWebhook("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                                   "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330,
                                   R"({"test": 2432232314})"));
  EXPECT_EQ(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
  ASSERT_OK_AND_ASSIGN(std::string other,
                       SignWebhook("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                                   "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265331,
                                   R"({"test": 2432232314})"));
  EXPECT_NE(other, sig);
  EXPECT_THAT(
      SignWebhook("sk_not_a_secret", "m", 1, "{}"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("whsec_")));
}

TEST(WebhookSignatureTest, NewSecretsAreFreshBase64Keys) {
  const std::string a = NewWebhookSecret();
  const std::string b = NewWebhookSecret();
  EXPECT_NE(a, b);
  EXPECT_THAT(a, StartsWith("whsec_"));
  ASSERT_OK_AND_ASSIGN(std::string key, SecretKey(a));
  EXPECT_EQ(key.size(), 32u);
}

TEST(WebhookTargetTest, PrivateAndReservedAddresses) {
  for (const char* a :
       {"127.0.0.1", "10.1.2.3", "172.16.0.1", "172.31.255.255", "192.168.1.1",
        "169.254.169.254", "100.64.0.1", "0.0.0.0", "224.0.0.1",
        "255.255.255.255", "::1", "::", "fe80::1", "fd00::1", "ff02::1",
        "::ffff:127.0.0.1", "::ffff:10.0.0.1", "64:ff9b::a00:1", "nonsense"}) {
    EXPECT_TRUE(IsPrivateAddress(a)) << a;
  }
  for (const char* a : {"8.8.8.8", "172.32.0.1", "192.169.0.1",
                        "2606:4700::1111", "::ffff:8.8.8.8", "100.128.0.1"}) {
    EXPECT_FALSE(IsPrivateAddress(a)) << a;
  }
}

TEST(WebhookTargetTest, PolicyRefusesWithTheFieldNamed) {
  const TargetPolicy strict;
  auto refused = [&](const std::string& url, const TargetPolicy& p,
                     const std::string& why) {
    EXPECT_THAT(CheckWebhookTarget(url, p),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         ::testing::AllOf(StartsWith("url: "), HasSubstr(why))))
        << url;
  };
  refused("", strict, "required");
  refused("not a url", strict, "valid absolute URL");
  refused("http://127.0.0.1:8080/hook", strict, "https");
  refused("ftp://127.0.0.1/hook", {true, true}, "https");
  refused("https://127.0.0.1/hook", strict, "127.0.0.1");
  refused("https://localhost/hook", strict, "loopback");
  refused("https://169.254.169.254/latest", strict, "private");
  refused("https://user:pw@127.0.0.1/", {true, true}, "credentials");
  refused("https://hooks.nothing.invalid/x", {true, true}, "does not resolve");
  refused("https://127.0.0.1/" + std::string(kMaxUrlLength, 'a'), {true, true},
          "at most 2048");
  ASSERT_OK_AND_ASSIGN(CheckedTarget ok,
                       CheckWebhookTarget("http://127.0.0.1:8080/hook",
                                          {/*allow_http=*/true,
                                           /*allow_private=*/true}));
  EXPECT_EQ(ok.port, 8080);
  EXPECT_EQ(ok.address, "127.0.0.1");
  ASSERT_OK_AND_ASSIGN(
      ok, CheckWebhookTarget("https://localhost/hook", {false, true}));
  EXPECT_EQ(ok.port, 443);
  EXPECT_THAT(ok.curl_resolve, StartsWith("localhost:443:"));
}

TEST(WebhookRegistryTest, BadRegistrationsNameTheFieldAndCreateNothing) {
  ::ftune::testing::TempDir dir;
  store::SqliteStoreOptions so;
  so.path = dir.Sub("sched.db");
  so.synchronous_full = false;
  ASSERT_OK_AND_ASSIGN(auto st, store::SqliteStore::Open(so));
  core::Tenant t;
  t.name = "a";
  ASSERT_OK_AND_ASSIGN(t, st->CreateTenant(t));
  WebhookRegistry strict(st.get(), TargetPolicy{});
  auto field_of = [&](NewEndpoint in) {
    absl::StatusOr<store::WebhookEndpoint> e = strict.Create(t.id, in);
    EXPECT_THAT(e, StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
    auto info = engine::GetErrorInfo(e.status());
    return info ? info->field() : std::string("(none)");
  };
  EXPECT_EQ(field_of({"http://127.0.0.1/x", {"fine_tuning.job.failed"}, ""}),
            "url");
  EXPECT_EQ(field_of({"https://10.0.0.1/x", {"fine_tuning.job.failed"}, ""}),
            "url");
  WebhookRegistry open(st.get(), {true, true});
  EXPECT_THAT(
      open.Create(t.id, {"http://127.0.0.1/x", {}, ""}),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("event_types")));
  EXPECT_THAT(open.Create(t.id, {"http://127.0.0.1/x", {"job.done"}, ""}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("unknown event type \"job.done\"")));
  EXPECT_THAT(
      open.Create(t.id, {"http://127.0.0.1/x",
                         {"fine_tuning.job.failed"},
                         std::string(513, 'd')}),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("description")));
  ASSERT_OK_AND_ASSIGN(auto none, st->ListWebhookEndpoints(t.id, 10, ""));
  EXPECT_TRUE(none.items.empty());
  // Duplicates collapse; the secret is returned.
  ASSERT_OK_AND_ASSIGN(
      store::WebhookEndpoint e,
      open.Create(t.id, {"http://127.0.0.1/x",
                         {"fine_tuning.job.failed", "fine_tuning.job.failed"},
                         ""}));
  EXPECT_EQ(e.event_types.size(), 1u);
  EXPECT_THAT(e.secret, StartsWith("whsec_"));
}

TEST(WebhookBackoffTest, DoublesUpToTheCapWithJitterBelowOne) {
  DeliveryOptions o;
  o.initial_backoff = absl::Seconds(5);
  o.max_backoff = absl::Seconds(60);
  EXPECT_EQ(RetryBackoff(o, 1, 1.0), absl::Seconds(5));
  EXPECT_EQ(RetryBackoff(o, 2, 1.0), absl::Seconds(10));
  EXPECT_EQ(RetryBackoff(o, 4, 1.0), absl::Seconds(40));
  EXPECT_EQ(RetryBackoff(o, 5, 1.0), absl::Seconds(60));
  EXPECT_EQ(RetryBackoff(o, 500, 1.0), absl::Seconds(60));
  EXPECT_EQ(RetryBackoff(o, 3, 0.5), absl::Seconds(10));
  // The largest jittered wait of one attempt never exceeds the smallest of
  // the next (below the cap): gaps grow.
  for (int n = 1; n < 4; ++n) {
    EXPECT_LE(RetryBackoff(o, n, 0.999), RetryBackoff(o, n + 1, 0.5));
  }
  o.max_in_flight = 0;
  EXPECT_THAT(ValidateDeliveryOptions(o),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("webhook_max_in_flight")));
}

}  // namespace
}  // namespace ftune::server::webhook
