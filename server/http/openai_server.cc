#include "server/http/openai_server.h"

#include <civetweb.h>

#include <algorithm>
#include <cstring>
#include <future>
#include <map>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/logging.h"
#include "common/metrics/metric.h"
#include "common/metrics/registry.h"
#include "common/status.h"
#include "google/protobuf/util/json_util.h"
#include "nlohmann/json.hpp"
#include "server/engine/convert.h"
#include "server/engine/error_info.h"
#include "server/engine/job_engine.h"
#include "server/http/openai_json.h"
#include "server/http/webhook_routes.h"
#include "server/rpc/auth.h"
#include "server/rpc/file_catalog.h"
#include "server/rpc/job_queries.h"
#include "server/store/store.h"

namespace ftune::server::http {
namespace {

using nlohmann::json;

constexpr int kDefaultLimit = 20;
constexpr int kMaxLimit = 100;
// Multipart framing around the file's bytes (boundaries, part headers, the
// purpose field) allowed on top of the file size limit.
constexpr int64_t kMultipartOverhead = 64 << 10;

std::string UrlDecode(absl::string_view s) {
  std::string out(s.size() + 1, '\0');
  const int n = mg_url_decode(s.data(), static_cast<int>(s.size()), out.data(),
                              static_cast<int>(out.size()),
                              /*is_form_url_encoded=*/1);
  out.resize(n < 0 ? 0 : static_cast<size_t>(n));
  return out;
}

// A parsed query string, each name once.
absl::StatusOr<std::map<std::string, std::string>> ParseQuery(
    const char* query) {
  std::map<std::string, std::string> out;
  if (query == nullptr) return out;
  for (absl::string_view pair : absl::StrSplit(query, '&', absl::SkipEmpty())) {
    const size_t eq = pair.find('=');
    std::string name = UrlDecode(pair.substr(0, eq));
    std::string value =
        eq == absl::string_view::npos ? "" : UrlDecode(pair.substr(eq + 1));
    if (!out.emplace(name, value).second) {
      return InvalidParam(name, absl::StrCat(name, " is given twice"));
    }
  }
  return out;
}

absl::StatusOr<int> LimitParam(const std::map<std::string, std::string>& q) {
  auto it = q.find("limit");
  if (it == q.end()) return kDefaultLimit;
  int limit = 0;
  if (!absl::SimpleAtoi(it->second, &limit) || limit < 1 || limit > kMaxLimit) {
    return InvalidParam(
        "limit", absl::StrCat("limit: must be an integer in 1..", kMaxLimit));
  }
  return limit;
}

absl::Status OnlyQueryParams(const std::map<std::string, std::string>& q,
                             std::initializer_list<absl::string_view> known,
                             absl::string_view prefix_allowed = "") {
  for (const auto& [name, value] : q) {
    if (std::find(known.begin(), known.end(), name) != known.end()) continue;
    if (!prefix_allowed.empty() && absl::StartsWith(name, prefix_allowed)) {
      continue;
    }
    return InvalidParam(name,
                        absl::StrCat("Unrecognized query parameter: ", name));
  }
  return absl::OkStatus();
}

// Items of a newest-first listing after the item with id `after` (from the
// start when empty), at most `limit`, and whether more follow. `page`
// reads one store page: (token, page size, items out) -> next token; the
// walk to `after` reads large pages, the rest only what the answer needs.
template <typename Item, typename Page>
absl::Status PageAfter(const std::string& after, int limit, Page page,
                       std::vector<Item>* out, bool* has_more) {
  constexpr int kWalkPageSize = 1000;
  bool found = after.empty();
  std::string token;
  *has_more = false;
  for (;;) {
    std::vector<std::pair<std::string, Item>> items;
    const int size =
        found ? limit + 1 - static_cast<int>(out->size()) : kWalkPageSize;
    FTUNE_ASSIGN_OR_RETURN(std::string next, page(token, size, &items));
    for (auto& [id, item] : items) {
      if (!found) {
        found = id == after;
        continue;
      }
      if (static_cast<int>(out->size()) == limit) {
        *has_more = true;
        return absl::OkStatus();
      }
      out->push_back(std::move(item));
    }
    if (next.empty()) break;
    token = std::move(next);
  }
  if (!found) {
    return InvalidParam("after", absl::StrCat("after: no object \"", after,
                                              "\" in this listing"));
  }
  return absl::OkStatus();
}

json ListJson(json data, bool has_more) {
  json out = {{"object", "list"}, {"data", data}, {"has_more", has_more}};
  out["first_id"] = data.empty() ? json(nullptr) : data.front()["id"];
  out["last_id"] = data.empty() ? json(nullptr) : data.back()["id"];
  return out;
}

// What the catalog refuses about an upload's bytes or name (a bad dataset
// line, an empty file, a bad filename) is the `file` field's fault in
// OpenAI's terms; the message keeps the line and the JSON path.
absl::Status AboutFileParam(absl::Status status) {
  if (!absl::IsInvalidArgument(status)) return status;
  return InvalidParam("file", std::string(status.message()));
}

// The form fields of POST /v1/files as civetweb's multipart parser hands
// them over: the file streams into one FileCatalog upload.
struct UploadForm {
  rpc::FileCatalog* files = nullptr;
  std::string tenant;
  std::unique_ptr<rpc::FileCatalog::Upload> upload;
  bool file_seen = false;
  std::optional<std::string> purpose;
  absl::Status error;

