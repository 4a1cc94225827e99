// Which URLs a webhook may target (docs/webhooks.md): https only, at most
// kMaxUrlLength characters, no credentials, a host that resolves, and no
// address on loopback, link-local, private, shared, multicast or reserved
// ranges, unless the operator allows them (--webhook_allow_http,
// --webhook_allow_private_targets; the tests on loopback use both).
// Checked when an endpoint is registered and again before every delivery
// (DNS can change); the delivery then connects to the address that was
// checked, so a second lookup cannot swap it.
//
// Thread-safe (pure functions over getaddrinfo).
#ifndef FTUNE_SERVER_WEBHOOK_TARGET_H_
#define FTUNE_SERVER_WEBHOOK_TARGET_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace ftune::server::webhook {

inline constexpr size_t kMaxUrlLength = 2048;

struct TargetPolicy {
  bool allow_http = false;
  bool allow_private = false;
};

struct CheckedTarget {
  std::string scheme;  // "https" or "http".
  std::string host;    // As written in the URL (brackets stripped).
  int port = 0;
  std::string address;  // The checked IP address, numeric.
  // "host:port:address" for CURLOPT_RESOLVE (pins the connection); empty
  // when the host is a literal address.
  std::string curl_resolve;
};

// INVALID_ARGUMENT naming the field ("url: ...") when the URL breaks the
// policy or its host does not resolve.
absl::StatusOr<CheckedTarget> CheckWebhookTarget(absl::string_view url,
                                                 const TargetPolicy& policy);

// True for an address a webhook must not reach without allow_private
// (numeric IPv4 or IPv6 text; unparsable text counts as private).
bool IsPrivateAddress(absl::string_view address);

}  // namespace ftune::server::webhook

#endif  // FTUNE_SERVER_WEBHOOK_TARGET_H_
