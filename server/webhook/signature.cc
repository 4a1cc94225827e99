#include "server/webhook/signature.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/ids.h"

namespace ftune::server::webhook {

std::string NewWebhookSecret() {
  return absl::StrCat(kSecretPrefix, absl::Base64Escape(RandomBytes(32)));
}

absl::StatusOr<std::string> SecretKey(absl::string_view secret) {
  std::string key;
  if (!absl::StartsWith(secret, kSecretPrefix) ||
      !absl::Base64Unescape(secret.substr(kSecretPrefix.size()), &key) ||
      key.empty()) {
    return absl::InvalidArgumentError(
        "secret: expected \"whsec_\" followed by base64");
  }
  return key;
}

absl::StatusOr<std::string> SignWebhook(absl::string_view secret,
                                        absl::string_view msg_id,
                                        int64_t timestamp,
                                        absl::string_view body) {
  absl::StatusOr<std::string> key = SecretKey(secret);
  if (!key.ok()) return key.status();
  const std::string content = absl::StrCat(msg_id, ".", timestamp, ".", body);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_len = 0;
  if (HMAC(EVP_sha256(), key->data(), static_cast<int>(key->size()),
           reinterpret_cast<const unsigned char*>(content.data()),
           content.size(), mac, &mac_len) == nullptr) {
    return absl::InternalError("HMAC-SHA256 failed");
  }
  return absl::StrCat("v1,", absl::Base64Escape(absl::string_view(
                                 reinterpret_cast<const char*>(mac), mac_len)));
}

}  // namespace ftune::server::webhook