  static int FieldFound(const char* key, const char* filename, char* /*path*/,
                        size_t /*pathlen*/, void* user) {
    auto* form = static_cast<UploadForm*>(user);
    if (!form->error.ok()) return MG_FORM_FIELD_STORAGE_ABORT;
    const std::string name = key == nullptr ? "" : key;
    if (name == "purpose") {
      if (form->purpose) {
        form->error = InvalidParam("purpose", "purpose is given twice");
        return MG_FORM_FIELD_STORAGE_ABORT;
      }
      form->purpose.emplace();
      return MG_FORM_FIELD_STORAGE_GET;
    }
    if (name != "file") {
      form->error = InvalidParam(
          name, absl::StrCat("Unrecognized request argument supplied: ", name));
      return MG_FORM_FIELD_STORAGE_ABORT;
    }
    if (form->file_seen) {
      form->error = InvalidParam("file", "file is given twice");
      return MG_FORM_FIELD_STORAGE_ABORT;
    }
    form->file_seen = true;
    if (filename == nullptr || *filename == '\0') {
      form->error =
          InvalidParam("file",
                       "file must be a file part with a filename (multipart "
                       "Content-Disposition: form-data; name=\"file\"; "
                       "filename=\"...\")");
      return MG_FORM_FIELD_STORAGE_ABORT;
    }
    v1::UploadFileMetadata metadata;
    metadata.set_filename(filename);
    // OpenAI has one purpose for training and validation files.
    metadata.set_purpose(v1::FILE_PURPOSE_FINE_TUNE);
    absl::StatusOr<std::unique_ptr<rpc::FileCatalog::Upload>> upload =
        form->files->StartUpload(form->tenant, metadata);
    if (!upload.ok()) {
      form->error = AboutFileParam(upload.status());
      return MG_FORM_FIELD_STORAGE_ABORT;
    }
    form->upload = *std::move(upload);
    return MG_FORM_FIELD_STORAGE_GET;
  }

  static int FieldGet(const char* key, const char* value, size_t size,
                      void* user) {
    auto* form = static_cast<UploadForm*>(user);
    if (!form->error.ok()) return MG_FORM_FIELD_HANDLE_ABORT;
    if (std::strcmp(key, "purpose") == 0) {
      if (form->purpose->size() + size > 64) {
        form->error = InvalidParam("purpose", "purpose: too long");
        return MG_FORM_FIELD_HANDLE_ABORT;
      }
      form->purpose->append(value, size);
      return MG_FORM_FIELD_HANDLE_GET;
    }
    if (size == 0) return MG_FORM_FIELD_HANDLE_GET;
    // The catalog takes chunks of at most max_chunk_size_bytes.
    const size_t max_chunk = static_cast<size_t>(
        std::max<int64_t>(1, form->files->options().max_chunk_size_bytes));
    for (size_t at = 0; at < size; at += max_chunk) {
      form->error = AboutFileParam(form->upload->Add(
          absl::string_view(value + at, std::min(max_chunk, size - at))));
      if (!form->error.ok()) return MG_FORM_FIELD_HANDLE_ABORT;
    }
    return MG_FORM_FIELD_HANDLE_GET;
  }
};

}  // namespace

// One request: its connection, method, path and caller.
class OpenAiHttpServer::Request {
 public:
  Request(const OpenAiHttpServer& server, mg_connection* conn)
      : server_(server), conn_(conn), info_(mg_get_request_info(conn)) {
    method_ = info_->request_method != nullptr ? info_->request_method : "";
    path_ = info_->local_uri != nullptr ? info_->local_uri : "";
  }

  // The route template ("GET /v1/fine_tuning/jobs/{id}/events") for
  // metrics, once Route() has run.
  const std::string& route() const { return route_; }

  int Handle() {
    absl::Status s = Route();
    if (!s.ok()) {
      if (responded_) {
        FTUNE_LOG(WARNING) << "OpenAI HTTP API: " << method_ << " " << path_
                           << " failed after the answer began: " << s;
        return status_code_;
      }
      DrainBody();
      ApiError e = ErrorFromStatus(s);
      // An id in the path that could never exist is not found, as OpenAI
      // answers it (gRPC calls it INVALID_ARGUMENT).
      std::optional<v1::ErrorInfo> info = engine::GetErrorInfo(s);
      if (absl::IsInvalidArgument(s) && info &&
          (info->field() == "job_id" || info->field() == "file_id")) {
        e.http_status = 404;
        e.code = "not_found";
        e.param.clear();
      }
      RespondError(e);
    }
    return status_code_;
  }

