#include "server/scheduler_server.h"

#include <algorithm>

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "common/logging.h"
#include "common/metrics/http_server.h"
#include "common/metrics/registry.h"
#include "common/status.h"
#include "server/engine/dispatcher.h"
#include "server/engine/job_engine.h"
#include "server/engine/watch_hub.h"
#include "server/http/openai_server.h"
#include "server/http/tls_front.h"
#include "server/model_registry.h"
#include "server/rpc/admin_service.h"
#include "server/rpc/executor.h"
#include "server/rpc/file_service.h"
#include "server/rpc/grpc_metrics.h"
#include "server/rpc/job_log.h"
#include "server/rpc/job_watch.h"
#include "server/rpc/model_service.h"
#include "server/rpc/scheduler_metrics.h"
#include "server/rpc/try_model.h"
#include "server/rpc/webhook_service.h"
#include "server/rpc/worker_service.h"
#include "server/store/sqlite_store.h"
#include "server/webhook/registry.h"
#include "server/webhook/sender.h"

namespace ftune::server {
namespace {

// Splits "host:port" (host may be "[::1]"); INVALID_ARGUMENT when malformed.
absl::Status SplitHostPort(const std::string& address, std::string* host,
                           int* port) {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("grpc address \"", address, "\": expected host:port"));
  }
  *host = address.substr(0, colon);
  if (!absl::SimpleAtoi(address.substr(colon + 1), port) || *port < 0 ||
      *port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("grpc address \"", address, "\": port must be 0..65535"));
  }
  return absl::OkStatus();
}

}  // namespace

SchedulerServer::SchedulerServer(SchedulerOptions options)
    : options_(std::move(options)) {}

SchedulerServer::~SchedulerServer() {
  Shutdown();
  Wait();
  dispatcher_hook_.store(nullptr);
  webhook_hook_.store(nullptr);
}

