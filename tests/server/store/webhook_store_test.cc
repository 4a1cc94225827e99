// The webhook endpoints and outbox over a real SQLite file: outbox rows come
// from the job events themselves (same transaction), only for the job's
// tenant and the endpoint's types; tenancy; attempts; delete.
#include <string>
#include <vector>

#include "common/ids.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "server/store/webhook_store.h"
#include "tests/server/store/store_fixture.h"

namespace ftune::store {
namespace {

using ::ftune::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

class WebhookStoreTest : public testing::StoreTest {
 protected:
  WebhookEndpoint MustCreateEndpoint(const std::string& tenant_id,
                                     std::vector<std::string> types) {
    WebhookEndpoint e;
    e.tenant_id = tenant_id;
    e.url = "https://hooks.example.com/ftune";
    e.secret = "whsec_c2VjcmV0";
    e.event_types = std::move(types);
    auto r = store_->CreateWebhookEndpoint(e);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : WebhookEndpoint{};
  }

  std::vector<WebhookDelivery> Deliveries(const std::string& tenant_id,
                                          const std::string& endpoint_id) {
    auto page = store_->ListWebhookDeliveries(tenant_id, endpoint_id, 100, "");
    EXPECT_TRUE(page.ok()) << page.status();
    return page.ok() ? page->items : std::vector<WebhookDelivery>{};
  }
};

TEST_F(WebhookStoreTest, JobEventsWriteOutboxRowsForMatchingEndpointsOnly) {
  const TenantSetup a = MakeTenant("a");
  const TenantSetup b = MakeTenant("b");
  const WebhookEndpoint a1 = MustCreateEndpoint(
      a.tenant.id,
      {std::string(kEventJobPaused), std::string(kEventJobCancelled)});
  const WebhookEndpoint a2 =
      MustCreateEndpoint(a.tenant.id, {std::string(kEventJobSucceeded)});
  const WebhookEndpoint b1 = MustCreateEndpoint(
      b.tenant.id,
      {std::string(kEventJobPaused), std::string(kEventJobCancelled)});
  EXPECT_TRUE(IsValidId(a1.id, kWebhookIdPrefix)) << a1.id;

  const core::Job job = MustCreate(NewJob(a));
  ASSERT_OK(store_->PauseJob(a.tenant.id, job.id));  // QUEUED -> PAUSED
  ASSERT_OK(store_->CancelJob(a.tenant.id, job.id, "no longer needed"));

  const std::vector<WebhookDelivery> got = Deliveries(a.tenant.id, a1.id);
  ASSERT_THAT(got, SizeIs(2));
  // Newest first.
  EXPECT_EQ(got[0].event_type, kEventJobCancelled);
  EXPECT_EQ(got[1].event_type, kEventJobPaused);
  EXPECT_NE(got[0].event_id, got[1].event_id);
  for (const WebhookDelivery& d : got) {
    EXPECT_EQ(d.state, WebhookDeliveryState::kPending);
    EXPECT_EQ(d.attempts, 0);
    EXPECT_EQ(d.job_id, job.id);
    EXPECT_EQ(d.tenant_id, a.tenant.id);
    EXPECT_EQ(d.next_attempt_time, clock_.Now());
    const nlohmann::json body = nlohmann::json::parse(d.payload);
    EXPECT_EQ(body["id"], d.event_id);
    EXPECT_EQ(body["object"], "event");
    EXPECT_EQ(body["type"], d.event_type);
    EXPECT_EQ(body["created_at"], absl::ToUnixSeconds(clock_.Now()));
    EXPECT_EQ(body["data"]["id"], job.id);
    EXPECT_TRUE(d.event_id.rfind("evt_", 0) == 0) << d.event_id;
  }
  EXPECT_EQ(nlohmann::json::parse(got[0].payload)["data"]["status"],
            "cancelled");
  EXPECT_EQ(nlohmann::json::parse(got[1].payload)["data"]["status"], "paused");
  EXPECT_THAT(Deliveries(a.tenant.id, a2.id), IsEmpty());  // Other type.
  EXPECT_THAT(Deliveries(b.tenant.id, b1.id), IsEmpty());  // Other tenant.

  // Both are due now, and only a1's.
  ASSERT_OK_AND_ASSIGN(auto due,
                       store_->ListDueWebhookDeliveries(clock_.Now(), 10, {}));
  ASSERT_THAT(due, SizeIs(2));
  EXPECT_EQ(due[0].url, a1.url);
  EXPECT_EQ(due[0].secret, a1.secret);
  ASSERT_OK_AND_ASSIGN(auto rest, store_->ListDueWebhookDeliveries(
                                      clock_.Now(), 10, {due[0].delivery.id}));
  EXPECT_THAT(rest, SizeIs(1));
  ASSERT_OK_AND_ASSIGN(auto early,
                       store_->ListDueWebhookDeliveries(
                           clock_.Now() - absl::Seconds(1), 10, {}));
  EXPECT_THAT(early, IsEmpty());
}

// A worker's EVAL_IMPROVED event (a new best evaluation) becomes an
// ftune.job.eval_improved delivery carrying its step; the EVAL beside it
// and an endpoint without the type get none.
TEST_F(WebhookStoreTest, EvalImprovedEventsBecomeOptInDeliveries) {
  const TenantSetup a = MakeTenant("a");
  const WebhookEndpoint wants =
      MustCreateEndpoint(a.tenant.id, {std::string(kEventEvalImproved)});
  const WebhookEndpoint other =
      MustCreateEndpoint(a.tenant.id, {std::string(kEventCheckpointSaved)});
  const core::Job job = MustCreate(NewJob(a));
  const core::Worker worker = MustRegisterWorker();
  ASSERT_OK(
      store_->GrantLease(job.id, 1, worker.id, clock_.Now() + absl::Hours(1)));
  ProgressReport r;
  r.worker_id = worker.id;
  r.job_id = job.id;
  r.attempt = 1;
  r.batch_number = 1;
  core::JobEvent eval;
  eval.type = core::JobEventType::kEval;
  eval.step = 10;
  eval.message = "eval_loss 1.5 at step 10 (best 1.5 at step 10)";
  core::JobEvent improved = eval;
  improved.type = core::JobEventType::kEvalImproved;
  improved.message = "new best evaluation at step 10: eval_loss 1.5";
  r.events = {eval, improved};
  ASSERT_OK(store_->ApplyProgress(r).status());

  const std::vector<WebhookDelivery> got = Deliveries(a.tenant.id, wants.id);
  ASSERT_THAT(got, SizeIs(1));
  EXPECT_EQ(got[0].event_type, kEventEvalImproved);
  const nlohmann::json body = nlohmann::json::parse(got[0].payload);
  EXPECT_EQ(body["type"], "ftune.job.eval_improved");
  EXPECT_EQ(body["data"]["id"], job.id);
  EXPECT_EQ(body["data"]["ftune"]["step"], 10);
  EXPECT_EQ(body["data"]["ftune"]["message"], improved.message);
  EXPECT_THAT(Deliveries(a.tenant.id, other.id), IsEmpty());
}

// Disabling an endpoint holds its pending deliveries (not due) and queues
// none for new events; enabling it releases them. Redelivery copies the
// event into a new pending delivery; an unknown event type is refused and
// changes nothing.
TEST_F(WebhookStoreTest, DisabledEndpointsHoldDeliveriesAndRedeliveryCopies) {
  const TenantSetup a = MakeTenant("a");
  const TenantSetup b = MakeTenant("b");
  const WebhookEndpoint e =
      MustCreateEndpoint(a.tenant.id, {std::string(kEventJobCancelled)});
  ASSERT_OK(store_->CancelJob(a.tenant.id, MustCreate(NewJob(a)).id, ""));
  ASSERT_OK_AND_ASSIGN(auto due,
                       store_->ListDueWebhookDeliveries(clock_.Now(), 10, {}));
  ASSERT_THAT(due, SizeIs(1));

  WebhookEndpointUpdate off;
  off.disabled = true;
  EXPECT_THAT(store_->UpdateWebhookEndpoint(b.tenant.id, e.id, off),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr(e.id)));
  ASSERT_OK_AND_ASSIGN(WebhookEndpoint disabled,
                       store_->UpdateWebhookEndpoint(a.tenant.id, e.id, off));
  EXPECT_TRUE(disabled.disabled);
  ASSERT_OK_AND_ASSIGN(due,
                       store_->ListDueWebhookDeliveries(clock_.Now(), 10, {}));
  EXPECT_THAT(due, IsEmpty());  // Held.
  ASSERT_OK(store_->CancelJob(a.tenant.id, MustCreate(NewJob(a)).id, ""));
  EXPECT_THAT(Deliveries(a.tenant.id, e.id), SizeIs(1));  // None queued.
  const WebhookDelivery original = Deliveries(a.tenant.id, e.id)[0];
  EXPECT_THAT(
      store_->RedeliverWebhookDelivery(a.tenant.id, e.id, original.id),
      StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("disabled")));