 private:
  const OpenAiBackends& backends() const { return server_.backends_; }

  void Respond(
      int status, const json& body,
      const std::vector<std::pair<std::string, std::string>>& headers = {}) {
    const std::string text = body.dump();
    mg_response_header_start(conn_, status);
    mg_response_header_add(conn_, "Content-Type", "application/json", -1);
    const std::string length = std::to_string(text.size());
    mg_response_header_add(conn_, "Content-Length", length.c_str(), -1);
    mg_response_header_add(conn_, "Cache-Control", "no-store", -1);
    for (const auto& [name, value] : headers) {
      mg_response_header_add(conn_, name.c_str(), value.c_str(), -1);
    }
    mg_response_header_send(conn_);
    mg_write(conn_, text.data(), text.size());
    responded_ = true;
    status_code_ = status;
  }

  // Reads what is left of a refused request's body (up to a bound), so
  // the client, still sending, reads the answer instead of a reset.
  void DrainBody() {
    constexpr int64_t kMaxDrain = int64_t{64} << 20;
    char buf[16384];
    int64_t drained = 0;
    while (drained < kMaxDrain) {
      const int n = mg_read(conn_, buf, sizeof(buf));
      if (n <= 0) break;
      drained += n;
    }
  }

  void RespondError(const ApiError& e) {
    std::vector<std::pair<std::string, std::string>> headers;
    if (e.http_status == 401) {
      headers.emplace_back("WWW-Authenticate", "Bearer");
    }
    if (e.retry_after_seconds > 0) {
      headers.emplace_back("Retry-After",
                           std::to_string(e.retry_after_seconds));
    }
    Respond(e.http_status, e.Body(), headers);
  }

  absl::Status MethodNotAllowed(absl::string_view allowed) {
    ApiError e;
    e.http_status = 405;
    e.type = "invalid_request_error";
    e.code = "method_not_allowed";
    e.message = absl::StrCat("method ", method_, " is not allowed on ", path_,
                             " (allowed: ", allowed, ")");
    Respond(405, e.Body(), {{"Allow", std::string(allowed)}});
    return absl::OkStatus();
  }

  // The tenant of "Authorization: Bearer <key>".
  absl::StatusOr<std::string> Tenant() {
    const char* header = mg_get_header(conn_, "Authorization");
    absl::string_view value = header == nullptr ? "" : header;
    value = absl::StripAsciiWhitespace(value);
    if (!absl::ConsumePrefix(&value, "Bearer ") &&
        !absl::ConsumePrefix(&value, "bearer ")) {
      return absl::UnauthenticatedError(
          "You didn't provide an API key: send Authorization: Bearer "
          "<ftune API key>");
    }
    const std::string secret(absl::StripAsciiWhitespace(value));
    if (secret.empty()) {
      return absl::UnauthenticatedError("the bearer credential is empty");
    }
    FTUNE_ASSIGN_OR_RETURN(rpc::Principal p,
                           backends().auth->AuthenticateSecret(secret));
    if (p.kind != rpc::Principal::Kind::kTenant || p.tenant_id.empty()) {
      return absl::PermissionDeniedError(
          "the OpenAI-compatible API needs a tenant API key");
    }
    return p.tenant_id;
  }

  // The body of a JSON request: Content-Type application/json, at most
  // max_json_body_bytes; an empty body is `{}` when `empty_ok`.
  absl::StatusOr<json> JsonBody(bool empty_ok) {
    const int64_t max = server_.options_.max_json_body_bytes;
    if (info_->content_length > max) {
      return engine::QuotaExceeded(
          absl::StrCat("the request body of ", info_->content_length,
                       " bytes exceeds the limit of ", max),
          "max_body_bytes", max);
    }
    std::string body;
    char buf[8192];
    for (;;) {
      const int n = mg_read(conn_, buf, sizeof(buf));
      if (n <= 0) break;
      body.append(buf, static_cast<size_t>(n));
      if (static_cast<int64_t>(body.size()) > max) {
        return engine::QuotaExceeded(
            absl::StrCat("the request body exceeds the limit of ", max,
                         " bytes"),
            "max_body_bytes", max);
      }
    }
    if (body.empty() && empty_ok) return json::object();
    const char* type = mg_get_header(conn_, "Content-Type");
    absl::string_view media = type == nullptr ? "" : type;
    media = absl::StripAsciiWhitespace(media.substr(0, media.find(';')));
    if (!absl::EqualsIgnoreCase(media, "application/json")) {
      return absl::InvalidArgumentError(
          absl::StrCat("Content-Type must be application/json, got \"",
                       type == nullptr ? "" : type, "\""));
    }
    json parsed = json::parse(body, nullptr, /*allow_exceptions=*/false);
    if (parsed.is_discarded()) {
      return InvalidParam("", "the request body is not valid JSON");
    }
    return parsed;
  }

