// WebhookRegistry: the business rules of registering webhook endpoints,
// shared by the gRPC WebhookService and the HTTP API (/v1/webhooks): the
// target check (target.h), known and de-duplicated event types, a
// description limit, and a fresh signing secret. Errors carry the field in
// ErrorInfo (engine::InvalidField), so both front ends can name it.
//
// Thread-safe; the store outlives the registry.
#ifndef FTUNE_SERVER_WEBHOOK_REGISTRY_H_
#define FTUNE_SERVER_WEBHOOK_REGISTRY_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/store/webhook_store.h"
#include "server/webhook/target.h"

namespace ftune::server::webhook {

inline constexpr size_t kMaxDescriptionLength = 512;
// How long a rotated-out secret may go on signing deliveries.
inline constexpr absl::Duration kMaxRotationGrace = absl::Hours(24 * 7);
inline constexpr absl::Duration kDefaultRotationGrace = absl::Hours(24);

struct NewEndpoint {
  std::string url;
  std::vector<std::string> event_types;
  std::string description;
};

class WebhookRegistry {
 public:
  WebhookRegistry(store::WebhookStore* store, TargetPolicy policy)
      : store_(store), policy_(policy) {}

  // The stored endpoint with its secret (the only time it is returned).
  // INVALID_ARGUMENT naming url, event_types or description; nothing is
  // stored then.
  absl::StatusOr<store::WebhookEndpoint> Create(const std::string& tenant_id,
                                                NewEndpoint request);

  // Changes what `update` sets (enabled, description, event types, checked
  // as Create does). NOT_FOUND for another tenant's id or one that never
  // existed.
  absl::StatusOr<store::WebhookEndpoint> Update(
      const std::string& tenant_id, const std::string& id,
      store::WebhookEndpointUpdate update);

  // A fresh signing secret for the endpoint (returned with it, the only
  // time); the old one also signs deliveries for `grace` (0 to 7 days,
  // else INVALID_ARGUMENT naming grace_seconds). NOT_FOUND as Update.
  absl::StatusOr<store::WebhookEndpoint> RotateSecret(
      const std::string& tenant_id, const std::string& id,
      absl::Duration grace);

  store::WebhookStore* store() const { return store_; }

 private:
  store::WebhookStore* const store_;
  const TargetPolicy policy_;
};

}  // namespace ftune::server::webhook

#endif  // FTUNE_SERVER_WEBHOOK_REGISTRY_H_
