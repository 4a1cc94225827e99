#include "server/rpc/auth.h"

#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "server/core/api_key.h"
#include "server/engine/tenant_limits.h"
#include "server/store/store.h"

namespace ftune::server::rpc {
namespace {

// Same text for every refusal: the answer must not tell an attacker whether
// a key exists, was revoked, or was merely mistyped.
constexpr char kBadCredential[] =
    "missing, unknown or revoked credential (send one \"authorization: "
    "Bearer <api key>\" header)";

bool MatchesAny(const std::string& hash, const std::vector<std::string>& set) {
  bool found = false;
  // No early exit: the time taken does not depend on which entry matched.
  for (const std::string& h : set) {
    found |= core::ConstantTimeEquals(hash, h);
  }
  return found;
}

}  // namespace

absl::Status ValidateAuthOptions(const AuthOptions& options) {
  for (const auto* list : {&options.admin_secrets, &options.worker_secrets}) {
    for (const std::string& s : *list) {
      if (s.size() < kMinStaticCredentialChars) {
        return absl::InvalidArgumentError(absl::StrCat(
            list == &options.admin_secrets ? "admin" : "worker",
            " credential is too short (", s.size(), " characters; at least ",
            kMinStaticCredentialChars, " required)"));
      }
    }
  }
  for (const std::string& a : options.admin_secrets) {
    for (const std::string& w : options.worker_secrets) {
      if (a == w) {
        return absl::InvalidArgumentError(
            "the admin and worker credentials must differ");
      }
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> ReadCredentialFile(
    const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return absl::NotFoundError(
        absl::StrCat("cannot read credential file ", path));
  }
  std::stringstream ss;
  ss << in.rdbuf();
  std::vector<std::string> out;
  for (absl::string_view line : absl::StrSplit(ss.str(), '\n')) {
    absl::string_view t = absl::StripAsciiWhitespace(line);
    if (!t.empty() && t[0] != '#') out.emplace_back(t);
  }
  if (out.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("credential file ", path,
                     " holds no credential (only blank lines or # comments)"));
  }
  return out;
}

StoreAuthenticator::StoreAuthenticator(store::Store* store,
                                       const AuthOptions& options)
    : store_(store),
      key_cache_ttl_(options.key_cache_ttl),
      clock_(options.clock != nullptr ? options.clock : Clock::Real()),
      limits_(options.limits) {
  for (const std::string& s : options.admin_secrets) {
    admin_hashes_.push_back(core::HashApiKey(s));
  }
  for (const std::string& s : options.worker_secrets) {
    worker_hashes_.push_back(core::HashApiKey(s));
  }
}

absl::StatusOr<Principal> StoreAuthenticator::Authenticate(
    const grpc::ServerContextBase& ctx) {
  return AuthenticateSecret(BearerToken(ctx));
}

absl::StatusOr<Principal> StoreAuthenticator::AuthenticateSecret(
    const std::string& secret) {
  absl::StatusOr<Principal> p = ResolveSecret(secret);
  // Each authenticated tenant call takes a token of the tenant's bucket;
  // admins and workers are not rate limited.
  if (p.ok() && limits_ != nullptr && p->kind == Principal::Kind::kTenant) {
    if (absl::Status admitted = limits_->AdmitRequest(p->tenant_id);
        !admitted.ok()) {
      return admitted;
    }
  }
  return p;
}

absl::StatusOr<Principal> StoreAuthenticator::ResolveSecret(
    const std::string& secret) {
  if (secret.empty()) return absl::UnauthenticatedError(kBadCredential);
  const std::string hash = core::HashApiKey(secret);
  if (MatchesAny(hash, admin_hashes_)) {
    return Principal{Principal::Kind::kAdmin, "", ""};
  }
  if (MatchesAny(hash, worker_hashes_)) {
    return Principal{Principal::Kind::kWorker, "", ""};
  }
  if (!core::LooksLikeApiKey(secret)) {
    return absl::UnauthenticatedError(kBadCredential);
  }
  if (key_cache_ttl_ <= absl::ZeroDuration()) return LookupKey(secret, hash);
  uint64_t generation;
  {
    absl::MutexLock lock(&cache_mu_);
    auto it = cache_.find(hash);
    if (it != cache_.end()) {
      if (clock_->Now() < it->second.expiry) return it->second.principal;
      cache_.erase(it);
    }
    generation = generation_;
  }
  // Expiry counts from before the read: the entry is never older than the
  // TTL measured from the snapshot it came from.
  const absl::Time expiry = clock_->Now() + key_cache_ttl_;
  absl::StatusOr<Principal> p = LookupKey(secret, hash);
  if (p.ok()) {
    absl::MutexLock lock(&cache_mu_);
    if (generation == generation_) {
      if (cache_.size() >= kMaxCachedKeys) cache_.clear();
      cache_[hash] = CachedKey{*p, expiry};
    }
  }
  return p;
}

void StoreAuthenticator::ApiKeyRevoked() {
  absl::MutexLock lock(&cache_mu_);
  ++generation_;
  cache_.clear();
}

absl::StatusOr<Principal> StoreAuthenticator::LookupKey(
    const std::string& secret, const std::string& hash) {
  absl::StatusOr<core::ApiKey> key = store_->LookupApiKeyByHash(hash);
  if (absl::IsNotFound(key.status())) {
    return absl::UnauthenticatedError(kBadCredential);
  }
  if (!key.ok()) {
    // The database is busy or broken: not the caller's fault, retryable.
    return absl::UnavailableError(absl::StrCat(
        "cannot check the credential now: ", key.status().message()));
  }
  if (key->revoked || !core::ApiKeyMatches(secret, key->hash)) {
    return absl::UnauthenticatedError(kBadCredential);
  }
  Principal p;
  p.key_id = key->id;
  switch (key->role) {
    case core::ApiKeyRole::kTenant:
      p.kind = Principal::Kind::kTenant;
      p.tenant_id = key->tenant_id;
      break;
    case core::ApiKeyRole::kAdmin:
      p.kind = Principal::Kind::kAdmin;
      break;
    case core::ApiKeyRole::kWorker:
      p.kind = Principal::Kind::kWorker;
      break;
  }
  return p;
}

namespace {

const char* KindName(Principal::Kind kind) {
  switch (kind) {
    case Principal::Kind::kTenant:
      return "a tenant API key";
    case Principal::Kind::kAdmin:
      return "the admin credential";
    case Principal::Kind::kWorker:
      return "the worker credential";
  }
  return "?";
}

}  // namespace

absl::StatusOr<Principal> RequireTenant(Authenticator& auth,
                                        const grpc::ServerContextBase& ctx) {
  absl::StatusOr<Principal> p = auth.Authenticate(ctx);
  if (!p.ok()) return p;
  if (p->kind != Principal::Kind::kTenant || p->tenant_id.empty()) {
    return absl::PermissionDeniedError(absl::StrCat(
        "this service needs a tenant API key, not ", KindName(p->kind)));
  }
  return p;
}

absl::StatusOr<Principal> RequireAdmin(Authenticator& auth,
                                       const grpc::ServerContextBase& ctx) {
  absl::StatusOr<Principal> p = auth.Authenticate(ctx);
  if (!p.ok()) return p;
  if (p->kind != Principal::Kind::kAdmin) {
    return absl::PermissionDeniedError(absl::StrCat(
        "AdminService needs the admin credential, not ", KindName(p->kind)));
  }
  return p;
}

absl::StatusOr<Principal> RequireWorker(Authenticator& auth,
                                        const grpc::ServerContextBase& ctx) {
  absl::StatusOr<Principal> p = auth.Authenticate(ctx);
  if (!p.ok()) return p.status();
  if (p->kind != Principal::Kind::kWorker) {
    return absl::PermissionDeniedError(absl::StrCat(
        "WorkerService needs the worker credential, not ", KindName(p->kind)));
  }
  return p;
}

absl::StatusOr<Principal> RequireTenantOrAdmin(
    Authenticator& auth, const grpc::ServerContextBase& ctx) {
  absl::StatusOr<Principal> p = auth.Authenticate(ctx);
  if (!p.ok()) return p;
  if (p->kind == Principal::Kind::kWorker) {
    return absl::PermissionDeniedError(
        "this service needs a tenant API key or the admin credential, not "
        "the worker credential");
  }
  return p;
}

}  // namespace ftune::server::rpc
