// One HTTP POST of a webhook, behind an interface so the delivery loop's
// retry logic can be tested with injected faults. CurlSender is the real
// one (libcurl): no redirects followed, a request timeout, the connection
// pinned to the address the target check approved, and only a prefix of the
// response body kept.
//
// Thread-safety: Send() may be called from several threads at once.
#ifndef FTUNE_SERVER_WEBHOOK_SENDER_H_
#define FTUNE_SERVER_WEBHOOK_SENDER_H_

#include <atomic>
#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/time.h"

namespace ftune::server::webhook {

struct SendRequest {
  std::string url;
  std::string curl_resolve;  // "host:port:address"; empty = plain DNS.
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  absl::Duration timeout = absl::Seconds(10);
  size_t max_response_bytes = 1024;  // Kept of the response body.
  // When set and it turns true, the request is abandoned (within about a
  // second) and the result says `cancelled`.
  const std::atomic<bool>* cancel = nullptr;
};

struct SendResult {
  int status_code = 0;  // 0: no HTTP answer (see error).
  std::string error;    // Transport error, "" when an answer came.
  std::string response_prefix;
  bool cancelled = false;  // Abandoned through SendRequest.cancel.
};

class Sender {
 public:
  virtual ~Sender() = default;
  virtual SendResult Send(const SendRequest& request) = 0;
};

class CurlSender : public Sender {
 public:
  CurlSender();  // Initialises libcurl once per process.
  SendResult Send(const SendRequest& request) override;
};

}  // namespace ftune::server::webhook

#endif  // FTUNE_SERVER_WEBHOOK_SENDER_H_
