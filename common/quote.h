// Quoting values taken from a request (or from a less trusted process) in
// error messages. A status message travels in gRPC's trailing metadata,
// which a default client refuses above 8 KiB; a message that echoed a
// 70,000-character field whole would reach the client as a different
// error. Every error that echoes such a value quotes it with QuoteValue.
//
// Thread-safety: pure functions.
#ifndef FTUNE_COMMON_QUOTE_H_
#define FTUNE_COMMON_QUOTE_H_

#include <cstddef>
#include <string>

#include "absl/strings/string_view.h"

namespace ftune {

// Bytes of a value that QuoteValue shows before it cuts.
inline constexpr size_t kMaxQuotedBytes = 64;

// `value` in double quotes with C escapes (control, non-ASCII, quote and
// backslash bytes as \xNN, \", ...). A value longer than kMaxQuotedBytes
// bytes shows only its first kMaxQuotedBytes bytes followed by "..." and
// its length: "aaaa...aaaa..." (70000 bytes). At most about 300 bytes.
std::string QuoteValue(absl::string_view value);

// `text` itself when it is at most `max_bytes` long, else its first
// `max_bytes` bytes (not splitting a UTF-8 sequence) and
// "... (N more bytes)". For messages built from several parts.
std::string TruncateMessage(absl::string_view text, size_t max_bytes);

}  // namespace ftune

#endif  // FTUNE_COMMON_QUOTE_H_
