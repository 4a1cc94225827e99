// Who is calling: the identity every service method acts for, resolved from
// the call's "authorization: Bearer <secret>" metadata by an Authenticator.
//
// Thread-safety: Authenticator implementations are called concurrently from
// gRPC's threads and must be thread-safe.
#ifndef FTUNE_SERVER_RPC_PRINCIPAL_H_
#define FTUNE_SERVER_RPC_PRINCIPAL_H_

#include <string>

#include "absl/status/statusor.h"

namespace grpc {
class ServerContextBase;
}  // namespace grpc

namespace ftune::server::rpc {

struct Principal {
  enum class Kind { kTenant, kAdmin, kWorker };
  Kind kind = Kind::kTenant;
  // The tenant a tenant key belongs to; empty for admin and worker callers.
  std::string tenant_id;
  // The id of the API key used (never the secret); empty for the start-up
  // admin credential and for workers.
  std::string key_id;

  bool is_admin() const { return kind == Kind::kAdmin; }
  bool is_worker() const { return kind == Kind::kWorker; }
};

class Authenticator {
 public:
  virtual ~Authenticator() = default;
  // UNAUTHENTICATED when the metadata has no bearer credential or an unknown
  // or revoked one. Never reveals whether a key id exists.
  virtual absl::StatusOr<Principal> Authenticate(
      const grpc::ServerContextBase& ctx) = 0;
  // Called after an API key was revoked (committed) through this process:
  // from then on Authenticate must refuse it, even if it caches keys.
  virtual void ApiKeyRevoked() {}
};

// The secret from "authorization: Bearer <secret>", or "" when absent,
// malformed or given more than once (the call is then UNAUTHENTICATED).
std::string BearerToken(const grpc::ServerContextBase& ctx);

}  // namespace ftune::server::rpc

#endif  // FTUNE_SERVER_RPC_PRINCIPAL_H_
