// Internal to ftune_store: the webhook outbox written inside a job event's
// transaction, and the endpoint event-type column's encoding.
#ifndef FTUNE_SERVER_STORE_WEBHOOK_OUTBOX_H_
#define FTUNE_SERVER_STORE_WEBHOOK_OUTBOX_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "server/core/types.h"
#include "server/store/sqlite_db.h"
#include "server/store/webhook_store.h"

namespace ftune::store::internal {

// "a,b" <-> {"a", "b"}.
std::string EncodeEventTypes(const std::vector<std::string>& types);
std::vector<std::string> DecodeEventTypes(const std::string& text);

// The JSON body of a webhook: OpenAI's event object
// {"id","object":"event","type","created_at","data":{"id":job,...}}.
std::string WebhookPayload(absl::string_view event_id,
                           absl::string_view event_type, const core::Job& job,
                           const core::JobEvent& event);

// Inserts one pending delivery per enabled endpoint of the job's tenant that
// subscribes to the event's webhook type (none if the event has no type).
// Runs on `conn` inside the caller's transaction.
absl::Status EnqueueWebhooks(Connection& conn, const core::Job& job,
                             const core::JobEvent& event);

}  // namespace ftune::store::internal

#endif  // FTUNE_SERVER_STORE_WEBHOOK_OUTBOX_H_