absl::Status SchedulerServer::OpenStoreAndServices() {
  if (options_.db_path.empty()) return absl::OkStatus();
  FTUNE_RETURN_IF_ERROR(rpc::ValidateAuthOptions(options_.auth));
  FTUNE_RETURN_IF_ERROR(
      engine::ValidateTenantLimitOptions(options_.tenant_limits));
  // Config before the database: a typo in the config should not leave a
  // fresh database file behind.
  SchedulerConfig config;
  if (!options_.config_path.empty()) {
    FTUNE_ASSIGN_OR_RETURN(config, LoadSchedulerConfig(options_.config_path,
                                                       options_.storage_root));
  }
  registry_ = std::make_unique<metrics::Registry>();
  FTUNE_ASSIGN_OR_RETURN(metrics_,
                         rpc::SchedulerMetrics::Create(registry_.get()));
  FTUNE_ASSIGN_OR_RETURN(grpc_metrics_,
                         rpc::GrpcServerMetrics::Create(registry_.get()));
  watch_hub_ = std::make_unique<engine::WatchHub>();
  store::SqliteStoreOptions so;
  so.path = options_.db_path;
  so.max_bytes = options_.db_max_bytes;
  so.on_commit =
      [hub = watch_hub_->CommitHook(), dispatcher = &dispatcher_hook_,
       webhooks = &webhook_hook_,
       metrics = metrics_.get()](const std::vector<store::JobChange>& changes) {
        hub(changes);
        metrics->OnCommit(changes);
        if (engine::Dispatcher* d = dispatcher->load()) d->OnCommit(changes);
        if (webhook::DeliveryLoop* w = webhooks->load()) {
          for (const store::JobChange& c : changes) {
            for (const core::JobEvent& e : c.events) {
              if (store::WebhookEventTypeFor(e)) w->Poke();
            }
          }
        }
      };
  so.on_commit_timing = [metrics = metrics_.get()](absl::Duration d,
                                                   int writes) {
    metrics->OnCommitTiming(d, writes);
  };
  absl::StatusOr<std::unique_ptr<store::SqliteStore>> opened =
      store::SqliteStore::Open(so);
  if (!opened.ok()) {
    return absl::Status(opened.status().code(),
                        absl::StrCat("database ", options_.db_path, ": ",
                                     opened.status().message()));
  }
  store_ = *std::move(opened);
  store::SqliteStore* opened_store = store_.get();
  FTUNE_RETURN_IF_ERROR(metrics_->AttachStore(
      opened_store, [opened_store] { return opened_store->commit_count(); }));
  for (core::Model& m : config.models) {
    FTUNE_RETURN_IF_ERROR(store_->UpsertModel(std::move(m)).status());
  }
  engine::DispatcherOptions dopts;
  dopts.lease_duration = options_.lease_duration;
  dopts.heartbeat_interval = options_.heartbeat_interval;
  dopts.cancel_grace = options_.cancel_grace;
  dopts.tick = options_.dispatch_tick;
  if (dopts.heartbeat_interval * 3 > dopts.lease_duration) {
    return absl::InvalidArgumentError(
        "heartbeat_interval must be at most lease_duration / 3");
  }
  dispatcher_ =
      std::make_unique<engine::Dispatcher>(store_.get(), Clock::Real(), dopts);
  dispatcher_hook_.store(dispatcher_.get());
  engine::TenantLimitOptions lim = options_.tenant_limits;
  lim.on_refused = [metrics = metrics_.get()](const std::string& tenant,
                                              absl::string_view quota) {
    metrics->OnLimitRefused(tenant, quota);
  };
  limits_ = std::make_unique<engine::TenantLimits>(
      std::move(lim), options_.tenant_limits_clock != nullptr
                          ? options_.tenant_limits_clock
                          : Clock::Real());
  rpc::AuthOptions auth_options = options_.auth;
  auth_options.limits = limits_.get();
  auth_ = std::make_unique<rpc::StoreAuthenticator>(store_.get(), auth_options);
  rpc::JobStreamHandlers streams = options_.job_streams;
  if (!streams.watch_job) {
    rpc::WatchJobOptions wo;
    wo.limits = limits_.get();
    streams.watch_job = [hub = watch_hub_.get(), store = store_.get(), wo](
                            grpc::CallbackServerContext* ctx,
                            const v1::WatchJobRequest* request,
                            const rpc::Principal& principal) {
      return rpc::StartWatchJob(hub, store, ctx, request, principal, wo);
    };
  }
  if (!streams.try_model) {
    streams.try_model = [hub = watch_hub_.get(), store = store_.get(),
                         limits = limits_.get()](
                            grpc::CallbackServerContext* ctx,
                            const v1::TryModelRequest* request,
                            const rpc::Principal& principal) {
      return rpc::StartTryModel(hub, store, ctx, request, principal, limits);
    };
  }
  if (!streams.stream_job_log) {
    rpc::JobLogOptions lo;
    lo.storage_root = options_.storage_root;
    lo.limits = limits_.get();
    // Owned by the handler, so it lives as long as the job service, which
    // outlives the gRPC server and so every stream.
    auto streamer = std::make_shared<rpc::JobLogStreamer>(
        store_.get(), watch_hub_.get(), std::move(lo));
    streams.stream_job_log = [streamer](grpc::CallbackServerContext* ctx,
                                        const v1::StreamJobLogRequest* request,
                                        const rpc::Principal& principal) {
      return streamer->Start(ctx, request, principal);
    };
  }
  rpc_executor_ = std::make_unique<rpc::Executor>(rpc::Executor::Options{
      std::max(1, options_.rpc_threads), options_.rpc_max_queued});
  jobs_ = std::make_unique<engine::JobEngine>(store_.get());
  job_service_ = std::make_unique<rpc::JobServiceImpl>(
      store_.get(), jobs_.get(), auth_.get(), std::move(streams),
      rpc_executor_.get(), options_.storage_root);
  rpc::FileServiceOptions fo;
  fo.storage_root = options_.storage_root;
  fo.max_file_size_bytes = options_.max_file_size_bytes;
  fo.max_chunk_size_bytes = options_.max_upload_chunk_bytes;
  file_service_ =
      std::make_unique<rpc::FileService>(store_.get(), auth_.get(), fo);
  admin_service_ =
      std::make_unique<rpc::AdminServiceImpl>(store_.get(), auth_.get());
  model_service_ =
      std::make_unique<rpc::ModelServiceImpl>(store_.get(), auth_.get());
  worker_service_ = std::make_unique<rpc::WorkerServiceImpl>(
      store_.get(), auth_.get(), dispatcher_.get(), Clock::Real(),
      rpc_executor_.get(), options_.storage_root);
  webhook_registry_ = std::make_unique<webhook::WebhookRegistry>(
      store_.get(), options_.webhooks.policy);
  webhook_service_ = std::make_unique<rpc::WebhookServiceImpl>(
      webhook_registry_.get(), auth_.get(), rpc_executor_.get());
  webhook_sender_ = std::make_unique<webhook::CurlSender>();
  FTUNE_ASSIGN_OR_RETURN(
      webhook_loop_,
      webhook::DeliveryLoop::Create(store_.get(), webhook_sender_.get(),
                                    options_.webhook_clock != nullptr
                                        ? options_.webhook_clock
                                        : Clock::Real(),
                                    registry_.get(), options_.webhooks));
  webhook_hook_.store(webhook_loop_.get());
  return absl::OkStatus();
}