  WebhookEndpointUpdate on;
  on.disabled = false;
  on.event_types = std::vector<std::string>{"no.such.type"};
  EXPECT_THAT(
      store_->UpdateWebhookEndpoint(a.tenant.id, e.id, on),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("event_types")));
  ASSERT_OK_AND_ASSIGN(WebhookEndpoint still,
                       store_->GetWebhookEndpoint(a.tenant.id, e.id));
  EXPECT_TRUE(still.disabled);
  on.event_types.reset();
  ASSERT_OK(store_->UpdateWebhookEndpoint(a.tenant.id, e.id, on).status());
  ASSERT_OK_AND_ASSIGN(due,
                       store_->ListDueWebhookDeliveries(clock_.Now(), 10, {}));
  EXPECT_THAT(due, SizeIs(1));  // Released.

  clock_.Advance(absl::Minutes(5));
  EXPECT_THAT(store_->RedeliverWebhookDelivery(b.tenant.id, e.id, original.id),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr(e.id)));
  ASSERT_OK_AND_ASSIGN(
      WebhookDelivery copy,
      store_->RedeliverWebhookDelivery(a.tenant.id, e.id, original.id));
  EXPECT_NE(copy.id, original.id);
  EXPECT_EQ(copy.event_id, original.event_id);
  EXPECT_EQ(copy.payload, original.payload);
  EXPECT_EQ(copy.state, WebhookDeliveryState::kPending);
  EXPECT_EQ(copy.create_time, clock_.Now());
  EXPECT_EQ(copy.next_attempt_time, clock_.Now());
  const std::vector<WebhookDelivery> log = Deliveries(a.tenant.id, e.id);
  ASSERT_THAT(log, SizeIs(2));
  EXPECT_EQ(log[0].id, copy.id);                  // Newest first.
  EXPECT_EQ(log[1].attempts, original.attempts);  // The original unchanged.
}

