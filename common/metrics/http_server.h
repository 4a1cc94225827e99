// MetricsHttpServer: serves a Registry over HTTP with civetweb.
//
//   GET /metrics  200, Prometheus text format 0.0.4
//                 (Content-Type: text/plain; version=0.0.4; charset=utf-8)
//   GET /healthz  200 "ok" while the process is serving at all
//   GET /readyz   200 "ok" when the readiness check returns OK, else 503 with
//                 the check's message as the body
// HEAD is answered like GET without a body; other methods get 405; other
// paths 404.
//
//   MetricsHttpServerOptions options;
//   options.listen_address = "127.0.0.1:0";      // port 0: pick a free one
//   FTUNE_ASSIGN_OR_RETURN(auto server,
//       MetricsHttpServer::Start(options, &registry, [&] { return Ready(); }));
//   FTUNE_LOG(INFO) << "metrics on http://" << server->address();
//
// Thread-safety: thread-safe. Requests run on civetweb's worker threads and
// call Registry::Collect() and the readiness check concurrently. The Registry
// and everything the readiness check uses must outlive the server (or
// Stop()).
#ifndef FTUNE_COMMON_METRICS_HTTP_SERVER_H_
#define FTUNE_COMMON_METRICS_HTTP_SERVER_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/metrics/civet_listener.h"
#include "common/metrics/registry.h"

struct mg_connection;

namespace ftune::metrics {

struct MetricsHttpServerOptions {
  // "host:port". host: an IPv4 address (Debian's civetweb is built without
  // IPv6); 127.0.0.1 keeps the endpoint local, 0.0.0.0 exposes it on every
  // interface. port 0 picks a free port, reported by port().
  std::string listen_address = "127.0.0.1:9090";
  // civetweb worker threads, i.e. requests served at once (1..64).
  int num_threads = 2;
};

// OK: ready. Otherwise the message says why not (e.g. "store not open").
using ReadinessCheck = std::function<absl::Status()>;

class MetricsHttpServer {
 public:
  // Starts serving before it returns. `registry` must be non-null;
  // `readiness` may be empty (always ready). Errors: InvalidArgument for a
  // malformed listen address or thread count; Unavailable when the address
  // cannot be bound (e.g. the port is in use), with civetweb's reason.
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(
      const MetricsHttpServerOptions& options, const Registry* registry,
      ReadinessCheck readiness = nullptr);

  ~MetricsHttpServer();  // Stop().
  MetricsHttpServer(const MetricsHttpServer&) = delete;
  MetricsHttpServer& operator=(const MetricsHttpServer&) = delete;

  // Stops accepting, waits for requests in progress (each bounded by a 10 s
  // request timeout), frees the port.
  // Idempotent.
  void Stop();

  // The bound port (the chosen one when the options asked for port 0).
  int port() const { return listener_->port(); }
  // "host:port" with the bound port.
  std::string address() const;

 private:
  MetricsHttpServer(const Registry* registry, ReadinessCheck readiness);
  static int HandleRequest(mg_connection* conn, void* self);

  const Registry* const registry_;
  const ReadinessCheck readiness_;
  std::unique_ptr<CivetListener> listener_;
};

}  // namespace ftune::metrics

#endif  // FTUNE_COMMON_METRICS_HTTP_SERVER_H_
