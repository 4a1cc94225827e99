// SqliteStore: webhook endpoints and the delivery outbox (WebhookStore).
// The outbox rows themselves are written by AddEvent (webhook_outbox.cc).
#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/ids.h"
#include "common/status.h"
#include "server/store/rows.h"
#include "server/store/sqlite_store.h"
#include "server/store/webhook_outbox.h"

namespace ftune::store {

using internal::CheckTenantArg;
using internal::TenantSees;

namespace {

constexpr char kEndpointColumns[] =
    "id, tenant_id, url, event_types, secret, description, create_time, "
    "disabled, seq, previous_secret, previous_secret_expiry";

WebhookEndpoint ReadEndpoint(const Statement& st) {
  WebhookEndpoint e;
  e.id = st.ColumnText(0);
  e.tenant_id = st.ColumnText(1);
  e.url = st.ColumnText(2);
  e.event_types = internal::DecodeEventTypes(st.ColumnText(3));
  e.secret = st.ColumnText(4);
  e.description = st.ColumnText(5);
  e.create_time = st.ColumnTime(6);
  e.disabled = st.ColumnInt(7) != 0;
  e.previous_secret = st.ColumnText(9);
  if (!e.previous_secret.empty()) e.previous_secret_expiry = st.ColumnTime(10);
  return e;
}

constexpr char kDeliveryColumns[] =
    "id, endpoint_id, tenant_id, event_id, event_type, job_id, payload, "
    "state, attempts, create_time, next_attempt_time, last_attempt_time, "
    "last_status_code, last_error, last_response, seq";

WebhookDelivery ReadDelivery(const Statement& st) {
  WebhookDelivery d;
  d.id = st.ColumnText(0);
  d.endpoint_id = st.ColumnText(1);
  d.tenant_id = st.ColumnText(2);
  d.event_id = st.ColumnText(3);
  d.event_type = st.ColumnText(4);
  d.job_id = st.ColumnText(5);
  d.payload = st.ColumnText(6);
  d.state = static_cast<WebhookDeliveryState>(st.ColumnInt(7));
  d.attempts = st.ColumnInt(8);
  d.create_time = st.ColumnTime(9);
  d.next_attempt_time = st.ColumnTime(10);
  d.last_attempt_time = st.ColumnTime(11);
  d.last_status_code = st.ColumnInt(12);
  d.last_error = st.ColumnText(13);
  d.last_response = st.ColumnText(14);
  return d;
}

absl::Status EndpointNotFound(absl::string_view id) {
  return absl::NotFoundError(absl::StrCat("webhook ", id, " not found"));
}

absl::StatusOr<WebhookEndpoint> LoadEndpoint(Connection& conn,
                                             absl::string_view tenant_id,
                                             absl::string_view id) {
  FTUNE_ASSIGN_OR_RETURN(
      Statement st,
      conn.Prepare(absl::StrCat("SELECT ", kEndpointColumns,
                                " FROM webhook_endpoints WHERE id = ?")));
  st.Bind(1, id);
  FTUNE_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) return EndpointNotFound(id);
  WebhookEndpoint e = ReadEndpoint(st);
  if (!TenantSees(tenant_id, e.tenant_id)) return EndpointNotFound(id);
  return e;
}

absl::Status CheckEventTypes(const std::vector<std::string>& types) {
  if (types.empty()) {
    return absl::InvalidArgumentError(
        "event_types: at least one event type is required");
  }
  for (const std::string& t : types) {
    if (!IsWebhookEventType(t)) {
      return absl::InvalidArgumentError(
          absl::StrCat("event_types: unknown event type \"", t, "\""));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<WebhookEndpoint> SqliteStore::CreateWebhookEndpoint(
    WebhookEndpoint endpoint) {
  if (endpoint.tenant_id.empty() || endpoint.tenant_id == kAnyTenant) {
    return absl::InvalidArgumentError("webhook tenant_id is required");
  }
  if (endpoint.url.empty()) {
    return absl::InvalidArgumentError("url: is required");
  }
  if (endpoint.secret.empty()) {
    return absl::InvalidArgumentError("secret: is required");
  }
  FTUNE_RETURN_IF_ERROR(CheckEventTypes(endpoint.event_types));
  endpoint.id = NewId(kWebhookIdPrefix);
  FTUNE_RETURN_IF_ERROR(Write([&](WriteContext& ctx) -> absl::Status {
    endpoint.create_time = ctx.now;
    FTUNE_ASSIGN_OR_RETURN(
        Statement st,
        ctx.conn.Prepare("INSERT INTO webhook_endpoints(id, tenant_id, url, "
                         "event_types, secret, description, create_time, "
                         "disabled) VALUES(?,?,?,?,?,?,?,?)"));
    st.Bind(1, endpoint.id)
        .Bind(2, endpoint.tenant_id)
        .Bind(3, endpoint.url)
        .Bind(4, internal::EncodeEventTypes(endpoint.event_types))
        .Bind(5, endpoint.secret)
        .Bind(6, endpoint.description)
        .BindTime(7, endpoint.create_time)
        .Bind(8, endpoint.disabled ? 1 : 0);
    absl::Status s = st.Run();
    if (absl::IsFailedPrecondition(s)) {  // Foreign key: no such tenant.
      return absl::NotFoundError(
          absl::StrCat("tenant ", endpoint.tenant_id, " not found"));
    }
    return s;
  }));
  return endpoint;
}

absl::StatusOr<WebhookEndpoint> SqliteStore::GetWebhookEndpoint(
    absl::string_view tenant_id, absl::string_view id) {
  FTUNE_RETURN_IF_ERROR(CheckTenantArg(tenant_id));
  WebhookEndpoint out;
  FTUNE_RETURN_IF_ERROR(Read([&](Connection& conn) -> absl::Status {
    FTUNE_ASSIGN_OR_RETURN(out, LoadEndpoint(conn, tenant_id, id));
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<Page<WebhookEndpoint>> SqliteStore::ListWebhookEndpoints(
    absl::string_view tenant_id, int page_size, absl::string_view page_token) {
  FTUNE_RETURN_IF_ERROR(CheckTenantArg(tenant_id));
  FTUNE_ASSIGN_OR_RETURN(int64_t after,
                         internal::DecodePageToken("webhooks", page_token));
  const int limit = internal::ClampPageSize(page_size);
  Page<WebhookEndpoint> page;
  FTUNE_RETURN_IF_ERROR(Read([&](Connection& conn) -> absl::Status {
    FTUNE_ASSIGN_OR_RETURN(
        Statement st,
        conn.Prepare(absl::StrCat(
            "SELECT ", kEndpointColumns,
            " FROM webhook_endpoints WHERE (?1 = 0 OR seq < ?1) AND "
            "(?2 = '*' OR tenant_id = ?2) ORDER BY seq DESC LIMIT ?3")));
    st.Bind(1, after).Bind(2, tenant_id).Bind(3, limit + 1);
    int64_t last_seq = 0;
    while (true) {
      FTUNE_ASSIGN_OR_RETURN(bool row, st.Step());
      if (!row) break;
      if (static_cast<int>(page.items.size()) == limit) {
        page.next_page_token = internal::EncodePageToken("webhooks", last_seq);
        break;
      }
      page.items.push_back(ReadEndpoint(st));
      last_seq = st.ColumnInt(8);
    }
    return absl::OkStatus();
  }));
  return page;
}

absl::StatusOr<WebhookEndpoint> SqliteStore::UpdateWebhookEndpoint(
    absl::string_view tenant_id, absl::string_view id,
    const WebhookEndpointUpdate& update) {
  FTUNE_RETURN_IF_ERROR(CheckTenantArg(tenant_id));
  if (update.event_types) {
    FTUNE_RETURN_IF_ERROR(CheckEventTypes(*update.event_types));
  }
  WebhookEndpoint out;
  FTUNE_RETURN_IF_ERROR(Write([&](WriteContext& ctx) -> absl::Status {
    FTUNE_ASSIGN_OR_RETURN(out, LoadEndpoint(ctx.conn, tenant_id, id));
    if (update.disabled) out.disabled = *update.disabled;
    if (update.description) out.description = *update.description;
    if (update.event_types) out.event_types = *update.event_types;
    FTUNE_ASSIGN_OR_RETURN(
        Statement st,
        ctx.conn.Prepare("UPDATE webhook_endpoints SET disabled = ?, "
                         "description = ?, event_types = ? WHERE id = ?"));
    st.Bind(1, out.disabled ? 1 : 0)
        .Bind(2, out.description)
        .Bind(3, internal::EncodeEventTypes(out.event_types))
        .Bind(4, id);
    return st.Run();
  }));
  return out;
}

absl::StatusOr<WebhookDelivery> SqliteStore::RedeliverWebhookDelivery(
    absl::string_view tenant_id, absl::string_view endpoint_id,
    absl::string_view delivery_id) {
  FTUNE_RETURN_IF_ERROR(CheckTenantArg(tenant_id));
  WebhookDelivery out;
  FTUNE_RETURN_IF_ERROR(Write([&](WriteContext& ctx) -> absl::Status {
    FTUNE_ASSIGN_OR_RETURN(WebhookEndpoint endpoint,
                           LoadEndpoint(ctx.conn, tenant_id, endpoint_id));
    FTUNE_ASSIGN_OR_RETURN(
        Statement st,
        ctx.conn.Prepare(absl::StrCat(
            "SELECT ", kDeliveryColumns,
            " FROM webhook_deliveries WHERE id = ? AND endpoint_id = ?")));
    st.Bind(1, delivery_id).Bind(2, endpoint_id);
    FTUNE_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) {
      return absl::NotFoundError(
          absl::StrCat("webhook delivery ", delivery_id, " not found"));
    }
    const WebhookDelivery original = ReadDelivery(st);
    if (endpoint.disabled) {
      return absl::FailedPreconditionError(absl::StrCat(
          "webhook ", endpoint_id, " is disabled; enable it first"));
    }
    out = WebhookDelivery{};
    out.id = NewId(kWebhookDeliveryIdPrefix);
    out.endpoint_id = original.endpoint_id;
    out.tenant_id = original.tenant_id;
    out.event_id = original.event_id;
    out.event_type = original.event_type;
    out.job_id = original.job_id;
    out.payload = original.payload;
    out.state = WebhookDeliveryState::kPending;
    out.create_time = ctx.now;
    out.next_attempt_time = ctx.now;
    FTUNE_ASSIGN_OR_RETURN(
        Statement insert,
        ctx.conn.Prepare("INSERT INTO webhook_deliveries(id, endpoint_id, "
                         "tenant_id, event_id, event_type, job_id, payload, "
                         "state, attempts, create_time, next_attempt_time) "
                         "VALUES(?,?,?,?,?,?,?,?,0,?,?)"));
    insert.Bind(1, out.id)
        .Bind(2, out.endpoint_id)
        .Bind(3, out.tenant_id)
        .Bind(4, out.event_id)
        .Bind(5, out.event_type)
        .Bind(6, out.job_id)
        .Bind(7, out.payload)
        .Bind(8, static_cast<int>(out.state))
        .BindTime(9, out.create_time)
        .BindTime(10, out.next_attempt_time);
    return insert.Run();
  }));
  return out;
}

absl::StatusOr<WebhookEndpoint> SqliteStore::RotateWebhookSecret(
    absl::string_view tenant_id, absl::string_view id,
    const std::string& new_secret, absl::Duration grace) {
  FTUNE_RETURN_IF_ERROR(CheckTenantArg(tenant_id));
  if (new_secret.empty()) {
    return absl::InvalidArgumentError("secret: is required");
  }
  WebhookEndpoint out;
  FTUNE_RETURN_IF_ERROR(Write([&](WriteContext& ctx) -> absl::Status {
    FTUNE_ASSIGN_OR_RETURN(out, LoadEndpoint(ctx.conn, tenant_id, id));
    const absl::Time previous_valid_until = ctx.now + grace;
    const bool keep = grace > absl::ZeroDuration();
    out.previous_secret = keep ? out.secret : "";
    out.previous_secret_expiry =
        keep ? previous_valid_until : absl::InfinitePast();
    out.secret = new_secret;
    FTUNE_ASSIGN_OR_RETURN(
        Statement st,
        ctx.conn.Prepare("UPDATE webhook_endpoints SET secret = ?, "
                         "previous_secret = ?, previous_secret_expiry = ? "
                         "WHERE id = ?"));
    st.Bind(1, out.secret)
        .Bind(2, out.previous_secret)
        .Bind(3, keep ? absl::ToUnixMicros(previous_valid_until) : int64_t{0})
        .Bind(4, id);
    return st.Run();
  }));
  return out;
}

absl::StatusOr<WebhookEndpoint> SqliteStore::DeleteWebhookEndpoint(
    absl::string_view tenant_id, absl::string_view id) {
  FTUNE_RETURN_IF_ERROR(CheckTenantArg(tenant_id));
  WebhookEndpoint out;
  FTUNE_RETURN_IF_ERROR(Write([&](WriteContext& ctx) -> absl::Status {
    FTUNE_ASSIGN_OR_RETURN(out, LoadEndpoint(ctx.conn, tenant_id, id));
    for (const char* sql :
         {"DELETE FROM webhook_deliveries WHERE endpoint_id = ?",
          "DELETE FROM webhook_endpoints WHERE id = ?"}) {
      FTUNE_ASSIGN_OR_RETURN(Statement st, ctx.conn.Prepare(sql));
      st.Bind(1, id);
      FTUNE_RETURN_IF_ERROR(st.Run());
    }
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<Page<WebhookDelivery>> SqliteStore::ListWebhookDeliveries(
    absl::string_view tenant_id, absl::string_view endpoint_id, int page_size,
    absl::string_view page_token) {
  FTUNE_RETURN_IF_ERROR(CheckTenantArg(tenant_id));
  FTUNE_ASSIGN_OR_RETURN(int64_t after, internal::DecodePageToken(
                                            "webhook_deliveries", page_token));
  const int limit = internal::ClampPageSize(page_size);
  Page<WebhookDelivery> page;
  FTUNE_RETURN_IF_ERROR(Read([&](Connection& conn) -> absl::Status {
    FTUNE_RETURN_IF_ERROR(LoadEndpoint(conn, tenant_id, endpoint_id).status());
    FTUNE_ASSIGN_OR_RETURN(
        Statement st, conn.Prepare(absl::StrCat(
                          "SELECT ", kDeliveryColumns,
                          " FROM webhook_deliveries WHERE endpoint_id = ?1 AND "
                          "(?2 = 0 OR seq < ?2) ORDER BY seq DESC LIMIT ?3")));
    st.Bind(1, endpoint_id).Bind(2, after).Bind(3, limit + 1);
    int64_t last_seq = 0;
    while (true) {
      FTUNE_ASSIGN_OR_RETURN(bool row, st.Step());
      if (!row) break;
      if (static_cast<int>(page.items.size()) == limit) {
        page.next_page_token =
            internal::EncodePageToken("webhook_deliveries", last_seq);
        break;
      }
      page.items.push_back(ReadDelivery(st));
      last_seq = st.ColumnInt(15);
    }
    return absl::OkStatus();
  }));
  return page;
}

absl::StatusOr<std::vector<DueWebhookDelivery>>
SqliteStore::ListDueWebhookDeliveries(absl::Time now, int limit,
                                      const std::vector<std::string>& exclude) {
  std::vector<DueWebhookDelivery> out;
  FTUNE_RETURN_IF_ERROR(Read([&](Connection& conn) -> absl::Status {
    std::string columns;
    for (absl::string_view c : absl::StrSplit(kDeliveryColumns, ", ")) {
      absl::StrAppend(&columns, columns.empty() ? "" : ", ", "d.", c);
    }
    FTUNE_ASSIGN_OR_RETURN(
        Statement st,
        conn.Prepare(absl::StrCat(
            "SELECT ", columns,
            ", e.url, e.secret, e.previous_secret, "
            "e.previous_secret_expiry FROM webhook_deliveries d JOIN "
            "webhook_endpoints e ON e.id = d.endpoint_id WHERE "
            "e.disabled = 0 AND d.state = ",
            static_cast<int>(WebhookDeliveryState::kPending),
            " AND d.next_attempt_time <= ? ORDER BY d.next_attempt_time, "
            "d.seq LIMIT ?")));
    st.Bind(1, absl::ToUnixMicros(now))
        .Bind(2, static_cast<int64_t>(limit + exclude.size()));
    while (static_cast<int>(out.size()) < limit) {
      FTUNE_ASSIGN_OR_RETURN(bool row, st.Step());
      if (!row) break;
      DueWebhookDelivery due;
      due.delivery = ReadDelivery(st);
      if (std::find(exclude.begin(), exclude.end(), due.delivery.id) !=
          exclude.end()) {
        continue;
      }
      due.url = st.ColumnText(16);
      due.secret = st.ColumnText(17);
      if (st.ColumnInt(19) > absl::ToUnixMicros(now)) {
        due.previous_secret = st.ColumnText(18);
      }
      out.push_back(std::move(due));
    }
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<WebhookDelivery> SqliteStore::RecordWebhookAttempt(
    absl::string_view delivery_id, const WebhookAttemptResult& result) {
  WebhookDelivery out;
  FTUNE_RETURN_IF_ERROR(Write([&](WriteContext& ctx) -> absl::Status {
    {
      FTUNE_ASSIGN_OR_RETURN(Statement st,
                             ctx.conn.Prepare(absl::StrCat(
                                 "SELECT ", kDeliveryColumns,
                                 " FROM webhook_deliveries WHERE id = ?")));
      st.Bind(1, delivery_id);
      FTUNE_ASSIGN_OR_RETURN(bool row, st.Step());
      if (!row) {
        return absl::NotFoundError(
            absl::StrCat("webhook delivery ", delivery_id, " not found"));
      }
      out = ReadDelivery(st);
    }
    if (out.state != WebhookDeliveryState::kPending) {
      return absl::FailedPreconditionError(
          absl::StrCat("webhook delivery ", delivery_id, " is already ",
                       WebhookDeliveryStateName(out.state)));
    }
    out.state = result.state;
    out.attempts += 1;
    out.last_attempt_time = result.time;
    out.last_status_code = result.status_code;
    out.last_error = result.error;
    out.last_response = result.response_prefix;
    out.next_attempt_time = result.state == WebhookDeliveryState::kPending
                                ? result.next_attempt_time
                                : absl::InfinitePast();
    FTUNE_ASSIGN_OR_RETURN(
        Statement st,
        ctx.conn.Prepare(
            "UPDATE webhook_deliveries SET state = ?, attempts = ?, "
            "next_attempt_time = ?, last_attempt_time = ?, "
            "last_status_code = ?, last_error = ?, last_response = ? "
            "WHERE id = ?"));
    st.Bind(1, static_cast<int>(out.state))
        .Bind(2, out.attempts)
        .BindTime(3, out.next_attempt_time)
        .BindTime(4, out.last_attempt_time)
        .Bind(5, out.last_status_code)
        .Bind(6, out.last_error)
        .Bind(7, out.last_response)
        .Bind(8, delivery_id);
    return st.Run();
  }));
  return out;
}

absl::StatusOr<std::optional<absl::Time>> SqliteStore::NextWebhookDueTime() {
  std::optional<absl::Time> out;
  FTUNE_RETURN_IF_ERROR(Read([&](Connection& conn) -> absl::Status {
    FTUNE_ASSIGN_OR_RETURN(
        Statement st,
        conn.Prepare(absl::StrCat(
            "SELECT MIN(next_attempt_time) FROM webhook_deliveries WHERE "
            "state = ",
            static_cast<int>(WebhookDeliveryState::kPending))));
    FTUNE_ASSIGN_OR_RETURN(bool row, st.Step());
    if (row && !st.ColumnIsNull(0)) out = st.ColumnTime(0);
    return absl::OkStatus();
  }));
  return out;
}

}  // namespace ftune::store
