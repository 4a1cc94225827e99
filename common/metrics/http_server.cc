#include "common/metrics/http_server.h"

#include <arpa/inet.h>
#include <civetweb.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/metrics/text_format.h"

namespace ftune::metrics {
namespace {

// civetweb reports why mg_start() failed only through the log callback, on
// the thread that called mg_start(); this collects those lines.
thread_local std::string* start_errors = nullptr;

int LogMessage(const mg_connection*, const char* message) {
  if (start_errors != nullptr) {
    if (!start_errors->empty()) start_errors->append("; ");
    start_errors->append(message);
  } else {
    FTUNE_LOG(WARNING) << "metrics HTTP server: " << message;
  }
  return 1;  // Handled: civetweb must not print it to stderr as well.
}

void InitCivetwebOnce() {
  static std::once_flag once;
  std::call_once(once, [] { mg_init_library(0); });
}

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

MetricsHttpServer::MetricsHttpServer(std::string host, const Registry* registry,
                                     ReadinessCheck readiness)
    : host_(std::move(host)),
      registry_(registry),
      readiness_(std::move(readiness)) {}

absl::StatusOr<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Start(
    const MetricsHttpServerOptions& options, const Registry* registry,
    ReadinessCheck readiness) {
  if (registry == nullptr) {
    return absl::InvalidArgumentError("metrics HTTP server: registry is null");
  }
  const std::string& address = options.listen_address;
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics listen address \"", address,
                     "\": expected host:port, e.g. 127.0.0.1:9090"));
  }
  const std::string host = address.substr(0, colon);
  in_addr parsed;
  if (inet_pton(AF_INET, host.c_str(), &parsed) != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics listen address \"", address, "\": host \"", host,
                     "\" is not an IPv4 address (e.g. 127.0.0.1 or 0.0.0.0)"));
  }
  int port;
  if (!absl::SimpleAtoi(address.substr(colon + 1), &port) || port < 0 ||
      port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics listen address \"", address, "\": port \"",
                     address.substr(colon + 1), "\" is not in 0..65535"));
  }
  if (options.num_threads < 1 || options.num_threads > 64) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics HTTP server: num_threads ", options.num_threads,
                     " is not in 1..64"));
  }

  InitCivetwebOnce();
  std::unique_ptr<MetricsHttpServer> server(
      new MetricsHttpServer(host, registry, std::move(readiness)));
  const std::string ports = absl::StrCat(host, ":", port);
  const std::string threads = std::to_string(options.num_threads);
  const char* civet_options[] = {"listening_ports",
                                 ports.c_str(),
                                 "num_threads",
                                 threads.c_str(),
                                 "enable_keep_alive",
                                 "no",
                                 "request_timeout_ms",
                                 "10000",
                                 nullptr};
  mg_callbacks callbacks;
  std::memset(&callbacks, 0, sizeof(callbacks));
  callbacks.log_message = &LogMessage;

  std::string errors;
  start_errors = &errors;
  server->context_ = mg_start(&callbacks, server.get(), civet_options);
  start_errors = nullptr;
  if (server->context_ == nullptr) {
    return absl::UnavailableError(
        absl::StrCat("metrics HTTP server: cannot listen on ", ports, ": ",
                     errors.empty() ? "civetweb gave no reason" : errors));
  }
  for (const char* path : {"/metrics", "/healthz", "/readyz"}) {
    mg_set_request_handler(server->context_, path, &HandleRequest,
                           server.get());
  }

  mg_server_port bound[4];
  const int n = mg_get_server_ports(server->context_, 4, bound);
  if (n < 1 || bound[0].port <= 0) {
    server->Stop();
    return absl::InternalError(
        absl::StrCat("metrics HTTP server: listening on ", ports,
                     " but civetweb did not report the bound port"));
  }
  server->port_ = bound[0].port;
  return server;
}

MetricsHttpServer::~MetricsHttpServer() { Stop(); }

void MetricsHttpServer::Stop() {
  if (context_ == nullptr) return;
  // civetweb's listening thread notices the stop flag only when its poll()
  // returns, which without traffic takes up to its 2 s timeout. Connecting to
  // the port wakes it at once; keep poking until mg_stop() has returned.
  std::atomic<bool> stopped{false};
  std::thread waker([this, &stopped] {
    sockaddr_in addr;
    std::memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port_));
    // A wildcard listener is reachable on loopback.
    inet_pton(AF_INET, host_ == "0.0.0.0" ? "127.0.0.1" : host_.c_str(),
              &addr.sin_addr);
    while (!stopped.load()) {
      const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (fd >= 0) {
        connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
        close(fd);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  });
  mg_stop(context_);
  stopped = true;
  waker.join();
  context_ = nullptr;
}

std::string MetricsHttpServer::address() const {
  return absl::StrCat(host_, ":", port_);
}

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
