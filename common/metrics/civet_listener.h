// CivetListener: one civetweb server's life, shared by ftune's HTTP front
// ends (the Prometheus exposer, the OpenAI-compatible API): parses and
// checks "host:port", starts civetweb with bounded threads and request
// time, reports why a start failed (civetweb says so only through its log
// callback), learns the bound port, and stops promptly.
//
//   CivetListenerOptions o;
//   o.listen_address = "127.0.0.1:0";
//   o.address_name = "http_address";      // names the flag in errors
//   o.server_name = "OpenAI HTTP API";    // prefixes civetweb's messages
//   FTUNE_ASSIGN_OR_RETURN(auto listener, CivetListener::Start(o));
//   mg_set_request_handler(listener->context(), "/", &Handle, self);
//   FTUNE_RETURN_IF_ERROR(listener->LearnPort());
//
// Thread-safety: Start/LearnPort/Stop from one thread; port(), host() and
// address() are constant once LearnPort() returned.
#ifndef FTUNE_COMMON_METRICS_CIVET_LISTENER_H_
#define FTUNE_COMMON_METRICS_CIVET_LISTENER_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

struct mg_context;

namespace ftune::metrics {

struct CivetListenerOptions {
  // "host:port"; host an IPv4 address (Debian's civetweb has no IPv6),
  // port 0..65535 (0: a free one, see port()).
  std::string listen_address;
  // In error messages: what the address is called ("http_address", "metrics
  // listen address") and what the server is ("metrics HTTP server").
  std::string address_name = "listen address";
  std::string server_name = "HTTP server";
  int num_threads = 2;  // 1..64
  int request_timeout_ms = 10000;
};

class CivetListener {
 public:
  // Listening before it returns (with no handlers yet: civetweb answers 404
  // until the caller sets them). INVALID_ARGUMENT for a malformed address
  // or thread count, naming options.address_name; UNAVAILABLE when the
  // address cannot be bound, with civetweb's reason. `user_data` is
  // civetweb's (mg_get_user_data).
  static absl::StatusOr<std::unique_ptr<CivetListener>> Start(
      const CivetListenerOptions& options, void* user_data = nullptr);

  ~CivetListener();  // Stop().
  CivetListener(const CivetListener&) = delete;
  CivetListener& operator=(const CivetListener&) = delete;

  mg_context* context() const { return context_; }

  // Reads the bound port from civetweb (INTERNAL if it reports none).
  absl::Status LearnPort();

  // Stops accepting, waits for requests in progress (each bounded by the
  // request timeout), frees the port. Idempotent.
  void Stop();

  int port() const { return port_; }
  const std::string& host() const { return host_; }
  std::string address() const;  // "host:port" with the bound port

 private:
  CivetListener(std::string host, std::string server_name)
      : host_(std::move(host)), server_name_(std::move(server_name)) {}

  const std::string host_;
  const std::string server_name_;
  mg_context* context_ = nullptr;
  int port_ = 0;
};

}  // namespace ftune::metrics

#endif  // FTUNE_COMMON_METRICS_CIVET_LISTENER_H_
