#include "server/webhook/registry.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status.h"
#include "server/engine/error_info.h"
#include "server/webhook/signature.h"

namespace ftune::server::webhook {

absl::StatusOr<store::WebhookEndpoint> WebhookRegistry::Create(
    const std::string& tenant_id, NewEndpoint request) {
  absl::StatusOr<CheckedTarget> target =
      CheckWebhookTarget(request.url, policy_);
  if (!target.ok()) {
    return engine::InvalidField("url", std::string(target.status().message()));
  }
  if (request.event_types.empty()) {
    return engine::InvalidField(
        "event_types",
        absl::StrCat("event_types: at least one is required (one of ",
                     absl::StrJoin(store::AllWebhookEventTypes(), ", "), ")"));
  }
  std::vector<std::string> types;
  for (const std::string& t : request.event_types) {
    if (!store::IsWebhookEventType(t)) {
      return engine::InvalidField(
          "event_types",
          absl::StrCat("event_types: unknown event type \"", t, "\" (known: ",
                       absl::StrJoin(store::AllWebhookEventTypes(), ", "),
                       ")"));
    }
    if (std::find(types.begin(), types.end(), t) == types.end()) {
      types.push_back(t);
    }
  }
  if (request.description.size() > kMaxDescriptionLength) {
    return engine::InvalidField(
        "description", absl::StrCat("description: at most ",
                                    kMaxDescriptionLength, " characters"));
  }
  store::WebhookEndpoint e;
  e.tenant_id = tenant_id;
  e.url = std::move(request.url);
  e.event_types = std::move(types);
  e.description = std::move(request.description);
  e.secret = NewWebhookSecret();
  return store_->CreateWebhookEndpoint(std::move(e));
}

}  // namespace ftune::server::webhook
