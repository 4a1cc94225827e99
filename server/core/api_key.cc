#include "server/core/api_key.h"

#include "absl/strings/str_cat.h"
#include "common/ids.h"
#include "common/sha256.h"

namespace ftune::core {
namespace {
constexpr absl::string_view kAlphabet = "abcdefghijklmnopqrstuvwxyz234567";
}  // namespace

GeneratedApiKey GenerateApiKey() {
  // 256 % 32 == 0, so taking each byte modulo 32 is unbiased.
  const std::string raw = RandomBytes(kApiKeySecretChars);
  std::string key(kApiKeyPrefix);
  for (unsigned char c : raw) key.push_back(kAlphabet[c % kAlphabet.size()]);
  GeneratedApiKey out;
  out.prefix = key.substr(0, kApiKeyDisplayChars);
  out.hash = HashApiKey(key);
  out.key = std::move(key);
  return out;
}

std::string HashApiKey(absl::string_view key) { return Sha256Hex(key); }

bool LooksLikeApiKey(absl::string_view key) {
  if (key.size() != kApiKeyPrefix.size() + kApiKeySecretChars) return false;
  if (key.substr(0, kApiKeyPrefix.size()) != kApiKeyPrefix) return false;
  for (char c : key.substr(kApiKeyPrefix.size())) {
    if (kAlphabet.find(c) == absl::string_view::npos) return false;
  }
  return true;
}

bool ConstantTimeEquals(absl::string_view a, absl::string_view b) {
  if (a.size() != b.size()) return false;
  volatile unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    diff = diff | (static_cast<unsigned char>(a[i]) ^
                   static_cast<unsigned char>(b[i]));
  }
  return diff == 0;
}

bool ApiKeyMatches(absl::string_view key, absl::string_view stored_hash) {
  return ConstantTimeEquals(HashApiKey(key), stored_hash);
}

}  // namespace ftune::core