TEST_F(WebhookStoreTest, AttemptsRetryThenSettle) {
  const TenantSetup a = MakeTenant("a");
  const WebhookEndpoint e =
      MustCreateEndpoint(a.tenant.id, {std::string(kEventJobCancelled)});
  const core::Job job = MustCreate(NewJob(a));
  ASSERT_OK(store_->CancelJob(a.tenant.id, job.id, ""));
  ASSERT_OK_AND_ASSIGN(auto due,
                       store_->ListDueWebhookDeliveries(clock_.Now(), 10, {}));
  ASSERT_THAT(due, SizeIs(1));
  const std::string id = due[0].delivery.id;

  WebhookAttemptResult retry;
  retry.time = clock_.Now();
  retry.status_code = 503;
  retry.response_prefix = "busy";
  retry.next_attempt_time = clock_.Now() + absl::Seconds(5);
  ASSERT_OK_AND_ASSIGN(WebhookDelivery d,
                       store_->RecordWebhookAttempt(id, retry));
  EXPECT_EQ(d.attempts, 1);
  ASSERT_OK_AND_ASSIGN(auto none,
                       store_->ListDueWebhookDeliveries(clock_.Now(), 10, {}));
  EXPECT_THAT(none, IsEmpty());
  ASSERT_OK_AND_ASSIGN(std::optional<absl::Time> next,
                       store_->NextWebhookDueTime());
  EXPECT_EQ(next, retry.next_attempt_time);

  WebhookAttemptResult ok;
  ok.time = clock_.Now() + absl::Seconds(5);
  ok.status_code = 204;
  ok.state = WebhookDeliveryState::kDelivered;
  ASSERT_OK_AND_ASSIGN(d, store_->RecordWebhookAttempt(id, ok));
  EXPECT_EQ(d.attempts, 2);
  EXPECT_THAT(store_->RecordWebhookAttempt(id, ok),
              StatusIs(absl::StatusCode::kFailedPrecondition, ::testing::_));
  const std::vector<WebhookDelivery> log = Deliveries(a.tenant.id, e.id);
  ASSERT_THAT(log, SizeIs(1));
  EXPECT_EQ(log[0].state, WebhookDeliveryState::kDelivered);
  EXPECT_EQ(log[0].last_status_code, 204);
  EXPECT_EQ(log[0].last_attempt_time, ok.time);
  ASSERT_OK_AND_ASSIGN(next, store_->NextWebhookDueTime());
  EXPECT_EQ(next, std::nullopt);
}

