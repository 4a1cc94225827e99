// StoreAuthenticator's key cache: a key found valid is trusted for
// key_cache_ttl without a database read; ApiKeyRevoked() (what AdminService
// calls after a revocation) ends that at once. Real SQLite store, fake clock.
#include "server/rpc/auth.h"

#include <memory>

#include "common/clock.h"
#include "gtest/gtest.h"
#include "server/core/api_key.h"
#include "server/store/sqlite_store.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace ftune::server::rpc {
namespace {

class AuthCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store::SqliteStoreOptions so;
    so.path = dir_.Sub("auth.db");
    so.synchronous_full = false;
    auto opened = store::SqliteStore::Open(so);
    ASSERT_OK(opened.status());
    store_ = std::move(opened).value();
    core::Tenant t;
    t.name = "t";
    auto tenant = store_->CreateTenant(t);
    ASSERT_OK(tenant.status());
    tenant_id_ = tenant->id;
    core::GeneratedApiKey g = core::GenerateApiKey();
    secret_ = g.key;
    core::ApiKey k;
    k.role = core::ApiKeyRole::kTenant;
    k.tenant_id = tenant_id_;
    k.prefix = g.prefix;
    k.hash = g.hash;
    auto key = store_->CreateApiKey(k);
    ASSERT_OK(key.status());
    key_id_ = key->id;
  }

  std::unique_ptr<StoreAuthenticator> MakeAuth(absl::Duration ttl) {
    AuthOptions o;
    o.key_cache_ttl = ttl;
    o.clock = &clock_;
    return std::make_unique<StoreAuthenticator>(store_.get(), o);
  }

  ::ftune::testing::TempDir dir_;
  FakeClock clock_;
  std::unique_ptr<store::SqliteStore> store_;
  std::string tenant_id_;
  std::string secret_;
  std::string key_id_;
};

TEST_F(AuthCacheTest, RevocationThroughThisProcessIsImmediate) {
  auto auth = MakeAuth(absl::Seconds(60));
  ASSERT_OK_AND_ASSIGN(Principal p, auth->AuthenticateSecret(secret_));
  EXPECT_EQ(p.tenant_id, tenant_id_);
  EXPECT_EQ(p.key_id, key_id_);
  ASSERT_OK(store_->RevokeApiKey(key_id_).status());
  auth->ApiKeyRevoked();
  EXPECT_EQ(auth->AuthenticateSecret(secret_).status().code(),
            absl::StatusCode::kUnauthenticated);
}

TEST_F(AuthCacheTest, CachedKeyExpiresAfterTheTtl) {
  auto auth = MakeAuth(absl::Seconds(2));
  ASSERT_OK(auth->AuthenticateSecret(secret_).status());
  // Revoked behind the authenticator's back (as another process would).
  ASSERT_OK(store_->RevokeApiKey(key_id_).status());
  EXPECT_OK(auth->AuthenticateSecret(secret_).status());  // Still cached.
  clock_.Advance(absl::Seconds(2));
  EXPECT_EQ(auth->AuthenticateSecret(secret_).status().code(),
            absl::StatusCode::kUnauthenticated);
}

TEST_F(AuthCacheTest, ZeroTtlReadsTheStoreEveryTime) {
  auto auth = MakeAuth(absl::ZeroDuration());
  ASSERT_OK(auth->AuthenticateSecret(secret_).status());
  ASSERT_OK(store_->RevokeApiKey(key_id_).status());
  EXPECT_EQ(auth->AuthenticateSecret(secret_).status().code(),
            absl::StatusCode::kUnauthenticated);
}

TEST_F(AuthCacheTest, UnknownAndMalformedKeysAreNeverCached) {
  auto auth = MakeAuth(absl::Seconds(60));
  const std::string unknown = "ftk_" + std::string(40, 'a');
  EXPECT_EQ(auth->AuthenticateSecret(unknown).status().code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(auth->AuthenticateSecret("").status().code(),
            absl::StatusCode::kUnauthenticated);
  // A wrong secret sharing a cached key's prefix is still refused.
  ASSERT_OK(auth->AuthenticateSecret(secret_).status());
  std::string other = secret_;
  other.back() = other.back() == 'a' ? 'b' : 'a';
  EXPECT_EQ(auth->AuthenticateSecret(other).status().code(),
            absl::StatusCode::kUnauthenticated);
}

}  // namespace
}  // namespace ftune::server::rpc
