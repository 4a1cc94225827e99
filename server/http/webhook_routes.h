// The /v1/webhooks routes of the HTTP API (an ftune extension: OpenAI
// configures webhooks in its dashboard; docs/openai-compat.md), over the
// same webhook::WebhookRegistry and store as the gRPC WebhookService:
//
//   POST   /v1/webhooks                    {"url", "event_types",
//   "description"} GET    /v1/webhooks[?after&limit] GET    /v1/webhooks/{id}
//   DELETE /v1/webhooks/{id}
//   GET    /v1/webhooks/{id}/deliveries[?after&limit]
//
// Transport-free: openai_server.cc authenticates, reads the body and the
// query, and writes the answer.
//
// Thread-safety: thread-safe (the registry and store are).
#ifndef FTUNE_SERVER_HTTP_WEBHOOK_ROUTES_H_
#define FTUNE_SERVER_HTTP_WEBHOOK_ROUTES_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace ftune::server {
namespace webhook {
class WebhookRegistry;
}  // namespace webhook

namespace http {

struct WebhookRouteRequest {
  std::string tenant;
  std::string method;
  // The path's segments after "v1", "webhooks" (empty, {id}, {id,
  // "deliveries"}, {id, "deliveries", {delivery}, "redeliver"}).
  std::vector<std::string> rest;
  nlohmann::json body;  // POST only (null when it had no body).
  std::string after;    // Listings: the id to continue after ("" = start).
  int limit = 20;       // Listings.
};

struct WebhookRouteAnswer {
  int status = 200;
  nlohmann::json body;
  // Set (and body empty) when the method is not allowed on the path: the
  // Allow header's value.
  std::string allow;
};

// Errors carry the field (ErrorInfo) for the OpenAI-shaped error's param:
// INVALID_ARGUMENT for an unknown or mistyped body field, a refused url or
// event type; NOT_FOUND for an unknown (or another tenant's) id or path.
absl::StatusOr<WebhookRouteAnswer> HandleWebhookRoute(
    webhook::WebhookRegistry& registry, const WebhookRouteRequest& request);

// True when `rest` names a listing (for the query parameters allowed).
bool IsWebhookListing(const std::vector<std::string>& rest);

}  // namespace http
}  // namespace ftune::server

#endif  // FTUNE_SERVER_HTTP_WEBHOOK_ROUTES_H_
