// Internal to ftune_store: the webhook event types, and the outbox rows a
// job event writes inside its own transaction (called from AddEvent, so
// every event of every write path is covered exactly once).
#include "server/store/webhook_outbox.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/ids.h"
#include "common/status.h"
#include "nlohmann/json.hpp"

namespace ftune::store {

const std::vector<std::string>& AllWebhookEventTypes() {
  static const auto* const kTypes = new std::vector<std::string>{
      std::string(kEventJobSucceeded),    std::string(kEventJobFailed),
      std::string(kEventJobCancelled),    std::string(kEventJobPaused),
      std::string(kEventCheckpointSaved), std::string(kEventEvalImproved),
  };
  return *kTypes;
}

bool IsWebhookEventType(absl::string_view type) {
  const auto& all = AllWebhookEventTypes();
  return std::find(all.begin(), all.end(), type) != all.end();
}

std::optional<std::string> WebhookEventTypeFor(const core::JobEvent& event) {
  using core::JobState;
  if (event.type == core::JobEventType::kCheckpoint) {
    return std::string(kEventCheckpointSaved);
  }
  if (event.type == core::JobEventType::kEvalImproved) {
    return std::string(kEventEvalImproved);
  }
  if (event.type != core::JobEventType::kStateChanged || !event.to_state) {
    return std::nullopt;
  }
  switch (*event.to_state) {
    case JobState::kSucceeded:
      return std::string(kEventJobSucceeded);
    case JobState::kFailed:
      return std::string(kEventJobFailed);
    case JobState::kCancelled:
      return std::string(kEventJobCancelled);
    case JobState::kPaused:
      return std::string(kEventJobPaused);
    default:
      return std::nullopt;
  }
}

std::string WebhookDeliveryStateName(WebhookDeliveryState s) {
  switch (s) {
    case WebhookDeliveryState::kPending:
      return "pending";
    case WebhookDeliveryState::kDelivered:
      return "delivered";
    case WebhookDeliveryState::kFailed:
      return "failed";
  }
  return "unknown";
}

namespace internal {

std::string EncodeEventTypes(const std::vector<std::string>& types) {
  return absl::StrJoin(types, ",");
}

std::vector<std::string> DecodeEventTypes(const std::string& text) {
  return absl::StrSplit(text, ',', absl::SkipEmpty());
}

namespace {

// OpenAI's job status names, as in the HTTP API's job objects.
const char* OpenAiStatus(core::JobState s) {
  switch (s) {
    case core::JobState::kQueued:
      return "queued";
    case core::JobState::kRunning:
    case core::JobState::kCancelling:
      return "running";
    case core::JobState::kPaused:
      return "paused";
    case core::JobState::kSucceeded:
      return "succeeded";
    case core::JobState::kFailed:
      return "failed";
    case core::JobState::kCancelled:
      return "cancelled";
  }
  return "unknown";
}

}  // namespace

std::string WebhookPayload(absl::string_view event_id,
                           absl::string_view event_type, const core::Job& job,
                           const core::JobEvent& event) {
  nlohmann::json data = {{"id", job.id}};
  if (event.to_state) data["status"] = OpenAiStatus(*event.to_state);
  // ftune's additions, under one key so OpenAI's shape stays as it is.
  nlohmann::json extra = {{"attempt", event.attempt},
                          {"event_sequence", event.sequence}};
  if (event.step != 0) extra["step"] = event.step;
  if (!event.message.empty()) extra["message"] = event.message;
  if (!job.model.empty()) extra["model"] = job.model;
  data["ftune"] = std::move(extra);
  nlohmann::json body = {
      {"id", event_id},
      {"object", "event"},
      {"type", event_type},
      {"created_at", absl::ToUnixSeconds(event.time)},
      {"data", std::move(data)},
  };
  return body.dump();
}

absl::Status EnqueueWebhooks(Connection& conn, const core::Job& job,
                             const core::JobEvent& event) {
  // fine_tuning.job.* events are about training jobs; a try job's client
  // follows it on its TryModel stream.
  if (job.kind == core::JobKind::kTry) return absl::OkStatus();
  std::optional<std::string> type = WebhookEventTypeFor(event);
  if (!type) return absl::OkStatus();
  FTUNE_ASSIGN_OR_RETURN(
      Statement endpoints,
      conn.Prepare("SELECT id, event_types FROM webhook_endpoints "
                   "WHERE tenant_id = ? AND disabled = 0 ORDER BY seq"));
  endpoints.Bind(1, job.tenant_id);
  std::vector<std::string> targets;
  while (true) {
    FTUNE_ASSIGN_OR_RETURN(bool row, endpoints.Step());
    if (!row) break;
    const std::vector<std::string> types =
        DecodeEventTypes(endpoints.ColumnText(1));
    if (std::find(types.begin(), types.end(), *type) != types.end()) {
      targets.push_back(endpoints.ColumnText(0));
    }
  }
  if (targets.empty()) return absl::OkStatus();
  // One event id for every endpoint: it is the event's identity
  // (webhook-id), the same on every retry.
  const std::string event_id = absl::StrCat("evt_", NewId("x").substr(2));
  const std::string payload = WebhookPayload(event_id, *type, job, event);
  FTUNE_ASSIGN_OR_RETURN(
      Statement insert,
      conn.Prepare("INSERT INTO webhook_deliveries(id, endpoint_id, "
                   "tenant_id, event_id, event_type, job_id, payload, state, "
                   "attempts, create_time, next_attempt_time) "
                   "VALUES(?,?,?,?,?,?,?,?,0,?,?)"));
  for (const std::string& endpoint_id : targets) {
    insert.Reset();
    insert.Bind(1, NewId(kWebhookDeliveryIdPrefix))
        .Bind(2, endpoint_id)
        .Bind(3, job.tenant_id)
        .Bind(4, event_id)
        .Bind(5, *type)
        .Bind(6, job.id)
        .Bind(7, payload)
        .Bind(8, static_cast<int>(WebhookDeliveryState::kPending))
        .BindTime(9, event.time)
        .BindTime(10, event.time);
    FTUNE_RETURN_IF_ERROR(insert.Run());
  }
  return absl::OkStatus();
}

}  // namespace internal
}  // namespace ftune::store
