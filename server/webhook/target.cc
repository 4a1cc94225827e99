#include "server/webhook/target.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netdb.h>
#include <sys/socket.h>

#include <cstring>
#include <memory>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace ftune::server::webhook {
namespace {

absl::Status UrlError(absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("url: ", why));
}

// One part of a parsed URL ("" when absent).
std::string Part(CURLU* u, CURLUPart part) {
  char* value = nullptr;
  if (curl_url_get(u, part, &value, 0) != CURLUE_OK || value == nullptr) {
    return "";
  }
  std::string out(value);
  curl_free(value);
  return out;
}

bool InV4(uint32_t a, uint32_t net, int bits) {
  const uint32_t mask = bits == 0 ? 0 : ~uint32_t{0} << (32 - bits);
  return (a & mask) == (net & mask);
}

bool PrivateV4(uint32_t a) {
  static constexpr struct {
    uint32_t net;
    int bits;
  } kRanges[] = {
      {0x00000000, 8},   // "this network"
      {0x0A000000, 8},   // 10/8
      {0x64400000, 10},  // 100.64/10 carrier-grade NAT
      {0x7F000000, 8},   // loopback
      {0xA9FE0000, 16},  // 169.254/16 link-local (cloud metadata)
      {0xAC100000, 12},  // 172.16/12
      {0xC0000000, 24},  // 192.0.0/24 protocol assignments
      {0xC0A80000, 16},  // 192.168/16
      {0xC6120000, 15},  // 198.18/15 benchmarking
      {0xE0000000, 4},   // multicast
      {0xF0000000, 4},   // reserved, broadcast
  };
  for (const auto& r : kRanges) {
    if (InV4(a, r.net, r.bits)) return true;
  }
  return false;
}

}  // namespace

bool IsPrivateAddress(absl::string_view address) {
  const std::string text(address);
  in_addr v4{};
  if (inet_pton(AF_INET, text.c_str(), &v4) == 1) {
    return PrivateV4(ntohl(v4.s_addr));
  }
  in6_addr v6{};
  if (inet_pton(AF_INET6, text.c_str(), &v6) != 1) return true;
  const uint8_t* b = v6.s6_addr;
  static constexpr uint8_t kZero[16] = {};
  // ::ffff:a.b.c.d (mapped) and ::a.b.c.d (compatible): judge the IPv4.
  const bool mapped =
      std::memcmp(b, kZero, 10) == 0 && b[10] == 0xff && b[11] == 0xff;
  const bool compat = std::memcmp(b, kZero, 12) == 0;
  if (mapped || (compat && (b[12] | b[13] | b[14] | b[15]) != 0 &&
                 !(b[12] == 0 && b[13] == 0 && b[14] == 0 && b[15] == 1))) {
    const uint32_t a = (uint32_t{b[12]} << 24) | (uint32_t{b[13]} << 16) |
                       (uint32_t{b[14]} << 8) | b[15];
    return PrivateV4(a);
  }
  if (compat) return true;                                 // :: and ::1
  if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80) return true;  // fe80::/10
  if ((b[0] & 0xfe) == 0xfc) return true;                  // fc00::/7
  if (b[0] == 0xff) return true;                           // multicast
  if (b[0] == 0x00 && b[1] == 0x64 && b[2] == 0xff && b[3] == 0x9b) {
    return true;  // 64:ff9b::/96 NAT64 can reach private IPv4.
  }
  if (b[0] == 0x20 && b[1] == 0x01 && b[2] == 0x0d && b[3] == 0xb8) {
    return true;  // 2001:db8::/32 documentation.
  }
  return false;
}