absl::Status SchedulerServer::Start() {
  std::string host;
  int requested_port = 0;
  if (absl::Status st =
          SplitHostPort(options_.grpc_address, &host, &requested_port);
      !st.ok()) {
    return st;
  }
  FTUNE_RETURN_IF_ERROR(OpenStoreAndServices());
  // Both are process-wide switches that must be set before the builder.
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();

  std::shared_ptr<grpc::ServerCredentials> credentials =
      grpc::InsecureServerCredentials();
  if (options_.tls_cert_pem.empty() != options_.tls_key_pem.empty()) {
    return absl::InvalidArgumentError(
        "TLS needs both the certificate and its key");
  }
  if (!options_.tls_client_ca_pem.empty() && options_.tls_cert_pem.empty()) {
    return absl::InvalidArgumentError(
        "client certificates (mTLS) need a server certificate too");
  }
  if (!options_.tls_cert_pem.empty()) {
    grpc::SslServerCredentialsOptions ssl(
        options_.tls_client_ca_pem.empty()
            ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
            : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
    ssl.pem_root_certs = options_.tls_client_ca_pem;
    ssl.pem_key_cert_pairs.push_back(
        {options_.tls_key_pem, options_.tls_cert_pem});
    credentials = grpc::SslServerCredentials(ssl);
  }
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options_.grpc_address, credentials, &port_);
  // gRPC sets SO_REUSEPORT by default, which would let a second scheduler
  // silently share our port and split the traffic. One port, one server.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  if (job_service_ != nullptr) {
    builder.RegisterService(job_service_.get());
    builder.RegisterService(admin_service_.get());
    builder.RegisterService(model_service_.get());
    builder.RegisterService(file_service_.get());
    builder.RegisterService(worker_service_.get());
    builder.RegisterService(webhook_service_.get());
  }
  if (grpc_metrics_ != nullptr) {
    std::vector<
        std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
        interceptors;
    interceptors.push_back(grpc_metrics_->InterceptorFactory());
    builder.experimental().SetInterceptorCreators(std::move(interceptors));
  }
  builder.SetMaxReceiveMessageSize(options_.max_message_bytes);
  builder.SetMaxSendMessageSize(options_.max_message_bytes);
  server_ = builder.BuildAndStart();
  if (server_ == nullptr || port_ == 0) {
    server_.reset();
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", options_.grpc_address,
                     " (address in use, or not a local address?)"));
  }
  server_->GetHealthCheckService()->SetServingStatus(true);
  if (dispatcher_ != nullptr && options_.dispatch) dispatcher_->Start();
  if (webhook_loop_ != nullptr) webhook_loop_->Start();
  if (!options_.metrics_address.empty() && registry_ != nullptr) {
    metrics::MetricsHttpServerOptions mo;
    mo.listen_address = options_.metrics_address;
    absl::StatusOr<std::unique_ptr<metrics::MetricsHttpServer>> http =
        metrics::MetricsHttpServer::Start(mo, registry_.get());
    if (!http.ok()) {
      Shutdown();
      Wait();
      return absl::Status(
          http.status().code(),
          absl::StrCat("metrics endpoint ", options_.metrics_address, ": ",
                       http.status().message()));
    }
    metrics_http_ = *std::move(http);
  }
  if (!options_.http_address.empty() && job_service_ != nullptr) {
    http::OpenAiServerOptions ho;
    // With TLS, HTTPS on http_address relays to the HTTP server on loopback
    // (civetweb cannot serve TLS with OpenSSL 3; server/http/tls_front.h).
    const bool https = !options_.tls_cert_pem.empty();
    ho.listen_address = https ? "127.0.0.1:0" : options_.http_address;
    absl::StatusOr<std::unique_ptr<http::OpenAiHttpServer>> api =
        http::OpenAiHttpServer::Start(
            ho, {store_.get(), jobs_.get(), file_service_->catalog(),
                 auth_.get(), webhook_registry_.get(), registry_.get()});
    if (!api.ok()) {
      Shutdown();
      Wait();
      return absl::Status(api.status().code(),
                          absl::StrCat("HTTP API ", options_.http_address, ": ",
                                       api.status().message()));
    }
    openai_http_ = *std::move(api);
    if (https) {
      http::TlsFrontOptions to;
      to.listen_address = options_.http_address;
      to.backend_address = openai_http_->address();
      to.cert_pem = options_.tls_cert_pem;
      to.key_pem = options_.tls_key_pem;
      to.client_ca_pem = options_.tls_client_ca_pem;
      absl::StatusOr<std::unique_ptr<http::TlsFront>> front =
          http::TlsFront::Start(std::move(to));
      if (!front.ok()) {
        Shutdown();
        Wait();
        return absl::Status(front.status().code(),
                            absl::StrCat("HTTPS API ", options_.http_address,
                                         ": ", front.status().message()));
      }
      https_front_ = *std::move(front);
    }
    FTUNE_LOG(INFO) << "OpenAI-compatible HTTP API on "
                    << (https ? "https://" : "http://") << http_address();
  }
  FTUNE_LOG(INFO) << "gRPC serving on " << address();
  return absl::OkStatus();
}

