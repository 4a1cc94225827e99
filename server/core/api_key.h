// API keys: "ftk_" + 40 lowercase base32 chars (200 random bits). Only the
// sha256 of the whole key is stored; the key is shown once at creation.
//
// Thread-safe: pure functions (GenerateApiKey reads the OS random source).
#ifndef FTUNE_SERVER_CORE_API_KEY_H_
#define FTUNE_SERVER_CORE_API_KEY_H_

#include <string>

#include "absl/strings/string_view.h"

namespace ftune::core {

inline constexpr absl::string_view kApiKeyPrefix = "ftk_";
inline constexpr size_t kApiKeySecretChars = 40;
// How many leading chars of a key are kept in ApiKey::prefix for display.
inline constexpr size_t kApiKeyDisplayChars = 12;

struct GeneratedApiKey {
  std::string key;     // The secret; give it to the user once, never store.
  std::string prefix;  // key.substr(0, kApiKeyDisplayChars).
  std::string hash;    // HashApiKey(key).
};

GeneratedApiKey GenerateApiKey();

// Lowercase hex sha256 of `key`.
std::string HashApiKey(absl::string_view key);

// True if `key` has the ftk_ shape (cheap reject before any lookup).
bool LooksLikeApiKey(absl::string_view key);

// Compares two strings in time that depends only on their lengths.
bool ConstantTimeEquals(absl::string_view a, absl::string_view b);

// HashApiKey(key) == stored_hash, compared in constant time.
bool ApiKeyMatches(absl::string_view key, absl::string_view stored_hash);

}  // namespace ftune::core

#endif  // FTUNE_SERVER_CORE_API_KEY_H_