  // Routes by path and method.
  absl::Status Route() {
    std::vector<absl::string_view> parts =
        absl::StrSplit(absl::string_view(path_), '/', absl::SkipEmpty());
    // The route with ids as {id}, for metrics: only the API's own routes
    // and methods, so that no request can add label values.
    std::vector<std::string> shape;
    for (size_t i = 0; i < parts.size(); ++i) {
      const bool id =
          (i == 2 && (parts[1] == "files" || parts[1] == "webhooks")) ||
          (i == 3 && parts.size() > 2 && parts[1] == "fine_tuning") ||
          (i == 4 && parts[1] == "webhooks" && parts[3] == "deliveries");
      shape.push_back(id ? "{id}" : std::string(parts[i]));
    }
    const std::string route = absl::StrCat("/", absl::StrJoin(shape, "/"));
    static const auto* const kRoutes =
        new std::vector<std::string>{"/v1/files",
                                     "/v1/files/{id}",
                                     "/v1/files/{id}/content",
                                     "/v1/fine_tuning/jobs",
                                     "/v1/fine_tuning/jobs/{id}",
                                     "/v1/fine_tuning/jobs/{id}/cancel",
                                     "/v1/fine_tuning/jobs/{id}/pause",
                                     "/v1/fine_tuning/jobs/{id}/resume",
                                     "/v1/fine_tuning/jobs/{id}/events",
                                     "/v1/fine_tuning/jobs/{id}/checkpoints",
                                     "/v1/webhooks",
                                     "/v1/webhooks/{id}",
                                     "/v1/webhooks/{id}/deliveries",
                                     "/v1/webhooks/{id}/rotate_secret",
                                     "/v1/webhooks/{id}/deliveries/{id}/"
                                     "redeliver"};
    if ((method_ == "GET" || method_ == "POST" || method_ == "DELETE") &&
        std::find(kRoutes->begin(), kRoutes->end(), route) != kRoutes->end()) {
      route_ = absl::StrCat(method_, " ", route);
    }
    if (parts.size() >= 2 && parts[0] == "v1" && parts[1] == "files") {
      return RouteFiles(parts);
    }
    if (parts.size() >= 3 && parts[0] == "v1" && parts[1] == "fine_tuning" &&
        parts[2] == "jobs") {
      return RouteJobs(parts);
    }
    if (parts.size() >= 2 && parts[0] == "v1" && parts[1] == "webhooks" &&
        backends().webhooks != nullptr) {
      return RouteWebhooks(parts);
    }
    return absl::NotFoundError(
        absl::StrCat("Unknown request URL: ", method_, " ", path_));
  }

  absl::Status RouteFiles(const std::vector<absl::string_view>& parts) {
    if (parts.size() == 2) {
      if (method_ == "POST") return UploadFile();
      if (method_ == "GET") return ListFiles();
      return MethodNotAllowed("GET, POST");
    }
    const std::string id(parts[2]);
    if (parts.size() == 3) {
      if (method_ == "GET") return GetFile(id);
      if (method_ == "DELETE") return DeleteFile(id);
      return MethodNotAllowed("GET, DELETE");
    }
    if (parts.size() == 4 && parts[3] == "content") {
      if (method_ == "GET") return FileContent(id);
      return MethodNotAllowed("GET");
    }
    return absl::NotFoundError(
        absl::StrCat("Unknown request URL: ", method_, " ", path_));
  }

  absl::Status RouteJobs(const std::vector<absl::string_view>& parts) {
    if (parts.size() == 3) {
      if (method_ == "POST") return CreateJob();
      if (method_ == "GET") return ListJobs();
      return MethodNotAllowed("GET, POST");
    }
    const std::string id(parts[3]);
    if (parts.size() == 4) {
      if (method_ == "GET") return GetJob(id);
      return MethodNotAllowed("GET");
    }
    if (parts.size() == 5) {
      const absl::string_view verb = parts[4];
      if (verb == "cancel" || verb == "pause" || verb == "resume") {
        if (method_ != "POST") return MethodNotAllowed("POST");
        return ControlJob(id, verb);
      }
      if (verb == "events" || verb == "checkpoints") {
        if (method_ != "GET") return MethodNotAllowed("GET");
        return verb == "events" ? ListEvents(id) : ListCheckpoints(id);
      }
    }
    return absl::NotFoundError(
        absl::StrCat("Unknown request URL: ", method_, " ", path_));
  }