std::string SchedulerServer::metrics_address() const {
  return metrics_http_ == nullptr ? "" : metrics_http_->address();
}

std::string SchedulerServer::http_address() const {
  if (https_front_ != nullptr) return https_front_->address();
  return openai_http_ == nullptr ? "" : openai_http_->address();
}

std::string SchedulerServer::address() const {
  std::string host;
  int ignored;
  if (!SplitHostPort(options_.grpc_address, &host, &ignored).ok()) return "";
  return absl::StrCat(host, ":", port_);
}

void SchedulerServer::Shutdown() {
  if (server_ == nullptr || shut_down_) return;
  shut_down_ = true;
  if (metrics_http_ != nullptr) metrics_http_->Stop();
  if (https_front_ != nullptr) https_front_->Stop();
  if (openai_http_ != nullptr) openai_http_->Stop();
  // Health turns NOT_SERVING first so load balancers stop sending.
  server_->GetHealthCheckService()->SetServingStatus(false);
  // Watches are endless streams: end them first so they do not hold the
  // whole grace period.
  if (watch_hub_ != nullptr) watch_hub_->Shutdown();
  // Command streams are endless too; no new leases once stopping.
  if (dispatcher_ != nullptr) dispatcher_->Shutdown();
  if (webhook_loop_ != nullptr) webhook_loop_->Stop();
  FTUNE_LOG(INFO) << "stopping the gRPC server (calls in flight get "
                  << absl::FormatDuration(options_.shutdown_grace) << ")";
  server_->Shutdown(std::chrono::system_clock::now() +
                    absl::ToChronoMilliseconds(options_.shutdown_grace));
  FTUNE_LOG(INFO) << "gRPC server stopped";
}

void SchedulerServer::Wait() {
  if (server_ != nullptr) server_->Wait();
}

}  // namespace ftune::server
