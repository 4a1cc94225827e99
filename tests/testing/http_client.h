// A minimal blocking HTTP/1.0 client for tests: one request per connection
// over a real TCP socket to a numeric IPv4 host. Enough to scrape /metrics.
//
// Thread-safety: the function is thread-safe.
#ifndef FTUNE_TESTS_TESTING_HTTP_CLIENT_H_
#define FTUNE_TESTS_TESTING_HTTP_CLIENT_H_

#include <map>
#include <string>

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

inline absl::StatusOr<HttpResponse> HttpGet(const std::string& host, int port,
                                            const std::string& path) {
  return HttpRequest(host, port, "GET", path);
}

}  // namespace ftune::testing

#endif  // FTUNE_TESTS_TESTING_HTTP_CLIENT_H_