absl::StatusOr<CheckedTarget> CheckWebhookTarget(absl::string_view url,
                                                 const TargetPolicy& policy) {
  if (url.empty()) return UrlError("is required");
  if (url.size() > kMaxUrlLength) {
    return UrlError(absl::StrCat("is ", url.size(), " characters; at most ",
                                 kMaxUrlLength, " are allowed"));
  }
  std::unique_ptr<CURLU, decltype(&curl_url_cleanup)> u(curl_url(),
                                                        &curl_url_cleanup);
  const std::string text(url);
  if (u == nullptr ||
      curl_url_set(u.get(), CURLUPART_URL, text.c_str(), 0) != CURLUE_OK) {
    return UrlError("is not a valid absolute URL");
  }
  CheckedTarget out;
  out.scheme = absl::AsciiStrToLower(Part(u.get(), CURLUPART_SCHEME));
  if (out.scheme != "https" && !(out.scheme == "http" && policy.allow_http)) {
    return UrlError(absl::StrCat(
        "must use https (got \"", out.scheme, "\"",
        out.scheme == "http" ? "; the operator has not allowed http" : "",
        ")"));
  }
  if (!Part(u.get(), CURLUPART_USER).empty() ||
      !Part(u.get(), CURLUPART_PASSWORD).empty()) {
    return UrlError("must not contain credentials");
  }
  if (!Part(u.get(), CURLUPART_FRAGMENT).empty()) {
    return UrlError("must not contain a fragment");
  }
  out.host = Part(u.get(), CURLUPART_HOST);
  if (out.host.size() >= 2 && out.host.front() == '[') {
    out.host = out.host.substr(1, out.host.size() - 2);
  }
  if (out.host.empty()) return UrlError("has no host");
  char* port_text = nullptr;
  if (curl_url_get(u.get(), CURLUPART_PORT, &port_text, CURLU_DEFAULT_PORT) !=
          CURLUE_OK ||
      port_text == nullptr) {
    return UrlError("has no port");
  }
  const bool port_ok = absl::SimpleAtoi(port_text, &out.port);
  curl_free(port_text);
  if (!port_ok || out.port <= 0 || out.port > 65535) {
    return UrlError("has an invalid port");
  }

  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  const int rc = getaddrinfo(out.host.c_str(), nullptr, &hints, &res);
  if (rc != 0 || res == nullptr) {
    return UrlError(absl::StrCat("host \"", out.host, "\" does not resolve (",
                                 gai_strerror(rc), ")"));
  }
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> owned(res, &freeaddrinfo);
  // Every address must be allowed: a name that also resolves to a private
  // address could be made to reach it.
  std::vector<std::string> addresses;
  for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    char buf[INET6_ADDRSTRLEN] = {};
    const void* src =
        ai->ai_family == AF_INET
            ? static_cast<const void*>(
                  &reinterpret_cast<sockaddr_in*>(ai->ai_addr)->sin_addr)
            : static_cast<const void*>(
                  &reinterpret_cast<sockaddr_in6*>(ai->ai_addr)->sin6_addr);
    if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6) continue;
    if (inet_ntop(ai->ai_family, src, buf, sizeof(buf)) == nullptr) continue;
    const std::string address(buf);
    if (!policy.allow_private && IsPrivateAddress(address)) {
      return UrlError(absl::StrCat(
          "host \"", out.host, "\" resolves to ", address,
          ", a loopback, link-local, private or reserved address (the "
          "operator has not allowed private targets)"));
    }
    addresses.push_back(address);
  }
  if (addresses.empty()) {
    return UrlError(
        absl::StrCat("host \"", out.host, "\" has no IPv4/IPv6 address"));
  }
  out.address = addresses.front();
  in6_addr ignored{};
  if (inet_pton(AF_INET, out.host.c_str(), &ignored) == 1 ||
      inet_pton(AF_INET6, out.host.c_str(), &ignored) == 1) {
    return out;  // A literal address: nothing to pin.
  }
  const bool v6 = out.address.find(':') != std::string::npos;
  out.curl_resolve = absl::StrCat(out.host, ":", out.port, ":", v6 ? "[" : "",
                                  out.address, v6 ? "]" : "");
  return out;
}

}  // namespace ftune::server::webhook
