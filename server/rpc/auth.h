// StoreAuthenticator: resolves "authorization: Bearer <secret>" to a
// Principal. Three kinds of credential:
//  - tenant API keys ("ftk_..."), looked up in the Store by their sha256
//    (the secret is never stored); revoked keys are refused. A key found
//    valid is remembered for AuthOptions::key_cache_ttl, so a busy client
//    costs no database read per call; ApiKeyRevoked() forgets them all, so a
//    revocation through this scheduler takes effect at once;
//  - the operator's admin credential(s), given at start-up (flag file or
//    environment), never stored in the database;
//  - the cluster's worker credential(s), given the same way.
// Start-up credentials are compared by their sha256 in constant time.
//
// Thread-safe: the key cache is guarded by a mutex; the Store is thread-safe.
#ifndef FTUNE_SERVER_RPC_AUTH_H_
#define FTUNE_SERVER_RPC_AUTH_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "server/rpc/principal.h"

namespace ftune::server::engine {
class TenantLimits;
}  // namespace ftune::server::engine

namespace ftune::store {
class Store;
}  // namespace ftune::store

namespace ftune::server::rpc {

// Start-up credentials shorter than this are refused (they would be
// guessable).
inline constexpr size_t kMinStaticCredentialChars = 16;

struct AuthOptions {
  std::vector<std::string> admin_secrets;   // May be empty (no admin access).
  std::vector<std::string> worker_secrets;  // May be empty (no workers).
  // How long a tenant key found valid is trusted without a database read.
  // Revocations through this process (ApiKeyRevoked) take effect at once;
  // one made by another process on the same database (there should be
  // none) within this interval. Zero: every call reads the database.
  absl::Duration key_cache_ttl = absl::Seconds(2);
  Clock* clock = nullptr;  // For the cache's expiry; null = real clock.
  // Per-tenant request rate (engine/tenant_limits.h): every authenticated
  // tenant call takes a token; null = no limit. Not owned.
  engine::TenantLimits* limits = nullptr;
};

// INVALID_ARGUMENT if a configured secret is shorter than
// kMinStaticCredentialChars or appears both as admin and worker credential.
absl::Status ValidateAuthOptions(const AuthOptions& options);

// Reads a credential file: every non-empty line that does not start with
// '#' is one accepted credential (surrounding whitespace ignored), so a
// file may hold the old and the new secret while a rotation is under way.
// NOT_FOUND if it cannot be read; INVALID_ARGUMENT if it holds none.
absl::StatusOr<std::vector<std::string>> ReadCredentialFile(
    const std::string& path);

class StoreAuthenticator : public Authenticator {
 public:
  // `store` is not owned and must outlive this object.
  StoreAuthenticator(store::Store* store, const AuthOptions& options);

  absl::StatusOr<Principal> Authenticate(
      const grpc::ServerContextBase& ctx) override;

  // The same decision for a bare secret (for tests and non-gRPC callers).
  // A tenant over its request rate (AuthOptions::limits) is refused with
  // RESOURCE_EXHAUSTED (ErrorInfo quota "tenant_requests_per_second",
  // retry_delay).
  absl::StatusOr<Principal> AuthenticateSecret(const std::string& secret);

  void ApiKeyRevoked() override;

 private:
  // The principal of `secret` (cache, then store); no rate limit.
  absl::StatusOr<Principal> ResolveSecret(const std::string& secret);
  // Looks the key up in the store (no cache).
  absl::StatusOr<Principal> LookupKey(const std::string& secret,
                                      const std::string& hash);

  struct CachedKey {
    Principal principal;
    absl::Time expiry;
  };
  // Bounds the cache; when full it is emptied (keys are few in practice).
  static constexpr size_t kMaxCachedKeys = 10000;

  store::Store* store_;
  std::vector<std::string> admin_hashes_;
  std::vector<std::string> worker_hashes_;
  const absl::Duration key_cache_ttl_;
  Clock* const clock_;
  engine::TenantLimits* const limits_;  // May be null.
  absl::Mutex cache_mu_;
  // By key hash; only valid, unrevoked tenant/admin/worker API keys.
  absl::flat_hash_map<std::string, CachedKey> cache_ ABSL_GUARDED_BY(cache_mu_);
  // Bumped by ApiKeyRevoked: a lookup that began before a revocation must not
  // put what it read into the cache.
  uint64_t generation_ ABSL_GUARDED_BY(cache_mu_) = 0;
};

// Authorization helpers for the services: authenticate, then require a
// kind. PERMISSION_DENIED names the kind that was expected.
absl::StatusOr<Principal> RequireTenant(Authenticator& auth,
                                        const grpc::ServerContextBase& ctx);
absl::StatusOr<Principal> RequireAdmin(Authenticator& auth,
                                       const grpc::ServerContextBase& ctx);
// The cluster's worker credential (WorkerService).
absl::StatusOr<Principal> RequireWorker(Authenticator& auth,
                                        const grpc::ServerContextBase& ctx);
// Tenants or admins (ModelService).
absl::StatusOr<Principal> RequireTenantOrAdmin(
    Authenticator& auth, const grpc::ServerContextBase& ctx);

}  // namespace ftune::server::rpc

#endif  // FTUNE_SERVER_RPC_AUTH_H_
