// Standard Webhooks signing (https://www.standardwebhooks.com/, the scheme
// OpenAI's webhooks use): secrets "whsec_<base64 key>", and
// webhook-signature "v1,<base64 HMAC-SHA256(key, id.timestamp.body)>".
//
// Thread-safe (pure functions).
#ifndef FTUNE_SERVER_WEBHOOK_SIGNATURE_H_
#define FTUNE_SERVER_WEBHOOK_SIGNATURE_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace ftune::server::webhook {

inline constexpr absl::string_view kSecretPrefix = "whsec_";

// A new signing secret: "whsec_" + base64 of 32 random bytes from the OS.
std::string NewWebhookSecret();

// The key a secret stands for (the base64-decoded part after "whsec_").
// INVALID_ARGUMENT when the secret is not of that form.
absl::StatusOr<std::string> SecretKey(absl::string_view secret);

// "v1,<base64 signature>" of "<msg_id>.<timestamp>.<body>".
absl::StatusOr<std::string> SignWebhook(absl::string_view secret,
                                        absl::string_view msg_id,
                                        int64_t timestamp,
                                        absl::string_view body);

}  // namespace ftune::server::webhook

#endif  // FTUNE_SERVER_WEBHOOK_SIGNATURE_H_
