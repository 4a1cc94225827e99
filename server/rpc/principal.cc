#include "server/rpc/principal.h"

#include <grpcpp/grpcpp.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/string_view.h"

namespace ftune::server::rpc {

std::string BearerToken(const grpc::ServerContextBase& ctx) {
  const auto& md = ctx.client_metadata();
  auto it = md.find("authorization");
  if (it == md.end()) return "";
  absl::string_view value(it->second.data(), it->second.size());
  constexpr absl::string_view kPrefix = "bearer ";
  if (value.size() <= kPrefix.size() ||
      !absl::StartsWithIgnoreCase(value, kPrefix)) {
    return "";
  }
  return std::string(absl::StripAsciiWhitespace(value.substr(kPrefix.size())));
}

}  // namespace ftune::server::rpc
