// SchedulerServer: the ftune-scheduler process's gRPC server and everything it
// owns, behind a narrow start/stop API so tests can run it in-process on
// port 0 and main.cc stays wiring only.
//
// Every server enables the standard grpc.health.v1 service and server
// reflection (DESIGN.md).
//
// Thread-safety: Start()/Shutdown() are called from one thread; port() and
// address() are safe after Start() returns.
#ifndef FTUNE_SERVER_SCHEDULER_SERVER_H_
#define FTUNE_SERVER_SCHEDULER_SERVER_H_

#include <atomic>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "server/engine/tenant_limits.h"
#include "server/rpc/auth.h"
#include "server/rpc/job_service.h"
#include "server/webhook/delivery_loop.h"

namespace grpc {
class Server;
class Service;
}  // namespace grpc

namespace ftune::store {
class SqliteStore;
}  // namespace ftune::store

namespace ftune::metrics {
class MetricsHttpServer;
class Registry;
}  // namespace ftune::metrics

namespace ftune::server {

namespace http {
class OpenAiHttpServer;
class TlsFront;
}  // namespace http

namespace engine {
class Dispatcher;
class JobEngine;
class WatchHub;
}  // namespace engine

namespace rpc {
class AdminServiceImpl;
class Executor;
class FileService;
class GrpcServerMetrics;
class SchedulerMetrics;
class ModelServiceImpl;
class WorkerServiceImpl;
class WebhookServiceImpl;
}  // namespace rpc

namespace webhook {
class CurlSender;
class DeliveryLoop;
class WebhookRegistry;
}  // namespace webhook

struct SchedulerOptions {
  // host:port for gRPC. Port 0 picks a free port (see SchedulerServer::port()).
  std::string grpc_address = "127.0.0.1:50051";
  // host:port of the HTTP endpoint serving /metrics, /healthz and /readyz
  // (port 0 picks one; see metrics_address()); empty = none.
  std::string metrics_address;
  // TLS: PEM server certificate chain and key (both or neither; none =
  // plaintext). With client_ca_pem, clients must present a certificate
  // signed by it (mTLS).
  std::string tls_cert_pem;
  std::string tls_key_pem;
  std::string tls_client_ca_pem;
  // Largest request/response message in bytes (uploads are streamed in
  // chunks well below this).
  int max_message_bytes = 16 << 20;
  // How long Shutdown() lets in-flight calls finish before cancelling them.
  absl::Duration shutdown_grace = absl::Seconds(10);
  // The SQLite database (local disk, never shared storage). Empty: the
  // server serves only health and reflection (tests of the bare server).
  std::string db_path;
  // Size limit of the database file in bytes (0 = none): writes past it
  // answer UNAVAILABLE, as on a full disk.
  int64_t db_max_bytes = 0;
  // Root of shared storage (models/, files/, jobs/).
  std::string storage_root;
  // JSON config file registering base models (server/model_registry.h);
  // empty = no models.
  std::string config_path;
  // Admin and worker credentials (server/rpc/auth.h).
  rpc::AuthOptions auth;
  // Upload limits (FileService).
  int64_t max_file_size_bytes = int64_t{1} << 30;
  int64_t max_upload_chunk_bytes = int64_t{1} << 20;
  // Threads serving the unary JobService calls (store reads, and writes
  // that wait for the group commit). They bound the calls in progress, and
  // so the writes one group commit can batch; calls beyond them wait in a
  // queue of at most rpc_max_queued, then fail with UNAVAILABLE.
  int rpc_threads = 64;
  int64_t rpc_max_queued = 10000;
  // Worker protocol (WorkerService, server/engine/dispatcher.h).
  absl::Duration lease_duration = absl::Seconds(30);
  absl::Duration heartbeat_interval = absl::Seconds(5);
  absl::Duration cancel_grace = absl::Seconds(30);
  // Longest pause between two dispatch rounds when nothing happens.
  absl::Duration dispatch_tick = absl::Seconds(1);
  // false: no dispatcher thread (no leases granted or expired): for tests
  // that drive leases through the store by hand.
  bool dispatch = true;
  // host:port (IPv4) of the OpenAI-compatible HTTP API
  // (server/http/openai_server.h; port 0 picks one, see http_address());
  // empty = none. HTTPS with the gRPC TLS settings above (tls_cert_pem
  // set; client certificates required with tls_client_ca_pem), else plain
  // HTTP.
  std::string http_address;
  // Per-tenant limits (engine/tenant_limits.h): concurrent streams and
  // request rate. Defaults are generous; 0 turns a limit off.
  engine::TenantLimitOptions tenant_limits;
  // The clock of the request-rate buckets; null = the real clock (tests
  // pass a FakeClock).
  Clock* tenant_limits_clock = nullptr;
  // Stream handlers; empty ones are served by the built-in WatchJob (the
  // store's commit fan-out) and StreamJobLog (log files under storage_root).
  rpc::JobStreamHandlers job_streams;
  // Webhooks (server/webhook/): the target policy (also applied when
  // endpoints are registered), retries, limits. The delivery loop runs
  // whenever the store is open.
  webhook::DeliveryOptions webhooks;
  // The delivery loop's clock; null = the real clock (tests pass a
  // FakeClock).
  Clock* webhook_clock = nullptr;
};

class SchedulerServer {
 public:
  explicit SchedulerServer(SchedulerOptions options);
  ~SchedulerServer();  // Shuts down if still running.
  SchedulerServer(const SchedulerServer&) = delete;
  SchedulerServer& operator=(const SchedulerServer&) = delete;