  absl::Status RouteWebhooks(const std::vector<absl::string_view>& parts) {
    WebhookRouteRequest r;
    r.method = method_;
    for (size_t i = 2; i < parts.size(); ++i) r.rest.emplace_back(parts[i]);
    FTUNE_ASSIGN_OR_RETURN(r.tenant, Tenant());
    FTUNE_ASSIGN_OR_RETURN(auto q, ParseQuery(info_->query_string));
    if (method_ == "GET" && IsWebhookListing(r.rest)) {
      FTUNE_RETURN_IF_ERROR(OnlyQueryParams(q, {"after", "limit"}));
      FTUNE_ASSIGN_OR_RETURN(r.limit, LimitParam(q));
      r.after = q["after"];
    } else {
      FTUNE_RETURN_IF_ERROR(OnlyQueryParams(q, {}));
    }
    if (method_ == "POST" && r.rest.size() <= 1) {
      FTUNE_ASSIGN_OR_RETURN(r.body, JsonBody(/*empty_ok=*/false));
    } else if (method_ == "POST") {
      FTUNE_ASSIGN_OR_RETURN(r.body, JsonBody(/*empty_ok=*/true));
    }
    FTUNE_ASSIGN_OR_RETURN(WebhookRouteAnswer answer,
                           HandleWebhookRoute(*backends().webhooks, r));
    if (!answer.allow.empty()) return MethodNotAllowed(answer.allow);
    Respond(answer.status, answer.body);
    return absl::OkStatus();
  }

  // ------------------------------------------------------------ files ----

  absl::Status UploadFile() {
    FTUNE_ASSIGN_OR_RETURN(std::string tenant, Tenant());
    const char* type = mg_get_header(conn_, "Content-Type");
    if (type == nullptr ||
        !absl::StartsWithIgnoreCase(type, "multipart/form-data")) {
      ApiError e;
      e.http_status = 415;
      e.type = "invalid_request_error";
      e.code = "unsupported_media_type";
      e.message = absl::StrCat(
          "POST /v1/files takes multipart/form-data (fields file and "
          "purpose), got Content-Type \"",
          type == nullptr ? "" : type, "\"");
      DrainBody();
      RespondError(e);
      return absl::OkStatus();
    }
    rpc::FileCatalog* files = backends().files;
    const int64_t max = files->options().max_file_size_bytes;
    if (info_->content_length > max + kMultipartOverhead) {
      return engine::QuotaExceeded(
          absl::StrCat("the upload of ", info_->content_length,
                       " bytes exceeds max_file_size_bytes ", max),
          "max_file_size_bytes", max);
    }
    UploadForm form;
    form.files = files;
    form.tenant = tenant;
    mg_form_data_handler handler;
    std::memset(&handler, 0, sizeof(handler));
    handler.field_found = &UploadForm::FieldFound;
    handler.field_get = &UploadForm::FieldGet;
    handler.user_data = &form;
    const int handled = mg_handle_form_request(conn_, &handler);
    FTUNE_RETURN_IF_ERROR(form.error);
    if (handled < 0) {
      return InvalidParam("file", "the multipart body is malformed");
    }
    if (!form.file_seen) return InvalidParam("file", "file is required");
    if (!form.purpose) return InvalidParam("purpose", "purpose is required");
    if (*form.purpose != "fine-tune") {
      return InvalidParam("purpose",
                          absl::StrCat("purpose \"", *form.purpose,
                                       "\" is not supported (only fine-tune)"));
    }
    absl::StatusOr<v1::File> file = form.upload->Finish();
    if (!file.ok()) return AboutFileParam(file.status());
    Respond(200, FileJson(*file));
    return absl::OkStatus();
  }

  absl::Status ListFiles() {
    FTUNE_ASSIGN_OR_RETURN(std::string tenant, Tenant());
    FTUNE_ASSIGN_OR_RETURN(auto q, ParseQuery(info_->query_string));
    FTUNE_RETURN_IF_ERROR(
        OnlyQueryParams(q, {"after", "limit", "purpose", "order"}));
    FTUNE_ASSIGN_OR_RETURN(int limit, LimitParam(q));
    if (q.count("purpose") && q["purpose"] != "fine-tune") {
      // No other purpose is ever stored: an empty list.
      Respond(200, ListJson(json::array(), false));
      return absl::OkStatus();
    }
    if (q.count("order") && q["order"] != "desc") {
      return InvalidParam("order", "order: only desc (newest first)");
    }
    std::vector<v1::File> out;
    bool has_more = false;
    FTUNE_RETURN_IF_ERROR(PageAfter<v1::File>(
        q["after"], limit,
        [&](const std::string& token, int size,
            std::vector<std::pair<std::string, v1::File>>* items)
            -> absl::StatusOr<std::string> {
          v1::ListFilesRequest request;
          request.set_page_size(size);
          request.set_page_token(token);
          FTUNE_ASSIGN_OR_RETURN(v1::ListFilesResponse page,
                                 backends().files->ListFiles(tenant, request));
          for (const v1::File& f : page.files()) items->emplace_back(f.id(), f);
          return page.next_page_token();
        },
        &out, &has_more));
    json data = json::array();
    for (const v1::File& f : out) data.push_back(FileJson(f));
    Respond(200, ListJson(data, has_more));
    return absl::OkStatus();
  }

