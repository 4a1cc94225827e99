// Webhook endpoints and their delivery outbox (docs/webhooks.md).
//
// A tenant registers endpoints (URL, event types, signing secret). Every job
// event that maps to a webhook event type (WebhookEventTypeFor) writes one
// outbox row per matching endpoint of the job's tenant in the same SQLite
// transaction as the event itself, so a committed state change always has
// its deliveries, even if the scheduler dies right after the commit. The
// delivery loop (server/webhook/) sends due rows and records each attempt.
//
// Thread-safety: implementations are thread-safe.
#ifndef FTUNE_SERVER_STORE_WEBHOOK_STORE_H_
#define FTUNE_SERVER_STORE_WEBHOOK_STORE_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "server/core/types.h"
#include "server/store/store.h"

namespace ftune::store {

inline constexpr absl::string_view kWebhookIdPrefix = "wh";
inline constexpr absl::string_view kWebhookDeliveryIdPrefix = "whdel";

// The event types an endpoint may subscribe to. The fine_tuning.job.* names
// and payloads are OpenAI's; ftune.* are ftune's own (opt-in).
inline constexpr absl::string_view kEventJobSucceeded =
    "fine_tuning.job.succeeded";
inline constexpr absl::string_view kEventJobFailed = "fine_tuning.job.failed";
inline constexpr absl::string_view kEventJobCancelled =
    "fine_tuning.job.cancelled";
inline constexpr absl::string_view kEventJobPaused = "fine_tuning.job.paused";
inline constexpr absl::string_view kEventCheckpointSaved =
    "ftune.job.checkpoint_saved";
inline constexpr absl::string_view kEventEvalImproved =
    "ftune.job.eval_improved";
const std::vector<std::string>& AllWebhookEventTypes();
bool IsWebhookEventType(absl::string_view type);
// The webhook event type a job event causes, if any.
std::optional<std::string> WebhookEventTypeFor(const core::JobEvent& event);

struct WebhookEndpoint {
  std::string id;  // "wh-..."; assigned by the store.
  std::string tenant_id;
  std::string url;
  std::vector<std::string> event_types;  // Non-empty, each a known type.
  std::string secret;                    // "whsec_<base64 of the key>".
  // After a rotation: the secret before it, which also signs deliveries
  // until previous_secret_expiry ("" and InfinitePast when none).
  std::string previous_secret;
  absl::Time previous_secret_expiry = absl::InfinitePast();
  std::string description;
  absl::Time create_time = absl::InfinitePast();
  bool disabled = false;
};

enum class WebhookDeliveryState : int {
  kPending = 1,    // Waiting for its next attempt (next_attempt_time).
  kDelivered = 2,  // A 2xx answer.
  kFailed = 3,     // Gave up (retry period over, or refused target).
};
std::string WebhookDeliveryStateName(WebhookDeliveryState s);

struct WebhookDelivery {
  std::string id;  // "whdel-..."
  std::string endpoint_id;
  std::string tenant_id;
  std::string event_id;  // "evt_..."; the webhook-id header on every try.
  std::string event_type;
  std::string job_id;
  std::string payload;  // The exact JSON body sent on every attempt.
  WebhookDeliveryState state = WebhookDeliveryState::kPending;
  int64_t attempts = 0;
  absl::Time create_time = absl::InfinitePast();        // = the event's commit.
  absl::Time next_attempt_time = absl::InfinitePast();  // Pending only.
  absl::Time last_attempt_time = absl::InfinitePast();
  int64_t last_status_code = 0;  // HTTP status of the last try; 0 = none.
  std::string last_error;        // Transport error or refusal; "" if none.
  std::string last_response;     // A prefix of the last response body.
};

// What UpdateWebhookEndpoint changes: only the fields that are set.
struct WebhookEndpointUpdate {
  std::optional<bool> disabled;
  std::optional<std::string> description;
  std::optional<std::vector<std::string>> event_types;  // Non-empty, known.
};

// A pending delivery with what is needed to send it.
struct DueWebhookDelivery {
  WebhookDelivery delivery;
  std::string url;
  std::string secret;
  // The endpoint's previous secret while it is still valid at the time of
  // the listing, else "": the attempt is signed with both.
  std::string previous_secret;
};

// The outcome of one attempt.
struct WebhookAttemptResult {
  absl::Time time = absl::InfinitePast();  // When it was sent.
  int64_t status_code = 0;
  std::string error;
  std::string response_prefix;
  // kDelivered, kFailed (final), or kPending with next_attempt_time.
  WebhookDeliveryState state = WebhookDeliveryState::kPending;
  absl::Time next_attempt_time = absl::InfinitePast();
};

class WebhookStore {
 public:
  virtual ~WebhookStore() = default;

