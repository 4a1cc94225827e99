// Page sizes, page tokens and page walks of the List* rpcs (docs/api.md
// "Pagination"): every List* rpc resolves its page size and reads and makes
// its tokens here. A token wraps a cursor with a fingerprint of the
// request's filters, so a token reused with other filters is refused
// (INVALID_ARGUMENT page_token). Where the store pages (jobs, files, events,
// metrics) the cursor is the store's; where it returns a whole list the
// page is cut here: by key (KeysetPage) or by position (OffsetPage).
//
// Thread-safe: pure functions.
#ifndef FTUNE_SERVER_RPC_PAGINATION_H_
#define FTUNE_SERVER_RPC_PAGINATION_H_

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/status.h"
#include "google/protobuf/repeated_ptr_field.h"
#include "server/rpc/status_util.h"

namespace ftune::server::rpc {

// 0 -> `default_size`; (0, max] as is; negative or > max: INVALID_ARGUMENT
// naming `field`.
absl::StatusOr<int> ResolvePageSize(int requested, int default_size,
                                    int max_size,
                                    const std::string& field = "page_size");

// Opaque token for `cursor`, bound to `binding` (a canonical text of the
// request's filters).
std::string EncodePageToken(absl::string_view binding,
                            absl::string_view cursor);

// The cursor of `token` ("" for an empty token). INVALID_ARGUMENT (field
// page_token) for a malformed token or one made for another binding.
absl::StatusOr<std::string> DecodePageToken(absl::string_view token,
                                            absl::string_view binding);

// Records the store keeps in increasing `sequence` (events, metric points),
// paged by the last sequence read: reads them after `after` in batches of
// at most `max_batch` (`read(after, limit)` returns up to `limit`),
// converts each with `convert` (nullopt leaves one out: a filter) and
// appends them to `out` until it holds `page_size`. Returns the next page's
// token, bound to `binding`, when the store may hold more; else "".
template <typename Out, typename Read, typename Convert>
absl::StatusOr<std::string> SequencePage(
    int64_t after, int page_size, int max_batch, const std::string& binding,
    Read read, Convert convert, google::protobuf::RepeatedPtrField<Out>* out) {
  bool more = true;
  while (out->size() < page_size && more) {
    const int want = std::min(page_size - out->size(), max_batch);
    FTUNE_ASSIGN_OR_RETURN(auto batch, read(after, want));
    more = static_cast<int>(batch.size()) == want;
    for (const auto& record : batch) {
      after = record.sequence;
      std::optional<Out> converted = convert(record);
      if (converted.has_value()) *out->Add() = *std::move(converted);
    }
  }
  if (!more) return std::string();
  return EncodePageToken(binding, absl::StrCat(after));
}

// The sequence a SequencePage token carries, or `after_sequence` (the
// request's own start) for the first page.
absl::StatusOr<int64_t> SequenceCursor(absl::string_view cursor,
                                       int64_t after_sequence);

// One page of `items`, sorted by increasing key_of(item): the items with a
// key greater than `after` (all when nullopt), converted by `convert` and
// appended to `out`, at most `page_size` of them. `convert` returns nullopt
// to leave an item out (a filter on the converted item); an error ends the
// walk. Returns the key of the last item appended when another item would
// follow it (the next page's cursor), else nullopt.
template <typename T, typename Key, typename Out, typename KeyOf,
          typename Convert>
absl::StatusOr<std::optional<Key>> KeysetPage(
    const std::vector<T>& items, const std::optional<Key>& after, int page_size,
    KeyOf key_of, Convert convert,
    google::protobuf::RepeatedPtrField<Out>* out) {
  std::optional<Key> last;
  for (const T& item : items) {
    Key key = key_of(item);
    if (after.has_value() && !(*after < key)) continue;
    FTUNE_ASSIGN_OR_RETURN(std::optional<Out> converted, convert(item));
    if (!converted.has_value()) continue;
    if (out->size() == page_size) return last;
    *out->Add() = *std::move(converted);
    last = std::move(key);
  }
  return std::optional<Key>();
}

// Offset pages over a list the store returns whole, in a stable order
// (oldest first; new items only ever append): the cursor is the position.
// Adds this page's items with `add`; sets *next_token when more follow.
template <typename T, typename Fn>
absl::Status OffsetPage(const std::vector<T>& all, int page_size,
                        const std::string& token, const std::string& binding,
                        std::string* next_token, Fn add) {
  FTUNE_ASSIGN_OR_RETURN(std::string cursor, DecodePageToken(token, binding));
  size_t offset = 0;
  if (!cursor.empty() && !absl::SimpleAtoi(cursor, &offset)) {
    return InvalidField("page_token", "page_token: malformed page token");
  }
  size_t end = std::min(all.size(), offset + static_cast<size_t>(page_size));
  for (size_t i = offset; i < end; ++i) add(all[i]);
  if (end < all.size()) {
    *next_token = EncodePageToken(binding, absl::StrCat(end));
  }
  return absl::OkStatus();
}

}  // namespace ftune::server::rpc

#endif  // FTUNE_SERVER_RPC_PAGINATION_H_
