// Page sizes and page tokens of the List* rpcs (docs/api.md "Pagination").
// A token wraps a cursor with a fingerprint of the request's filters, so a
// token reused with other filters is refused (INVALID_ARGUMENT page_token).
//
// Thread-safe: pure functions.
#ifndef FTUNE_SERVER_RPC_PAGINATION_H_
#define FTUNE_SERVER_RPC_PAGINATION_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

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

}  // namespace ftune::server::rpc

#endif  // FTUNE_SERVER_RPC_PAGINATION_H_