  absl::Status GetFile(const std::string& id) {
    FTUNE_ASSIGN_OR_RETURN(std::string tenant, Tenant());
    FTUNE_ASSIGN_OR_RETURN(v1::File file,
                           backends().files->GetFile(tenant, id));
    Respond(200, FileJson(file));
    return absl::OkStatus();
  }

  absl::Status DeleteFile(const std::string& id) {
    FTUNE_ASSIGN_OR_RETURN(std::string tenant, Tenant());
    FTUNE_RETURN_IF_ERROR(backends().files->DeleteFile(tenant, id));
    Respond(200, json{{"id", id}, {"object", "file"}, {"deleted", true}});
    return absl::OkStatus();
  }

  absl::Status FileContent(const std::string& id) {
    FTUNE_ASSIGN_OR_RETURN(std::string tenant, Tenant());
    FTUNE_ASSIGN_OR_RETURN(rpc::FileRange range,
                           backends().files->OpenContent(tenant, id, 0));
    mg_response_header_start(conn_, 200);
    mg_response_header_add(conn_, "Content-Type", "application/octet-stream",
                           -1);
    const std::string length = std::to_string(range.end - range.offset);
    mg_response_header_add(conn_, "Content-Length", length.c_str(), -1);
    mg_response_header_send(conn_);
    responded_ = true;
    status_code_ = 200;
    std::vector<char> buf(64 << 10);
    absl::Status status;
    while (range.offset < range.end) {
      const size_t want = static_cast<size_t>(
          std::min<int64_t>(range.end - range.offset, buf.size()));
      ssize_t n;
      do {
        n = ::pread(range.fd, buf.data(), want, range.offset);
      } while (n < 0 && errno == EINTR);
      if (n <= 0) {
        status = absl::DataLossError(
            absl::StrCat("file ", id, " could not be read to its end"));
        break;
      }
      if (mg_write(conn_, buf.data(), static_cast<size_t>(n)) <= 0) break;
      range.offset += n;
    }
    ::close(range.fd);
    return status;
  }

  // ------------------------------------------------------------- jobs ----

  absl::Status CreateJob() {
    FTUNE_ASSIGN_OR_RETURN(std::string tenant, Tenant());
    FTUNE_ASSIGN_OR_RETURN(json body, JsonBody(/*empty_ok=*/false));
    FTUNE_ASSIGN_OR_RETURN(v1::CreateJobRequest request, ParseCreateJob(body));
    if (const char* key = mg_get_header(conn_, "Idempotency-Key")) {
      request.set_request_id(key);
    }
    v1::CreateJobResponse response;
    std::promise<absl::Status> done;
    backends().jobs->CreateJob(tenant, request, &response,
                               [&done](absl::Status s) { done.set_value(s); });
    FTUNE_RETURN_IF_ERROR(done.get_future().get());
    json out = JobJson(response.job());
    // The plan of the run (JobEstimate, proto3 JSON): steps, warnings and
    // the memory planner's prediction (docs/memory.md).
    std::string estimate;
    google::protobuf::util::JsonPrintOptions opts;
    opts.preserve_proto_field_names = true;
    if (google::protobuf::util::MessageToJsonString(response.estimate(),
                                                    &estimate, opts)
            .ok()) {
      out["ftune"]["estimate"] = json::parse(estimate, nullptr, false);
    }
    Respond(200, out);
    return absl::OkStatus();
  }

  absl::Status ListJobs() {
    FTUNE_ASSIGN_OR_RETURN(std::string tenant, Tenant());
    FTUNE_ASSIGN_OR_RETURN(auto q, ParseQuery(info_->query_string));
    FTUNE_RETURN_IF_ERROR(OnlyQueryParams(q, {"after", "limit"}, "metadata["));
    FTUNE_ASSIGN_OR_RETURN(int limit, LimitParam(q));
    // metadata[k]=v filters, as ListJobs' label selector.
    std::string selector;
    for (const auto& [name, value] : q) {
      absl::string_view key = name;
      if (!absl::ConsumePrefix(&key, "metadata[")) continue;
      if (!absl::ConsumeSuffix(&key, "]") || key.empty() ||
          key.find_first_of(",=") != absl::string_view::npos ||
          value.find(',') != std::string::npos) {
        return InvalidParam(name, absl::StrCat(name,
                                               ": expected metadata[key]=value "
                                               "(no ',' or '=' in the key)"));
      }
      if (!selector.empty()) selector += ",";
      absl::StrAppend(&selector, key, "=", value);
    }
    std::vector<v1::Job> out;
    bool has_more = false;
    FTUNE_RETURN_IF_ERROR(PageAfter<v1::Job>(
        q["after"], limit,
        [&](const std::string& token, int size,
            std::vector<std::pair<std::string, v1::Job>>* items)
            -> absl::StatusOr<std::string> {
          v1::ListJobsRequest request;
          request.set_page_size(size);
          request.set_page_token(token);
          request.set_label_selector(selector);
          v1::ListJobsResponse page;
          absl::Status s =
              rpc::ListJobs(*backends().store, tenant, request, &page);
          if (!s.ok()) {
            std::optional<v1::ErrorInfo> info = engine::GetErrorInfo(s);
            if (info && info->field() == "label_selector") {
              return InvalidParam("metadata", std::string(s.message()));
            }
            return s;
          }
          for (const v1::Job& j : page.jobs()) items->emplace_back(j.id(), j);
          return page.next_page_token();
        },
        &out, &has_more));
    json data = json::array();
    for (const v1::Job& j : out) data.push_back(JobJson(j));
    Respond(200, ListJson(data, has_more));
    return absl::OkStatus();
  }

