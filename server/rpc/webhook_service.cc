#include "server/rpc/webhook_service.h"

#include <utility>

#include "common/status.h"
#include "server/rpc/auth.h"
#include "server/rpc/convert.h"
#include "server/rpc/executor.h"
#include "server/rpc/pagination.h"
#include "server/rpc/status_util.h"
#include "server/store/webhook_store.h"
#include "server/webhook/registry.h"

namespace ftune::server::rpc {
namespace {

void ToProto(const store::WebhookEndpoint& e, v1::Webhook* out) {
  out->set_id(e.id);
  out->set_url(e.url);
  for (const std::string& t : e.event_types) out->add_event_types(t);
  out->set_description(e.description);
  SetTimestamp(e.create_time, out->mutable_create_time());
  out->set_disabled(e.disabled);
}

void ToProto(const store::WebhookDelivery& d, v1::WebhookDelivery* out) {
  out->set_id(d.id);
  out->set_event_id(d.event_id);
  out->set_event_type(d.event_type);
  out->set_job_id(d.job_id);
  out->set_state(static_cast<v1::WebhookDelivery::State>(d.state));
  out->set_attempts(d.attempts);
  SetTimestamp(d.create_time, out->mutable_create_time());
  if (d.state == store::WebhookDeliveryState::kPending) {
    SetTimestamp(d.next_attempt_time, out->mutable_next_attempt_time());
  }
  if (d.last_attempt_time != absl::InfinitePast()) {
    SetTimestamp(d.last_attempt_time, out->mutable_last_attempt_time());
  }
  out->set_last_status_code(static_cast<int32_t>(d.last_status_code));
  out->set_last_error(d.last_error);
  out->set_last_response(d.last_response);
  out->set_payload(d.payload);
}

absl::Status RequireId(const std::string& id, const std::string& field) {
  if (id.empty()) return InvalidField(field, field + ": is required");
  return absl::OkStatus();
}

}  // namespace

WebhookServiceImpl::WebhookServiceImpl(webhook::WebhookRegistry* registry,
                                       Authenticator* auth, Executor* executor)
    : registry_(registry), auth_(auth), executor_(executor) {}

grpc::ServerUnaryReactor* WebhookServiceImpl::Unary(
    grpc::CallbackServerContext* ctx,
    std::function<absl::Status(const Principal&)> fn) {
  return RunUnary(executor_, ctx, [this, ctx, fn = std::move(fn)] {
    absl::StatusOr<Principal> caller = RequireTenant(*auth_, *ctx);
    return caller.ok() ? fn(*caller) : caller.status();
  });
}

grpc::ServerUnaryReactor* WebhookServiceImpl::CreateWebhook(
    grpc::CallbackServerContext* ctx, const v1::CreateWebhookRequest* request,
    v1::CreateWebhookResponse* response) {
  return Unary(ctx, [this, request, response](const Principal& caller) {
    webhook::NewEndpoint in;
    in.url = request->url();
    in.event_types.assign(request->event_types().begin(),
                          request->event_types().end());
    in.description = request->description();
    FTUNE_ASSIGN_OR_RETURN(store::WebhookEndpoint e,
                           registry_->Create(caller.tenant_id, std::move(in)));
    ToProto(e, response->mutable_webhook());
    response->set_secret(e.secret);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* WebhookServiceImpl::GetWebhook(
    grpc::CallbackServerContext* ctx, const v1::GetWebhookRequest* request,
    v1::Webhook* response) {
  return Unary(ctx, [this, request, response](const Principal& caller) {
    FTUNE_RETURN_IF_ERROR(RequireId(request->id(), "id"));
    absl::StatusOr<store::WebhookEndpoint> e =
        registry_->store()->GetWebhookEndpoint(caller.tenant_id, request->id());
    FTUNE_RETURN_IF_ERROR(AboutResource(e.status(), request->id()));
    ToProto(*e, response);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* WebhookServiceImpl::ListWebhooks(
    grpc::CallbackServerContext* ctx, const v1::ListWebhooksRequest* request,
    v1::ListWebhooksResponse* response) {
  return Unary(ctx, [this, request, response](const Principal& caller) {
    FTUNE_ASSIGN_OR_RETURN(int page_size,
                           ResolvePageSize(request->page_size(), 100, 1000));
    absl::StatusOr<store::Page<store::WebhookEndpoint>> page =
        registry_->store()->ListWebhookEndpoints(caller.tenant_id, page_size,
                                                 request->page_token());
    if (absl::IsInvalidArgument(page.status())) {
      return InvalidField("page_token", std::string(page.status().message()));
    }
    FTUNE_RETURN_IF_ERROR(page.status());
    for (const auto& e : page->items) ToProto(e, response->add_webhooks());
    response->set_next_page_token(page->next_page_token);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* WebhookServiceImpl::DeleteWebhook(
    grpc::CallbackServerContext* ctx, const v1::DeleteWebhookRequest* request,
    v1::Webhook* response) {
  return Unary(ctx, [this, request, response](const Principal& caller) {
    FTUNE_RETURN_IF_ERROR(RequireId(request->id(), "id"));
    absl::StatusOr<store::WebhookEndpoint> e =
        registry_->store()->DeleteWebhookEndpoint(caller.tenant_id,
                                                  request->id());
    FTUNE_RETURN_IF_ERROR(AboutResource(e.status(), request->id()));
    ToProto(*e, response);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* WebhookServiceImpl::ListWebhookDeliveries(
    grpc::CallbackServerContext* ctx,
    const v1::ListWebhookDeliveriesRequest* request,
    v1::ListWebhookDeliveriesResponse* response) {
  return Unary(ctx, [this, request, response](const Principal& caller) {
    FTUNE_RETURN_IF_ERROR(RequireId(request->webhook_id(), "webhook_id"));
    FTUNE_ASSIGN_OR_RETURN(int page_size,
                           ResolvePageSize(request->page_size(), 100, 1000));
    absl::StatusOr<store::Page<store::WebhookDelivery>> page =
        registry_->store()->ListWebhookDeliveries(
            caller.tenant_id, request->webhook_id(), page_size,
            request->page_token());
    if (absl::IsInvalidArgument(page.status())) {
      return InvalidField("page_token", std::string(page.status().message()));
    }
    FTUNE_RETURN_IF_ERROR(AboutResource(page.status(), request->webhook_id()));
    for (const auto& d : page->items) ToProto(d, response->add_deliveries());
    response->set_next_page_token(page->next_page_token);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* WebhookServiceImpl::UpdateWebhook(
    grpc::CallbackServerContext* ctx, const v1::UpdateWebhookRequest* request,
    v1::Webhook* response) {
  return Unary(ctx, [this, request, response](const Principal& caller) {
    FTUNE_RETURN_IF_ERROR(RequireId(request->id(), "id"));
    store::WebhookEndpointUpdate update;
    if (request->has_disabled()) update.disabled = request->disabled();
    if (request->has_description()) update.description = request->description();
    if (request->event_types_size() > 0) {
      update.event_types.emplace(request->event_types().begin(),
                                 request->event_types().end());
    }
    if (!update.disabled && !update.description && !update.event_types) {
      return InvalidField("id",
                          "nothing to change: set disabled, description or "
                          "event_types");
    }
    absl::StatusOr<store::WebhookEndpoint> e =
        registry_->Update(caller.tenant_id, request->id(), std::move(update));
    FTUNE_RETURN_IF_ERROR(AboutResource(e.status(), request->id()));
    ToProto(*e, response);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* WebhookServiceImpl::RotateWebhookSecret(
    grpc::CallbackServerContext* ctx,
    const v1::RotateWebhookSecretRequest* request,
    v1::CreateWebhookResponse* response) {
  return Unary(ctx, [this, request, response](const Principal& caller) {
    FTUNE_RETURN_IF_ERROR(RequireId(request->id(), "id"));
    const absl::Duration grace = request->has_grace_seconds()
                                     ? absl::Seconds(request->grace_seconds())
                                     : webhook::kDefaultRotationGrace;
    absl::StatusOr<store::WebhookEndpoint> e =
        registry_->RotateSecret(caller.tenant_id, request->id(), grace);
    FTUNE_RETURN_IF_ERROR(AboutResource(e.status(), request->id()));
    ToProto(*e, response->mutable_webhook());
    response->set_secret(e->secret);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* WebhookServiceImpl::RedeliverWebhookDelivery(
    grpc::CallbackServerContext* ctx,
    const v1::RedeliverWebhookDeliveryRequest* request,
    v1::WebhookDelivery* response) {
  return Unary(ctx, [this, request, response](const Principal& caller) {
    FTUNE_RETURN_IF_ERROR(RequireId(request->webhook_id(), "webhook_id"));
    FTUNE_RETURN_IF_ERROR(RequireId(request->delivery_id(), "delivery_id"));
    absl::StatusOr<store::WebhookDelivery> d =
        registry_->store()->RedeliverWebhookDelivery(
            caller.tenant_id, request->webhook_id(), request->delivery_id());
    FTUNE_RETURN_IF_ERROR(d.status());
    ToProto(*d, response);
    return absl::OkStatus();
  });
}

}  // namespace ftune::server::rpc
