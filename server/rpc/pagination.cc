#include "server/rpc/pagination.h"

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/sha256.h"
#include "server/rpc/status_util.h"

namespace ftune::server::rpc {
namespace {

// 16 hex chars of sha256: enough to tell filters apart, not a secret.
std::string Fingerprint(absl::string_view binding) {
  return Sha256Hex(binding).substr(0, 16);
}

}  // namespace

absl::StatusOr<int> ResolvePageSize(int requested, int default_size,
                                    int max_size, const std::string& field) {
  if (requested == 0) return default_size;
  if (requested < 0 || requested > max_size) {
    return InvalidField(field, absl::StrCat(field, ": must be in [0, ",
                                            max_size, "], got ", requested));
  }
  return requested;
}

std::string EncodePageToken(absl::string_view binding,
                            absl::string_view cursor) {
  return absl::WebSafeBase64Escape(
      absl::StrCat("v1:", Fingerprint(binding), ":", cursor));
}

absl::StatusOr<std::string> DecodePageToken(absl::string_view token,
                                            absl::string_view binding) {
  if (token.empty()) return std::string();
  std::string raw;
  const std::string prefix = absl::StrCat("v1:", Fingerprint(binding), ":");
  if (!absl::WebSafeBase64Unescape(token, &raw) ||
      raw.compare(0, 3, "v1:") != 0) {
    return InvalidField("page_token", "page_token: malformed page token");
  }
  if (raw.compare(0, prefix.size(), prefix) != 0) {
    return InvalidField(
        "page_token",
        "page_token: made for a request with different filters; start again "
        "without a page_token");
  }
  return raw.substr(prefix.size());
}

absl::StatusOr<int64_t> SequenceCursor(absl::string_view cursor,
                                       int64_t after_sequence) {
  int64_t after = after_sequence;
  if (!cursor.empty() && !absl::SimpleAtoi(cursor, &after)) {
    return InvalidField("page_token", "page_token: malformed page token");
  }
  return after;
}

}  // namespace ftune::server::rpc
