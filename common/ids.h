// Resource ids: "<prefix>-<24 lowercase base32 chars>" (120 random bits from
// the OS), e.g. "job-3k7q...". Ids are opaque to clients; they never encode
// tenant, time or order.
//
// Thread-safe.
#ifndef FTUNE_COMMON_IDS_H_
#define FTUNE_COMMON_IDS_H_

#include <string>
#include "absl/strings/string_view.h"

namespace ftune {

// Well-known prefixes.
inline constexpr absl::string_view kJobIdPrefix = "job";
inline constexpr absl::string_view kFileIdPrefix = "file";
inline constexpr absl::string_view kTenantIdPrefix = "tenant";
inline constexpr absl::string_view kApiKeyIdPrefix = "key";
inline constexpr absl::string_view kWorkerIdPrefix = "worker";

// Returns a new random id with the given prefix.
std::string NewId(absl::string_view prefix);

// True if `id` is "<prefix>-" followed by 24 chars of the id alphabet.
bool IsValidId(absl::string_view id, absl::string_view prefix);

// Returns `n` cryptographically random bytes from the OS (getrandom(2)).
std::string RandomBytes(size_t n);

}  // namespace ftune

#endif  // FTUNE_COMMON_IDS_H_
