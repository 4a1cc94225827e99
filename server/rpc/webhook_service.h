// WebhookService (proto/ftune/v1/webhook.proto): a tenant's webhook
// endpoints and delivery log, over webhook::WebhookRegistry and the store.
//
// Thread-safety: called concurrently by gRPC; immutable after construction.
#ifndef FTUNE_SERVER_RPC_WEBHOOK_SERVICE_H_
#define FTUNE_SERVER_RPC_WEBHOOK_SERVICE_H_

#include "ftune/v1/webhook.grpc.pb.h"
#include "server/rpc/principal.h"

namespace ftune::server::webhook {
class WebhookRegistry;
}  // namespace ftune::server::webhook

namespace ftune::server::rpc {

class Executor;

class WebhookServiceImpl final : public v1::WebhookService::CallbackService {
 public:
  // Not owned; all must outlive the service. `executor` may be null (calls
  // then run on gRPC's threads); registration resolves the URL's host, so
  // the scheduler passes its executor.
  WebhookServiceImpl(webhook::WebhookRegistry* registry, Authenticator* auth,
                     Executor* executor);

  grpc::ServerUnaryReactor* CreateWebhook(
      grpc::CallbackServerContext* ctx, const v1::CreateWebhookRequest* request,
      v1::CreateWebhookResponse* response) override;
  grpc::ServerUnaryReactor* GetWebhook(grpc::CallbackServerContext* ctx,
                                       const v1::GetWebhookRequest* request,
                                       v1::Webhook* response) override;
  grpc::ServerUnaryReactor* ListWebhooks(
      grpc::CallbackServerContext* ctx, const v1::ListWebhooksRequest* request,
      v1::ListWebhooksResponse* response) override;
  grpc::ServerUnaryReactor* DeleteWebhook(
      grpc::CallbackServerContext* ctx, const v1::DeleteWebhookRequest* request,
      v1::Webhook* response) override;
  grpc::ServerUnaryReactor* ListWebhookDeliveries(
      grpc::CallbackServerContext* ctx,
      const v1::ListWebhookDeliveriesRequest* request,
      v1::ListWebhookDeliveriesResponse* response) override;
  grpc::ServerUnaryReactor* UpdateWebhook(
      grpc::CallbackServerContext* ctx, const v1::UpdateWebhookRequest* request,
      v1::Webhook* response) override;
  grpc::ServerUnaryReactor* RotateWebhookSecret(
      grpc::CallbackServerContext* ctx,
      const v1::RotateWebhookSecretRequest* request,
      v1::CreateWebhookResponse* response) override;
  grpc::ServerUnaryReactor* RedeliverWebhookDelivery(
      grpc::CallbackServerContext* ctx,
      const v1::RedeliverWebhookDeliveryRequest* request,
      v1::WebhookDelivery* response) override;

 private:
  grpc::ServerUnaryReactor* Unary(
      grpc::CallbackServerContext* ctx,
      std::function<absl::Status(const Principal&)> fn);

  webhook::WebhookRegistry* const registry_;
  Authenticator* const auth_;
  Executor* const executor_;
};

}  // namespace ftune::server::rpc

#endif  // FTUNE_SERVER_RPC_WEBHOOK_SERVICE_H_
