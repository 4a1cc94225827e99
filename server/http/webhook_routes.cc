#include "server/http/webhook_routes.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "common/status.h"
#include "server/http/openai_json.h"
#include "server/store/webhook_store.h"
#include "server/webhook/registry.h"

namespace ftune::server::http {
namespace {

using json = nlohmann::json;

json EndpointJson(const store::WebhookEndpoint& e) {
  return {{"id", e.id},
          {"object", "webhook_endpoint"},
          {"url", e.url},
          {"event_types", e.event_types},
          {"description", e.description},
          {"created_at", absl::ToUnixSeconds(e.create_time)},
          {"disabled", e.disabled}};
}

json Seconds(absl::Time t) {
  return t == absl::InfinitePast() ? json(nullptr)
                                   : json(absl::ToUnixSeconds(t));
}

json DeliveryJson(const store::WebhookDelivery& d) {
  return {
      {"id", d.id},
      {"object", "webhook_delivery"},
      {"event_id", d.event_id},
      {"event_type", d.event_type},
      {"job_id", d.job_id},
      {"status", store::WebhookDeliveryStateName(d.state)},
      {"attempts", d.attempts},
      {"created_at", Seconds(d.create_time)},
      {"next_attempt_at", d.state == store::WebhookDeliveryState::kPending
                              ? Seconds(d.next_attempt_time)
                              : json(nullptr)},
      {"last_attempt_at", Seconds(d.last_attempt_time)},
      {"last_status_code",
       d.last_status_code == 0 ? json(nullptr) : json(d.last_status_code)},
      {"last_error", d.last_error.empty() ? json(nullptr) : json(d.last_error)},
      {"last_response", d.last_response},
      {"payload", json::parse(d.payload, nullptr, false)}};
}

json ListJson(json data, bool has_more) {
  json out = {{"object", "list"}, {"data", data}, {"has_more", has_more}};
  out["first_id"] = data.empty() ? json(nullptr) : data.front()["id"];
  out["last_id"] = data.empty() ? json(nullptr) : data.back()["id"];
  return out;
}

// A newest-first store listing after the item `after`, at most `limit`.
template <typename Item, typename ReadPage>
absl::StatusOr<json> Listing(const WebhookRouteRequest& r, ReadPage read,
                             json (*to_json)(const Item&)) {
  bool found = r.after.empty();
  bool has_more = false;
  json data = json::array();
  std::string token;
  do {
    FTUNE_ASSIGN_OR_RETURN(store::Page<Item> page, read(token));
    for (const Item& item : page.items) {
      if (!found) {
        found = item.id == r.after;
        continue;
      }
      if (static_cast<int>(data.size()) == r.limit) {
        has_more = true;
        break;
      }
      data.push_back(to_json(item));
    }
    token = page.next_page_token;
  } while (!has_more && !token.empty());
  if (!found) {
    return InvalidParam("after", absl::StrCat("after: no object \"", r.after,
                                              "\" in this listing"));
  }
  return ListJson(std::move(data), has_more);
}

absl::StatusOr<WebhookRouteAnswer> Create(webhook::WebhookRegistry& registry,
                                          const WebhookRouteRequest& r) {
  if (!r.body.is_object()) {
    return InvalidParam("", "the request body must be a JSON object");
  }
  webhook::NewEndpoint in;
  for (const auto& [key, value] : r.body.items()) {
    if (key == "url") {
      if (!value.is_string())
        return InvalidParam("url", "url: must be a string");
      in.url = value.get<std::string>();
    } else if (key == "event_types") {
      if (!value.is_array()) {
        return InvalidParam("event_types",
                            "event_types: must be an array of strings");
      }
      for (const json& t : value) {
        if (!t.is_string()) {
          return InvalidParam("event_types",
                              "event_types: must be an array of strings");
        }
        in.event_types.push_back(t.get<std::string>());
      }
    } else if (key == "description") {
      if (!value.is_string()) {
        return InvalidParam("description", "description: must be a string");
      }
      in.description = value.get<std::string>();
    } else {
      return InvalidParam(key, absl::StrCat("Unrecognized request argument "
                                            "supplied: ",
                                            key));
    }
  }
  FTUNE_ASSIGN_OR_RETURN(store::WebhookEndpoint e,
                         registry.Create(r.tenant, std::move(in)));
  WebhookRouteAnswer out;
  out.body = EndpointJson(e);
  out.body["secret"] = e.secret;  // Only here.
  return out;
}

// POST /v1/webhooks/{id}: {"disabled", "description", "event_types"}, each
// optional, at least one.
absl::StatusOr<WebhookRouteAnswer> Update(webhook::WebhookRegistry& registry,
                                          const WebhookRouteRequest& r,
                                          const std::string& id) {
  if (!r.body.is_object()) {
    return InvalidParam("", "the request body must be a JSON object");
  }
  store::WebhookEndpointUpdate update;
  for (const auto& [key, value] : r.body.items()) {
    if (key == "disabled") {
      if (!value.is_boolean()) {
        return InvalidParam("disabled", "disabled: must be true or false");
      }
      update.disabled = value.get<bool>();
    } else if (key == "description") {
      if (!value.is_string()) {
        return InvalidParam("description", "description: must be a string");
      }
      update.description = value.get<std::string>();
    } else if (key == "event_types") {
      std::vector<std::string> types;
      if (!value.is_array()) {
        return InvalidParam("event_types",
                            "event_types: must be an array of strings");
      }
      for (const json& t : value) {
        if (!t.is_string()) {
          return InvalidParam("event_types",
                              "event_types: must be an array of strings");
        }
        types.push_back(t.get<std::string>());
      }
      update.event_types = std::move(types);
    } else {
      return InvalidParam(key, absl::StrCat("Unrecognized request argument "
                                            "supplied: ",
                                            key));
    }
  }
  if (!update.disabled && !update.description && !update.event_types) {
    return InvalidParam("",
                        "nothing to change: give disabled, description "
                        "or event_types");
  }
  FTUNE_ASSIGN_OR_RETURN(store::WebhookEndpoint e,
                         registry.Update(r.tenant, id, std::move(update)));
  WebhookRouteAnswer out;
  out.body = EndpointJson(e);
  return out;
}

WebhookRouteAnswer NotAllowed(std::string allow) {
  WebhookRouteAnswer out;
  out.status = 405;
  out.allow = std::move(allow);
  return out;
}

}  // namespace

bool IsWebhookListing(const std::vector<std::string>& rest) {
  return rest.empty() || (rest.size() == 2 && rest[1] == "deliveries");
}

absl::StatusOr<WebhookRouteAnswer> HandleWebhookRoute(
    webhook::WebhookRegistry& registry, const WebhookRouteRequest& r) {
  store::WebhookStore* store = registry.store();
  const std::string& m = r.method;
  if (r.rest.empty()) {
    if (m == "POST") return Create(registry, r);
    if (m != "GET") return NotAllowed("GET, POST");
    WebhookRouteAnswer out;
    FTUNE_ASSIGN_OR_RETURN(out.body, Listing<store::WebhookEndpoint>(
                                         r,
                                         [&](const std::string& token) {
                                           return store->ListWebhookEndpoints(
                                               r.tenant, 1000, token);
                                         },
                                         &EndpointJson));
    return out;
  }
  const std::string& id = r.rest[0];
  if (r.rest.size() == 1) {
    WebhookRouteAnswer out;
    if (m == "GET") {
      FTUNE_ASSIGN_OR_RETURN(store::WebhookEndpoint e,
                             store->GetWebhookEndpoint(r.tenant, id));
      out.body = EndpointJson(e);
      return out;
    }
    if (m == "POST") return Update(registry, r, id);
    if (m == "DELETE") {
      FTUNE_ASSIGN_OR_RETURN(store::WebhookEndpoint e,
                             store->DeleteWebhookEndpoint(r.tenant, id));
      out.body = {{"id", e.id},
                  {"object", "webhook_endpoint.deleted"},
                  {"deleted", true}};
      return out;
    }
    return NotAllowed("GET, POST, DELETE");
  }
  if (r.rest.size() == 2 && r.rest[1] == "deliveries") {
    if (m != "GET") return NotAllowed("GET");
    WebhookRouteAnswer out;
    FTUNE_ASSIGN_OR_RETURN(out.body, Listing<store::WebhookDelivery>(
                                         r,
                                         [&](const std::string& token) {
                                           return store->ListWebhookDeliveries(
                                               r.tenant, id, 1000, token);
                                         },
                                         &DeliveryJson));
    return out;
  }
  if (r.rest.size() == 2 && r.rest[1] == "rotate_secret") {
    if (m != "POST") return NotAllowed("POST");
    absl::Duration grace = webhook::kDefaultRotationGrace;
    if (r.body.is_object()) {
      for (const auto& [key, value] : r.body.items()) {
        if (key != "grace_seconds") {
          return InvalidParam(key, absl::StrCat("Unrecognized request "
                                                "argument supplied: ",
                                                key));
        }
        if (!value.is_number_integer()) {
          return InvalidParam("grace_seconds",
                              "grace_seconds: must be an integer");
        }
        grace = absl::Seconds(value.get<int64_t>());
      }
    } else if (!r.body.is_null()) {
      return InvalidParam("", "the request body must be a JSON object");
    }
    FTUNE_ASSIGN_OR_RETURN(store::WebhookEndpoint e,
                           registry.RotateSecret(r.tenant, id, grace));
    WebhookRouteAnswer out;
    out.body = EndpointJson(e);
    out.body["secret"] = e.secret;  // Only here and at creation.
    return out;
  }
  if (r.rest.size() == 4 && r.rest[1] == "deliveries" &&
      r.rest[3] == "redeliver") {
    if (m != "POST") return NotAllowed("POST");
    if (!r.body.is_null() && !(r.body.is_object() && r.body.empty())) {
      return InvalidParam("", "redeliver takes no request body");
    }
    FTUNE_ASSIGN_OR_RETURN(
        store::WebhookDelivery d,
        store->RedeliverWebhookDelivery(r.tenant, id, r.rest[2]));
    WebhookRouteAnswer out;
    out.body = DeliveryJson(d);
    return out;
  }
  return absl::NotFoundError(absl::StrCat("Unknown request URL: ", m,
                                          " /v1/webhooks/",
                                          absl::StrJoin(r.rest, "/")));
}

}  // namespace ftune::server::http