  // Stores a new endpoint (id and create_time assigned). NOT_FOUND for an
  // unknown tenant; INVALID_ARGUMENT naming the field for an empty url,
  // secret or event type list, or an unknown event type. URL policy
  // (https, private targets) is the caller's (server/webhook/target.h).
  virtual absl::StatusOr<WebhookEndpoint> CreateWebhookEndpoint(
      WebhookEndpoint endpoint) = 0;
  // Foreign ids are NOT_FOUND, like ids that never existed.
  virtual absl::StatusOr<WebhookEndpoint> GetWebhookEndpoint(
      absl::string_view tenant_id, absl::string_view id) = 0;
  // Newest first.
  virtual absl::StatusOr<Page<WebhookEndpoint>> ListWebhookEndpoints(
      absl::string_view tenant_id, int page_size,
      absl::string_view page_token) = 0;
  // Deletes the endpoint and its delivery log (pending deliveries are
  // dropped). Returns what was deleted.
  virtual absl::StatusOr<WebhookEndpoint> DeleteWebhookEndpoint(
      absl::string_view tenant_id, absl::string_view id) = 0;
  // Changes the fields `update` sets and returns the endpoint. NOT_FOUND as
  // GetWebhookEndpoint; INVALID_ARGUMENT naming the field for an empty or
  // unknown event type list. A disabled endpoint gets no new deliveries and
  // its pending ones wait (ListDueWebhookDeliveries skips them) until it is
  // enabled again.
  virtual absl::StatusOr<WebhookEndpoint> UpdateWebhookEndpoint(
      absl::string_view tenant_id, absl::string_view id,
      const WebhookEndpointUpdate& update) = 0;
  // Queues the event of delivery `delivery_id` of endpoint `endpoint_id`
  // again: a new pending delivery with the same event id, type, job and
  // body, created and due at the store's now (so it gets a whole retry
  // period); the original stays as it is. NOT_FOUND as GetWebhookEndpoint
  // (and for a delivery of another endpoint); FAILED_PRECONDITION when the
  // endpoint is disabled.
  virtual absl::StatusOr<WebhookDelivery> RedeliverWebhookDelivery(
      absl::string_view tenant_id, absl::string_view endpoint_id,
      absl::string_view delivery_id) = 0;
  // Replaces the endpoint's signing secret with `new_secret`; the old one
  // keeps signing deliveries (beside the new) for `grace` from now (zero:
  // not at all). Returns the endpoint with its new secret. NOT_FOUND as
  // GetWebhookEndpoint.
  virtual absl::StatusOr<WebhookEndpoint> RotateWebhookSecret(
      absl::string_view tenant_id, absl::string_view id,
      const std::string& new_secret, absl::Duration grace) = 0;
  // The endpoint's deliveries, newest first. NOT_FOUND as GetWebhookEndpoint.
  virtual absl::StatusOr<Page<WebhookDelivery>> ListWebhookDeliveries(
      absl::string_view tenant_id, absl::string_view endpoint_id, int page_size,
      absl::string_view page_token) = 0;

  // Pending deliveries with next_attempt_time <= now, oldest due first, at
  // most `limit`, skipping the ids in `exclude` (those in flight).
  virtual absl::StatusOr<std::vector<DueWebhookDelivery>>
  ListDueWebhookDeliveries(absl::Time now, int limit,
                           const std::vector<std::string>& exclude) = 0;
  // Records one attempt on a pending delivery. NOT_FOUND if the delivery is
  // gone (its endpoint was deleted meanwhile); FAILED_PRECONDITION if it is
  // no longer pending.
  virtual absl::StatusOr<WebhookDelivery> RecordWebhookAttempt(
      absl::string_view delivery_id, const WebhookAttemptResult& result) = 0;
  // When the earliest pending delivery is due (nullopt: none pending).
  virtual absl::StatusOr<std::optional<absl::Time>> NextWebhookDueTime() = 0;
};

}  // namespace ftune::store

#endif  // FTUNE_SERVER_STORE_WEBHOOK_STORE_H_