TEST_F(WebhookStoreTest, ForeignEndpointsAnswerLikeMissingOnes) {
  const TenantSetup a = MakeTenant("a");
  const TenantSetup b = MakeTenant("b");
  const WebhookEndpoint e =
      MustCreateEndpoint(a.tenant.id, {std::string(kEventJobFailed)});
  const std::string never = "wh-aaaaaaaaaaaaaaaaaaaaaaaa";
  auto foreign = store_->GetWebhookEndpoint(b.tenant.id, e.id);
  auto missing = store_->GetWebhookEndpoint(b.tenant.id, never);
  EXPECT_THAT(foreign, StatusIs(absl::StatusCode::kNotFound, ::testing::_));
  EXPECT_EQ(
      foreign.status().message(),
      std::string(missing.status().message())
          .replace(missing.status().message().find(never), never.size(), e.id));
  EXPECT_THAT(store_->DeleteWebhookEndpoint(b.tenant.id, e.id),
              StatusIs(absl::StatusCode::kNotFound, ::testing::_));
  EXPECT_THAT(store_->ListWebhookDeliveries(b.tenant.id, e.id, 10, ""),
              StatusIs(absl::StatusCode::kNotFound, ::testing::_));
  ASSERT_OK_AND_ASSIGN(auto b_list,
                       store_->ListWebhookEndpoints(b.tenant.id, 10, ""));
  EXPECT_THAT(b_list.items, IsEmpty());
  ASSERT_OK_AND_ASSIGN(auto a_list,
                       store_->ListWebhookEndpoints(a.tenant.id, 10, ""));
  ASSERT_THAT(a_list.items, SizeIs(1));
  EXPECT_EQ(a_list.items[0].id, e.id);
  EXPECT_THAT(a_list.items[0].event_types,
              ElementsAre(std::string(kEventJobFailed)));
  ASSERT_OK(store_->GetWebhookEndpoint(a.tenant.id, e.id));
}

TEST_F(WebhookStoreTest, BadEndpointsAreRefusedAndNothingIsCreated) {
  const TenantSetup a = MakeTenant("a");
  WebhookEndpoint e;
  e.tenant_id = a.tenant.id;
  e.url = "https://hooks.example.com/";
  e.secret = "whsec_c2VjcmV0";
  e.event_types = {"fine_tuning.job.exploded"};
  EXPECT_THAT(
      store_->CreateWebhookEndpoint(e),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("event_types")));
  e.event_types = {};
  EXPECT_THAT(
      store_->CreateWebhookEndpoint(e),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("event_types")));
  e.event_types = {std::string(kEventJobFailed)};
  e.tenant_id = "tenant-aaaaaaaaaaaaaaaaaaaaaaaa";
  EXPECT_THAT(store_->CreateWebhookEndpoint(e),
              StatusIs(absl::StatusCode::kNotFound, ::testing::_));
  ASSERT_OK_AND_ASSIGN(auto list,
                       store_->ListWebhookEndpoints(kAnyTenant, 10, ""));
  EXPECT_THAT(list.items, IsEmpty());
}

TEST_F(WebhookStoreTest, DeletingAnEndpointDropsItsDeliveries) {
  const TenantSetup a = MakeTenant("a");
  const WebhookEndpoint e =
      MustCreateEndpoint(a.tenant.id, {std::string(kEventJobCancelled)});
  const core::Job job = MustCreate(NewJob(a));
  ASSERT_OK(store_->CancelJob(a.tenant.id, job.id, ""));
  ASSERT_OK(store_->DeleteWebhookEndpoint(a.tenant.id, e.id));
  ASSERT_OK_AND_ASSIGN(auto due,
                       store_->ListDueWebhookDeliveries(clock_.Now(), 10, {}));
  EXPECT_THAT(due, IsEmpty());
  EXPECT_THAT(store_->GetWebhookEndpoint(a.tenant.id, e.id),
              StatusIs(absl::StatusCode::kNotFound, ::testing::_));
}

}  // namespace
}  // namespace ftune::store
