#include "server/rpc/principal.h"

#include <grpcpp/grpcpp.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/string_view.h"

namespace ftune::server::rpc {

std::string BearerToken(const grpc::ServerContextBase& ctx) {
  const auto& md = ctx.client_metadata();
  // Two credentials are refused rather than resolved by picking one: which
  // one a proxy or client library puts first is not something to rely on.
  if (md.count("authorization") != 1) return "";
  auto it = md.find("authorization");
  absl::string_view value(it->second.data(), it->second.size());
  constexpr absl::string_view kPrefix = "bearer ";
  if (value.size() <= kPrefix.size() ||
      !absl::StartsWithIgnoreCase(value, kPrefix)) {
    return "";
  }
  return std::string(absl::StripAsciiWhitespace(value.substr(kPrefix.size())));
}

}  // namespace ftune::server::rpc
