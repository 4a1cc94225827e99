#include "common/metrics/http_server.h"

#include <civetweb.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/metrics/text_format.h"
#include "common/status.h"

namespace ftune::metrics {
namespace {

void Respond(mg_connection* conn, int status, const char* content_type,
             const std::string& body, bool head) {
  mg_response_header_start(conn, status);
  mg_response_header_add(conn, "Content-Type", content_type, -1);
  const std::string length = std::to_string(body.size());
  mg_response_header_add(conn, "Content-Length", length.c_str(), -1);
  mg_response_header_add(conn, "Cache-Control", "no-store", -1);
  if (status == 405) mg_response_header_add(conn, "Allow", "GET, HEAD", -1);
  mg_response_header_send(conn);
  if (!head && !body.empty()) mg_write(conn, body.data(), body.size());
}

constexpr char kPlain[] = "text/plain; charset=utf-8";

}  // namespace

MetricsHttpServer::MetricsHttpServer(const Registry* registry,
                                     ReadinessCheck readiness)
    : registry_(registry), readiness_(std::move(readiness)) {}

absl::StatusOr<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Start(
    const MetricsHttpServerOptions& options, const Registry* registry,
    ReadinessCheck readiness) {
  if (registry == nullptr) {
    return absl::InvalidArgumentError("metrics HTTP server: registry is null");
  }
  std::unique_ptr<MetricsHttpServer> server(
      new MetricsHttpServer(registry, std::move(readiness)));
  CivetListenerOptions listen;
  listen.listen_address = options.listen_address;
  listen.address_name = "metrics listen address";
  listen.server_name = "metrics HTTP server";
  listen.num_threads = options.num_threads;
  listen.request_timeout_ms = 10000;
  FTUNE_ASSIGN_OR_RETURN(server->listener_,
                         CivetListener::Start(listen, server.get()));
  for (const char* path : {"/metrics", "/healthz", "/readyz"}) {
    mg_set_request_handler(server->listener_->context(), path, &HandleRequest,
                           server.get());
  }
  FTUNE_RETURN_IF_ERROR(server->listener_->LearnPort());
  return server;
}

MetricsHttpServer::~MetricsHttpServer() { Stop(); }

void MetricsHttpServer::Stop() {
  if (listener_ != nullptr) listener_->Stop();
}

std::string MetricsHttpServer::address() const { return listener_->address(); }

int MetricsHttpServer::HandleRequest(mg_connection* conn, void* self_ptr) {
  const auto* self = static_cast<const MetricsHttpServer*>(self_ptr);
  const mg_request_info* request = mg_get_request_info(conn);
  const std::string method =
      request->request_method != nullptr ? request->request_method : "";
  const std::string path =
      request->local_uri != nullptr ? request->local_uri : "";
  const bool head = method == "HEAD";
  // civetweb also routes "/metrics/..." here; only the exact paths exist.
  if (path != "/metrics" && path != "/healthz" && path != "/readyz") {
    Respond(conn, 404, kPlain, "not found\n", head);
    return 404;
  }
  if (method != "GET" && !head) {
    Respond(conn, 405, kPlain, "method not allowed\n", head);
    return 405;
  }
  if (path == "/metrics") {
    Respond(conn, 200, kTextContentType, self->registry_->Scrape(), head);
    return 200;
  }
  if (path == "/healthz") {
    Respond(conn, 200, kPlain, "ok\n", head);
    return 200;
  }
  const absl::Status ready =
      self->readiness_ ? self->readiness_() : absl::OkStatus();
  if (ready.ok()) {
    Respond(conn, 200, kPlain, "ok\n", head);
    return 200;
  }
  Respond(conn, 503, kPlain, absl::StrCat(ready.message(), "\n"), head);
  return 503;
}

}  // namespace ftune::metrics