  absl::StatusOr<v1::Job> LoadJob(const std::string& tenant,
                                  const std::string& id) {
    FTUNE_ASSIGN_OR_RETURN(core::Job job, backends().jobs->GetJob(tenant, id));
    return engine::JobToProto(job);
  }

  absl::Status GetJob(const std::string& id) {
    FTUNE_ASSIGN_OR_RETURN(std::string tenant, Tenant());
    FTUNE_ASSIGN_OR_RETURN(v1::Job job, LoadJob(tenant, id));
    Respond(200, JobJson(job));
    return absl::OkStatus();
  }

  absl::Status ControlJob(const std::string& id, absl::string_view verb) {
    FTUNE_ASSIGN_OR_RETURN(std::string tenant, Tenant());
    FTUNE_ASSIGN_OR_RETURN(json body, JsonBody(/*empty_ok=*/true));
    if (!body.is_object() || !body.empty()) {
      const std::string first =
          body.is_object() ? body.begin().key() : std::string();
      return InvalidParam(
          first, absl::StrCat("POST .../", verb, " takes no request fields"));
    }
    absl::StatusOr<core::Job> job;
    if (verb == "cancel") {
      job = backends().jobs->CancelJob(tenant, id);
    } else if (verb == "pause") {
      job = backends().jobs->PauseJob(tenant, id);
    } else {
      job = backends().jobs->ResumeJob(tenant, id);
    }
    FTUNE_RETURN_IF_ERROR(job.status());
    Respond(200, JobJson(engine::JobToProto(*job)));
    return absl::OkStatus();
  }

  absl::Status ListEvents(const std::string& id) {
    FTUNE_ASSIGN_OR_RETURN(std::string tenant, Tenant());
    FTUNE_ASSIGN_OR_RETURN(auto q, ParseQuery(info_->query_string));
    FTUNE_RETURN_IF_ERROR(OnlyQueryParams(q, {"after", "limit"}));
    FTUNE_ASSIGN_OR_RETURN(int limit, LimitParam(q));
    FTUNE_ASSIGN_OR_RETURN(v1::Job job, LoadJob(tenant, id));
    int64_t after = 0;
    if (q.count("after")) {
      FTUNE_ASSIGN_OR_RETURN(after, EventSequence(id, q["after"]));
    }
    // Events and metric points share one sequence: read a page of each
    // after `after` and merge them in sequence order.
    v1::ListJobEventsRequest er;
    er.set_job_id(id);
    er.set_after_sequence(after);
    er.set_page_size(limit + 1);
    v1::ListJobEventsResponse events;
    FTUNE_RETURN_IF_ERROR(rpc::ListJobEvents(
        *backends().store, *backends().jobs, tenant, er, &events));
    v1::ListJobMetricsRequest mr;
    mr.set_job_id(id);
    mr.set_after_sequence(after);
    mr.set_page_size(limit + 1);
    v1::ListJobMetricsResponse metrics;
    FTUNE_RETURN_IF_ERROR(rpc::ListJobMetrics(
        *backends().store, *backends().jobs, tenant, mr, &metrics));
    std::vector<std::pair<int64_t, json>> merged;
    for (const v1::JobEvent& e : events.events()) {
      merged.emplace_back(e.sequence(), EventJson(id, e));
    }
    for (const v1::MetricPoint& m : metrics.metrics()) {
      merged.emplace_back(m.sequence(),
                          MetricEventJson(id, m, job.progress().total_steps()));
    }
    std::sort(merged.begin(), merged.end(),
              [](const auto& a, const auto& b) { return a.first < b.first; });
    const bool has_more = static_cast<int>(merged.size()) > limit ||
                          !events.next_page_token().empty() ||
                          !metrics.next_page_token().empty();
    json data = json::array();
    for (int i = 0; i < std::min<int>(limit, merged.size()); ++i) {
      data.push_back(std::move(merged[i].second));
    }
    Respond(200, ListJson(data, has_more));
    return absl::OkStatus();
  }

