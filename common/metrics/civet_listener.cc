#include "common/metrics/civet_listener.h"

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

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"

namespace ftune::metrics {
namespace {

// civetweb reports why mg_start() failed only through the log callback, on
// the thread that called mg_start(); this collects those lines. Later
// messages (from civetweb's own threads) are logged.
thread_local std::string* start_errors = nullptr;

int LogMessage(const mg_connection*, const char* message) {
  if (start_errors != nullptr) {
    if (!start_errors->empty()) start_errors->append("; ");
    start_errors->append(message);
  } else {
    FTUNE_LOG(WARNING) << "HTTP server (civetweb): " << message;
  }
  return 1;  // Handled: civetweb must not print it to stderr as well.
}

void InitCivetwebOnce() {
  static std::once_flag once;
  std::call_once(once, [] { mg_init_library(0); });
}

}  // namespace

absl::StatusOr<std::unique_ptr<CivetListener>> CivetListener::Start(
    const CivetListenerOptions& options, void* user_data) {
  const std::string& address = options.listen_address;
  const std::string& name = options.address_name;
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(
        name, " \"", address, "\": expected host:port, e.g. 127.0.0.1:8080"));
  }
  const std::string host = address.substr(0, colon);
  in_addr parsed;
  if (inet_pton(AF_INET, host.c_str(), &parsed) != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, " \"", address, "\": host \"", host,
                     "\" is not an IPv4 address (e.g. 127.0.0.1 or 0.0.0.0)"));
  }
  int port;
  if (!absl::SimpleAtoi(address.substr(colon + 1), &port) || port < 0 ||
      port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, " \"", address, "\": port \"",
                     address.substr(colon + 1), "\" is not in 0..65535"));
  }
  if (options.num_threads < 1 || options.num_threads > 64) {
    return absl::InvalidArgumentError(
        absl::StrCat(options.server_name, ": num_threads ", options.num_threads,
                     " is not in 1..64"));
  }

  InitCivetwebOnce();
  std::unique_ptr<CivetListener> listener(
      new CivetListener(host, options.server_name));
  const std::string ports = absl::StrCat(host, ":", port);
  const std::string threads = std::to_string(options.num_threads);
  const std::string timeout = std::to_string(options.request_timeout_ms);
  const char* civet_options[] = {
      "listening_ports",    ports.c_str(),       "num_threads",
      threads.c_str(),      "enable_keep_alive", "no",
      "request_timeout_ms", timeout.c_str(),     nullptr};
  mg_callbacks callbacks;
  std::memset(&callbacks, 0, sizeof(callbacks));
  callbacks.log_message = &LogMessage;

  std::string errors;
  start_errors = &errors;
  listener->context_ = mg_start(&callbacks, user_data, civet_options);
  start_errors = nullptr;
  if (listener->context_ == nullptr) {
    return absl::UnavailableError(
        absl::StrCat(options.server_name, ": cannot listen on ", ports, ": ",
                     errors.empty() ? "civetweb gave no reason" : errors));
  }
  return listener;
}

absl::Status CivetListener::LearnPort() {
  mg_server_port bound[4];
  const int n = mg_get_server_ports(context_, 4, bound);
  if (n < 1 || bound[0].port <= 0) {
    return absl::InternalError(
        absl::StrCat(server_name_, ": listening on ", host_,
                     " but civetweb did not report the bound port"));
  }
  port_ = bound[0].port;
  return absl::OkStatus();
}

CivetListener::~CivetListener() { Stop(); }

void CivetListener::Stop() {
  if (context_ == nullptr) return;
  // civetweb's listening thread notices the stop flag only when its poll()
  // returns, which without traffic takes up to its 2 s timeout. Connecting to
  // the port wakes it at once; keep poking until mg_stop() has returned.
  std::atomic<bool> stopped{false};
  std::thread waker([this, &stopped] {
    if (port_ <= 0) return;  // never learned: mg_stop waits for the poll
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

std::string CivetListener::address() const {
  return absl::StrCat(host_, ":", port_);
}

}  // namespace ftune::metrics
