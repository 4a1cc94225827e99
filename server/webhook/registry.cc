#include "server/webhook/registry.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status.h"
#include "server/engine/error_info.h"
#include "server/webhook/signature.h"

namespace ftune::server::webhook {
namespace {

// Known, at least one; duplicates dropped (first kept).
absl::StatusOr<std::vector<std::string>> CheckedEventTypes(
    const std::vector<std::string>& requested) {
  if (requested.empty()) {
    return engine::InvalidField(
        "event_types",
        absl::StrCat("event_types: at least one is required (one of ",
                     absl::StrJoin(store::AllWebhookEventTypes(), ", "), ")"));
  }
  std::vector<std::string> types;
  for (const std::string& t : requested) {
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
  return types;
}

absl::Status CheckDescription(const std::string& description) {
  if (description.size() <= kMaxDescriptionLength) return absl::OkStatus();
  return engine::InvalidField(
      "description", absl::StrCat("description: at most ",
                                  kMaxDescriptionLength, " characters"));
}

}  // namespace

absl::StatusOr<store::WebhookEndpoint> WebhookRegistry::Create(
    const std::string& tenant_id, NewEndpoint request) {
  absl::StatusOr<CheckedTarget> target =
      CheckWebhookTarget(request.url, policy_);
  if (!target.ok()) {
    return engine::InvalidField("url", std::string(target.status().message()));
  }
  FTUNE_ASSIGN_OR_RETURN(std::vector<std::string> types,
                         CheckedEventTypes(request.event_types));
  FTUNE_RETURN_IF_ERROR(CheckDescription(request.description));
  store::WebhookEndpoint e;
  e.tenant_id = tenant_id;
  e.url = std::move(request.url);
  e.event_types = std::move(types);
  e.description = std::move(request.description);
  e.secret = NewWebhookSecret();
  return store_->CreateWebhookEndpoint(std::move(e));
}

absl::StatusOr<store::WebhookEndpoint> WebhookRegistry::RotateSecret(
    const std::string& tenant_id, const std::string& id, absl::Duration grace) {
  if (grace < absl::ZeroDuration() || grace > kMaxRotationGrace) {
    return engine::InvalidField(
        "grace_seconds", absl::StrCat("grace_seconds: must be in [0, ",
                                      absl::ToInt64Seconds(kMaxRotationGrace),
                                      "], got ", absl::ToInt64Seconds(grace)));
  }
  return store_->RotateWebhookSecret(tenant_id, id, NewWebhookSecret(), grace);
}

absl::StatusOr<store::WebhookEndpoint> WebhookRegistry::Update(
    const std::string& tenant_id, const std::string& id,
    store::WebhookEndpointUpdate update) {
  if (update.event_types) {
    FTUNE_ASSIGN_OR_RETURN(*update.event_types,
                           CheckedEventTypes(*update.event_types));
  }
  if (update.description) {
    FTUNE_RETURN_IF_ERROR(CheckDescription(*update.description));
  }
  return store_->UpdateWebhookEndpoint(tenant_id, id, update);
}

}  // namespace ftune::server::webhook