  absl::Status ListCheckpoints(const std::string& id) {
    FTUNE_ASSIGN_OR_RETURN(std::string tenant, Tenant());
    FTUNE_ASSIGN_OR_RETURN(auto q, ParseQuery(info_->query_string));
    FTUNE_RETURN_IF_ERROR(OnlyQueryParams(q, {"after", "limit"}));
    FTUNE_ASSIGN_OR_RETURN(int limit, LimitParam(q));
    FTUNE_ASSIGN_OR_RETURN(v1::Job job, LoadJob(tenant, id));
    // Newest first, as OpenAI lists them.
    std::vector<v1::Checkpoint> all;
    std::string token;
    do {
      v1::ListCheckpointsRequest request;
      request.set_job_id(id);
      request.set_page_size(1000);
      request.set_page_token(token);
      v1::ListCheckpointsResponse page;
      FTUNE_RETURN_IF_ERROR(rpc::ListCheckpoints(
          *backends().store, *backends().jobs, tenant, request, &page));
      all.insert(all.end(), page.checkpoints().begin(),
                 page.checkpoints().end());
      token = page.next_page_token();
    } while (!token.empty());
    std::reverse(all.begin(), all.end());
    std::vector<v1::Checkpoint> out;
    bool has_more = false;
    FTUNE_RETURN_IF_ERROR(PageAfter<v1::Checkpoint>(
        q["after"], limit,
        [&](const std::string&, int,
            std::vector<std::pair<std::string, v1::Checkpoint>>* items)
            -> absl::StatusOr<std::string> {
          for (const v1::Checkpoint& c : all) {
            items->emplace_back(CheckpointId(id, c), c);
          }
          return std::string();
        },
        &out, &has_more));
    json data = json::array();
    for (const v1::Checkpoint& c : out) data.push_back(CheckpointJson(job, c));
    Respond(200, ListJson(data, has_more));
    return absl::OkStatus();
  }

  const OpenAiHttpServer& server_;
  mg_connection* const conn_;
  const mg_request_info* const info_;
  std::string method_;
  std::string path_;
  std::string route_ = "other";
  bool responded_ = false;
  int status_code_ = 500;
};

OpenAiHttpServer::OpenAiHttpServer(OpenAiServerOptions options,
                                   OpenAiBackends backends)
    : options_(std::move(options)), backends_(backends) {}

absl::StatusOr<std::unique_ptr<OpenAiHttpServer>> OpenAiHttpServer::Start(
    const OpenAiServerOptions& options, const OpenAiBackends& backends) {
  if (backends.store == nullptr || backends.jobs == nullptr ||
      backends.files == nullptr || backends.auth == nullptr) {
    return absl::InvalidArgumentError("OpenAI HTTP API: a backend is missing");
  }
  std::unique_ptr<OpenAiHttpServer> server(
      new OpenAiHttpServer(options, backends));
  metrics::CivetListenerOptions listen;
  listen.listen_address = options.listen_address;
  listen.address_name = "http_address";
  listen.server_name = "OpenAI HTTP API";
  listen.num_threads = options.num_threads;
  listen.request_timeout_ms = options.request_timeout_ms;
  FTUNE_ASSIGN_OR_RETURN(server->listener_,
                         metrics::CivetListener::Start(listen, server.get()));
  if (backends.registry != nullptr) {
    absl::StatusOr<metrics::CounterFamily*> requests =
        backends.registry->AddCounter(
            "ftune_http_requests_total",
            "Requests answered by the OpenAI-compatible HTTP API, by route "
            "(ids as {id}) and HTTP status code.",
            {"route", "code"});
    if (!requests.ok()) {
      server->Stop();
      return absl::InternalError(
          absl::StrCat("registering a metric: ", requests.status().message()));
    }
    server->requests_ = *requests;
  }
  mg_set_request_handler(server->listener_->context(), "/", &HandleRequest,
                         server.get());
  FTUNE_RETURN_IF_ERROR(server->listener_->LearnPort());
  return server;
}

OpenAiHttpServer::~OpenAiHttpServer() { Stop(); }

void OpenAiHttpServer::Stop() {
  if (listener_ != nullptr) listener_->Stop();
}

std::string OpenAiHttpServer::address() const { return listener_->address(); }

int OpenAiHttpServer::HandleRequest(mg_connection* conn, void* self_ptr) {
  const auto* self = static_cast<const OpenAiHttpServer*>(self_ptr);
  Request request(*self, conn);
  const int code = request.Handle();
  if (self->requests_ != nullptr) {
    self->requests_->WithLabels({request.route(), std::to_string(code)})->Inc();
  }
  return code;
}

}  // namespace ftune::server::http
