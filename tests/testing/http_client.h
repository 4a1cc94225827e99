// A minimal blocking HTTP/1.0 client for tests: one request per connection
// over a real TCP socket to a numeric IPv4 host: scrapes /metrics, drives
// the OpenAI-compatible HTTP API.
//
// Thread-safety: the function is thread-safe.
#ifndef FTUNE_TESTS_TESTING_HTTP_CLIENT_H_
#define FTUNE_TESTS_TESTING_HTTP_CLIENT_H_

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace ftune::testing {

struct HttpResponse {
  int status = 0;
  // Header names lower-cased.
  std::map<std::string, std::string> headers;
  std::string body;
};

// Sends `method path` to host:port, reads the response until the server
// closes the connection. Errors: Unavailable when the connection fails,
// DataLoss for a malformed response.
absl::StatusOr<HttpResponse> HttpRequest(const std::string& host, int port,
                                         const std::string& method,
                                         const std::string& path);

// The same with extra request headers and a body (Content-Length is added
// for a body and for every POST).
absl::StatusOr<HttpResponse> HttpRequest(
    const std::string& host, int port, const std::string& method,
    const std::string& path,
    const std::vector<std::pair<std::string, std::string>>& headers,
    const std::string& body);

inline absl::StatusOr<HttpResponse> HttpGet(const std::string& host, int port,
                                            const std::string& path) {
  return HttpRequest(host, port, "GET", path);
}

}  // namespace ftune::testing

#endif  // FTUNE_TESTS_TESTING_HTTP_CLIENT_H_
