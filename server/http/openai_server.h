// OpenAiHttpServer: the scheduler's OpenAI-compatible fine-tuning API over
// HTTP (docs/openai-compat.md), served with civetweb:
//
//   POST   /v1/files                          multipart upload (purpose
//   fine-tune) GET    /v1/files[?after&limit&purpose&order] GET /v1/files/{id}
//   GET /v1/files/{id}/content DELETE /v1/files/{id} POST /v1/fine_tuning/jobs
//   (Idempotency-Key header) GET
//   /v1/fine_tuning/jobs[?after&limit&metadata[k]=v] GET
//   /v1/fine_tuning/jobs/{id} POST   /v1/fine_tuning/jobs/{id}/cancel | /pause
//   | /resume GET    /v1/fine_tuning/jobs/{id}/events[?after&limit] GET
//   /v1/fine_tuning/jobs/{id}/checkpoints[?after&limit]
//
// A translator only: every rule is the one the gRPC API applies, through
// the same objects (FileCatalog for files, JobEngine for creating and
// controlling jobs, job_queries.h for listings, the StoreAuthenticator for
// "Authorization: Bearer <ftune API key>"). Errors are OpenAI's
// {"error": {...}} with the HTTP status of ErrorFromStatus
// (server/http/openai_json.h).
//
// Thread-safety: thread-safe; requests run on civetweb's worker threads.
// Every backend must outlive the server (or Stop()).
#ifndef FTUNE_SERVER_HTTP_OPENAI_SERVER_H_
#define FTUNE_SERVER_HTTP_OPENAI_SERVER_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/metrics/civet_listener.h"

struct mg_connection;

namespace ftune::metrics {
class Registry;
template <typename T>
class Family;
class Counter;
using CounterFamily = Family<Counter>;
}  // namespace ftune::metrics

namespace ftune::store {
class Store;
}  // namespace ftune::store

namespace ftune::server {
namespace engine {
class JobEngine;
}  // namespace engine
namespace webhook {
class WebhookRegistry;
}  // namespace webhook
namespace rpc {
class FileCatalog;
class StoreAuthenticator;
}  // namespace rpc

namespace http {

struct OpenAiServerOptions {
  // "host:port", an IPv4 host (Debian's civetweb has no IPv6); port 0
  // picks a free one (see port()).
  std::string listen_address = "127.0.0.1:8080";
  // Requests served at once (1..64).
  int num_threads = 8;
  // Largest JSON request body (413 above it). Uploads are bounded by the
  // FileCatalog's max_file_size_bytes instead.
  int64_t max_json_body_bytes = int64_t{1} << 20;
  // How long one request may take to arrive and be answered, uploads
  // included.
  int request_timeout_ms = 300000;
};

struct OpenAiBackends {
  store::Store* store = nullptr;
  engine::JobEngine* jobs = nullptr;
  rpc::FileCatalog* files = nullptr;
  rpc::StoreAuthenticator* auth = nullptr;
  // The /v1/webhooks routes (webhook_routes.h); null = not served.
  webhook::WebhookRegistry* webhooks = nullptr;
  // Where ftune_http_requests_total{route, code} is registered; null = no
  // metrics.
  metrics::Registry* registry = nullptr;
};

class OpenAiHttpServer {
 public:
  // Starts serving before it returns. INVALID_ARGUMENT for a malformed
  // address, thread count or a missing backend; UNAVAILABLE when the
  // address cannot be bound.
  static absl::StatusOr<std::unique_ptr<OpenAiHttpServer>> Start(
      const OpenAiServerOptions& options, const OpenAiBackends& backends);

  ~OpenAiHttpServer();  // Stop().
  OpenAiHttpServer(const OpenAiHttpServer&) = delete;
  OpenAiHttpServer& operator=(const OpenAiHttpServer&) = delete;

  // Stops accepting, waits for requests in progress, frees the port.
  // Idempotent.
  void Stop();

  int port() const { return listener_->port(); }
  std::string address() const;

  // civetweb's request callback (public for the C callback table).
  static int HandleRequest(mg_connection* conn, void* self);

 private:
  class Request;  // openai_server.cc

  OpenAiHttpServer(OpenAiServerOptions options, OpenAiBackends backends);

  const OpenAiServerOptions options_;
  const OpenAiBackends backends_;
  metrics::CounterFamily* requests_ = nullptr;  // Owned by the registry.
  std::unique_ptr<metrics::CivetListener> listener_;
};

}  // namespace http
}  // namespace ftune::server

#endif  // FTUNE_SERVER_HTTP_OPENAI_SERVER_H_