  // Opens the database (FAILED_PRECONDITION when its schema is newer than
  // this binary's), loads the config (INVALID_ARGUMENT naming the problem),
  // registers the models, then binds and starts serving. UNAVAILABLE if the
  // address cannot be bound, INVALID_ARGUMENT if it is malformed.
  absl::Status Start();
  // The bound port (the real one when the options asked for port 0).
  int port() const { return port_; }
  // host:port actually bound.
  std::string address() const;
  // Stops accepting calls, lets in-flight calls finish within the grace
  // period, then cancels the rest. Idempotent.
  void Shutdown();
  // Blocks until the server has shut down.
  void Wait();

  // host:port of the metrics endpoint ("" without one).
  std::string metrics_address() const;
  // host:port of the OpenAI-compatible HTTP API ("" without one).
  std::string http_address() const;

  // The store, for in-process tests and wiring (null without db_path).
  store::SqliteStore* store() const { return store_.get(); }
  // The webhook registry, for the HTTP API and tests (null without db_path).
  webhook::WebhookRegistry* webhook_registry() const {
    return webhook_registry_.get();
  }
  // The dispatcher, for in-process tests (null without db_path).
  engine::Dispatcher* dispatcher() const { return dispatcher_.get(); }

 private:
  absl::Status OpenStoreAndServices();

  SchedulerOptions options_;
  // Declared before the server so they outlive it.
  // The hub outlives the store, whose commit hook feeds it.
  std::unique_ptr<engine::WatchHub> watch_hub_;
  // Metrics outlive the store (its commit hook feeds them).
  std::unique_ptr<metrics::Registry> registry_;
  std::unique_ptr<rpc::SchedulerMetrics> metrics_;
  std::unique_ptr<rpc::GrpcServerMetrics> grpc_metrics_;  // Outlives server_.
  // Set right after the store opens; read by the store's commit hook.
  std::atomic<engine::Dispatcher*> dispatcher_hook_{nullptr};
  std::unique_ptr<store::SqliteStore> store_;
  std::unique_ptr<engine::Dispatcher> dispatcher_;  // Stopped before the store.
  std::unique_ptr<engine::TenantLimits> limits_;    // Outlives the services.
  std::unique_ptr<rpc::StoreAuthenticator> auth_;
  std::unique_ptr<engine::JobEngine> jobs_;      // Outlives the services.
  std::unique_ptr<rpc::Executor> rpc_executor_;  // Outlives the services.
  std::unique_ptr<rpc::JobServiceImpl> job_service_;
  std::unique_ptr<rpc::AdminServiceImpl> admin_service_;
  std::unique_ptr<rpc::ModelServiceImpl> model_service_;
  std::unique_ptr<rpc::FileService> file_service_;
  std::unique_ptr<rpc::WorkerServiceImpl> worker_service_;
  std::unique_ptr<webhook::CurlSender> webhook_sender_;
  std::unique_ptr<webhook::WebhookRegistry> webhook_registry_;
  std::unique_ptr<rpc::WebhookServiceImpl> webhook_service_;
  // Set once the loop exists; read by the store's commit hook (pokes it).
  std::atomic<webhook::DeliveryLoop*> webhook_hook_{nullptr};
  std::unique_ptr<webhook::DeliveryLoop> webhook_loop_;  // Stopped first.
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<metrics::MetricsHttpServer> metrics_http_;  // Stops first.
  std::unique_ptr<http::OpenAiHttpServer> openai_http_;       // Stops first.
  // HTTPS in front of openai_http_ (then on loopback) when TLS is set.
  std::unique_ptr<http::TlsFront> https_front_;
  int port_ = 0;
  bool shut_down_ = false;
};

}  // namespace ftune::server

#endif  // FTUNE_SERVER_SCHEDULER_SERVER_H_
