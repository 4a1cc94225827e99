#include "tests/testing/http_client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace ftune::testing {

absl::StatusOr<HttpResponse> HttpRequest(const std::string& host, int port,
                                         const std::string& method,
                                         const std::string& path) {
  return HttpRequest(host, port, method, path, {}, "");
}

absl::StatusOr<HttpResponse> HttpRequest(
    const std::string& host, int port, const std::string& method,
    const std::string& path,
    const std::vector<std::pair<std::string, std::string>>& headers,
    const std::string& body) {
  sockaddr_in addr;
  std::memset(&addr, 0, sizeof(addr));
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("host \"", host, "\" is not an IPv4 address"));
  }
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return absl::UnavailableError(std::strerror(errno));
  struct Closer {
    int fd;
    ~Closer() { close(fd); }
  } closer{fd};
  timeval timeout{10, 0};  // A hung server fails the test, not the CI job.
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    return absl::UnavailableError(absl::StrCat("connect to ", host, ":", port,
                                               ": ", std::strerror(errno)));
  }
  std::string request = absl::StrCat(
      method, " ", path, " HTTP/1.0\r\nHost: ", host, ":", port, "\r\n");
  for (const auto& [name, value] : headers) {
    absl::StrAppend(&request, name, ": ", value, "\r\n");
  }
  if (!body.empty() || method == "POST") {
    absl::StrAppend(&request, "Content-Length: ", body.size(), "\r\n");
  }
  absl::StrAppend(&request, "\r\n", body);
  size_t sent = 0;
  while (sent < request.size()) {
    const ssize_t n =
        send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) {
      return absl::UnavailableError(
          absl::StrCat("send: ", std::strerror(errno)));
    }
    sent += static_cast<size_t>(n);
  }
  std::string raw;
  char buf[4096];
  while (true) {
    const ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n == 0) break;
    if (n < 0) {
      return absl::UnavailableError(
          absl::StrCat("recv: ", std::strerror(errno)));
    }
    raw.append(buf, static_cast<size_t>(n));
  }

  const size_t end = raw.find("\r\n\r\n");
  if (end == std::string::npos) {
    return absl::DataLossError(
        absl::StrCat("response has no end of headers: \"", raw, "\""));
  }
  HttpResponse response;
  response.body = raw.substr(end + 4);
  std::vector<std::string> lines = absl::StrSplit(raw.substr(0, end), "\r\n");
  // Status line: "HTTP/1.1 200 OK".
  std::vector<std::string> status_words =
      absl::StrSplit(lines[0], absl::MaxSplits(' ', 2));
  if (status_words.size() < 2 || !absl::StartsWith(status_words[0], "HTTP/") ||
      !absl::SimpleAtoi(status_words[1], &response.status)) {
    return absl::DataLossError(
        absl::StrCat("bad status line \"", lines[0], "\""));
  }
  for (size_t i = 1; i < lines.size(); ++i) {
    const size_t colon = lines[i].find(':');
    if (colon == std::string::npos) {
      return absl::DataLossError(
          absl::StrCat("bad header line \"", lines[i], "\""));
    }
    response.headers[absl::AsciiStrToLower(lines[i].substr(0, colon))] =
        std::string(absl::StripAsciiWhitespace(
            absl::string_view(lines[i]).substr(colon + 1)));
  }
  return response;
}

}  // namespace ftune::testing
