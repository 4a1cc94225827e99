// ftunectl webhooks create|list|get|delete|deliveries (WebhookService,
// docs/webhooks.md).
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/commands_internal.h"
#include "ftune/v1/webhook.grpc.pb.h"

namespace ftune::client {
namespace {

std::unique_ptr<v1::WebhookService::Stub> Stub(const CommandContext& c) {
  return v1::WebhookService::NewStub(c.conn.channel());
}

void PrintWebhook(const CommandContext& c, const v1::Webhook& w) {
  if (c.output.structured()) return c.output.Message(w);
  c.output.Fields({{"id", w.id()},
                   {"url", w.url()},
                   {"event_types", absl::StrJoin(w.event_types(), ",")},
                   {"description", w.description()},
                   {"created", FormatTime(w.create_time())},
                   {"disabled", w.disabled() ? "true" : "false"}});
}

std::string DeliveryState(v1::WebhookDelivery::State s) {
  switch (s) {
    case v1::WebhookDelivery::STATE_PENDING:
      return "PENDING";
    case v1::WebhookDelivery::STATE_DELIVERED:
      return "DELIVERED";
    case v1::WebhookDelivery::STATE_FAILED:
      return "FAILED";
    default:
      return "UNSPECIFIED";
  }
}

}  // namespace

int WebhooksCreate(const CommandContext& c) {
  v1::CreateWebhookRequest req;
  req.set_url(c.arg(0));
  for (const std::string& t : c.flags().GetAll("event-type")) {
    req.add_event_types(t);
  }
  req.set_description(c.flags().Get("description"));
  v1::CreateWebhookResponse resp;
  int rc = Unary(c, [&](grpc::ClientContext* ctx) {
    return Stub(c)->CreateWebhook(ctx, req, &resp);
  });
  if (rc != kExitOk) return rc;
  if (c.output.structured()) {
    c.output.Message(resp);
    return kExitOk;
  }
  c.output.Fields(
      {{"id", resp.webhook().id()},
       {"url", resp.webhook().url()},
       {"event_types", absl::StrJoin(resp.webhook().event_types(), ",")},
       {"secret", resp.secret()}});
  c.output.err() << "(the secret is shown only now: store it where the "
                    "receiver verifies signatures)\n";
  return kExitOk;
}

int WebhooksList(const CommandContext& c) {
  auto stub = Stub(c);
  v1::ListWebhooksResponse all;
  int rc = ListPages(
      c, v1::ListWebhooksRequest(),
      [&](grpc::ClientContext* ctx, const v1::ListWebhooksRequest& r,
          v1::ListWebhooksResponse* resp) {
        return stub->ListWebhooks(ctx, r, resp);
      },
      &all);
  if (rc != kExitOk) return rc;
  if (c.output.structured()) {
    c.output.Message(all);
    return kExitOk;
  }
  Table table({"ID", "URL", "EVENT_TYPES", "CREATED"});
  for (const v1::Webhook& w : all.webhooks()) {
    table.Add({w.id(), w.url(), absl::StrJoin(w.event_types(), ","),
               FormatTime(w.create_time())});
  }
  table.Print(c.output.out());
  return kExitOk;
}

int WebhooksGet(const CommandContext& c) {
  v1::GetWebhookRequest req;
  req.set_id(c.arg(0));
  v1::Webhook w;
  int rc = Unary(c, [&](grpc::ClientContext* ctx) {
    return Stub(c)->GetWebhook(ctx, req, &w);
  });
  if (rc == kExitOk) PrintWebhook(c, w);
  return rc;
}

int WebhooksDelete(const CommandContext& c) {
  v1::DeleteWebhookRequest req;
  req.set_id(c.arg(0));
  v1::Webhook w;
  int rc = Unary(c, [&](grpc::ClientContext* ctx) {
    return Stub(c)->DeleteWebhook(ctx, req, &w);
  });
  if (rc != kExitOk) return rc;
  if (c.output.structured()) {
    c.output.Message(w);
  } else {
    c.output.out() << w.id() << ": deleted\n";
  }
  return kExitOk;
}

int WebhooksDeliveries(const CommandContext& c) {
  v1::ListWebhookDeliveriesRequest req;
  req.set_webhook_id(c.arg(0));
  auto stub = Stub(c);
  v1::ListWebhookDeliveriesResponse all;
  int rc = ListPages(
      c, req,
      [&](grpc::ClientContext* ctx, const v1::ListWebhookDeliveriesRequest& r,
          v1::ListWebhookDeliveriesResponse* resp) {
        return stub->ListWebhookDeliveries(ctx, r, resp);
      },
      &all);
  if (rc != kExitOk) return rc;
  if (c.output.structured()) {
    c.output.Message(all);
    return kExitOk;
  }
  Table table({"ID", "EVENT", "JOB", "STATE", "ATTEMPTS", "LAST", "NEXT"});
  for (const v1::WebhookDelivery& d : all.deliveries()) {
    std::string last = d.last_status_code() != 0
                           ? absl::StrCat("HTTP ", d.last_status_code())
                           : d.last_error();
    table.Add({d.id(), d.event_type(), d.job_id(), DeliveryState(d.state()),
               absl::StrCat(d.attempts()), last,
               FormatTime(d.next_attempt_time())});
  }
  table.Print(c.output.out());
  return kExitOk;
}

int WebhooksUpdate(const CommandContext& c) {
  v1::UpdateWebhookRequest req;
  req.set_id(c.arg(0));
  if (c.flags().Has("disabled"))
    req.set_disabled(c.flags().GetBool("disabled"));
  if (c.flags().Has("description")) {
    req.set_description(c.flags().Get("description"));
  }
  for (const std::string& t : c.flags().GetAll("event-type")) {
    req.add_event_types(t);
  }
  v1::Webhook w;
  int rc = Unary(c, [&](grpc::ClientContext* ctx) {
    return Stub(c)->UpdateWebhook(ctx, req, &w);
  });
  if (rc == kExitOk) PrintWebhook(c, w);
  return rc;
}

int WebhooksRotateSecret(const CommandContext& c) {
  v1::RotateWebhookSecretRequest req;
  req.set_id(c.arg(0));
  if (c.flags().Has("grace")) {
    absl::Duration grace;
    if (!absl::ParseDuration(c.flags().Get("grace"), &grace)) {
      return UsageFailure(c, absl::StrCat("--grace \"", c.flags().Get("grace"),
                                          "\": not a duration (e.g. 1h, 30m)"));
    }
    req.set_grace_seconds(absl::ToInt64Seconds(grace));
  }
  v1::CreateWebhookResponse resp;
  int rc = Unary(c, [&](grpc::ClientContext* ctx) {
    return Stub(c)->RotateWebhookSecret(ctx, req, &resp);
  });
  if (rc != kExitOk) return rc;
  if (c.output.structured()) {
    c.output.Message(resp);
    return kExitOk;
  }
  c.output.Fields({{"id", resp.webhook().id()}, {"secret", resp.secret()}});
  c.output.err() << "(the new secret is shown only now; deliveries carry a "
                    "signature with the old one too during the grace "
                    "period)\n";
  return kExitOk;
}

int WebhooksRedeliver(const CommandContext& c) {
  v1::RedeliverWebhookDeliveryRequest req;
  req.set_webhook_id(c.arg(0));
  req.set_delivery_id(c.arg(1));
  v1::WebhookDelivery d;
  int rc = Unary(c, [&](grpc::ClientContext* ctx) {
    return Stub(c)->RedeliverWebhookDelivery(ctx, req, &d);
  });
  if (rc != kExitOk) return rc;
  if (c.output.structured()) {
    c.output.Message(d);
  } else {
    c.output.out() << d.id() << ": " << d.event_type() << " of " << d.job_id()
                   << " queued again (event " << d.event_id() << ")\n";
  }
  return kExitOk;
}

}  // namespace ftune::client
