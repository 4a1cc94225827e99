// Shared set-up for the store tests: a real SQLite file in a temp dir, a fake
// clock, and helpers that create a tenant, a model and a READY file.
#ifndef FTUNE_TESTS_SERVER_STORE_STORE_FIXTURE_H_
#define FTUNE_TESTS_SERVER_STORE_STORE_FIXTURE_H_

#include <memory>
#include <string>

#include "common/clock.h"
#include "gtest/gtest.h"
#include "server/store/sqlite_store.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace ftune::store::testing {

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_OK(OpenStore()); }

  // synchronous=NORMAL keeps the logic tests fast; durability tests use FULL.
  absl::Status OpenStore(bool synchronous_full = false) {
    store_.reset();
    SqliteStoreOptions options;
    options.path = db_path();
    options.synchronous_full = synchronous_full;
    options.clock = &clock_;
    options.on_commit = on_commit_;
    options.on_commit_timing = on_commit_timing_;
    auto store = SqliteStore::Open(options);
    if (!store.ok()) return store.status();
    store_ = std::move(store).value();
    return absl::OkStatus();
  }
  std::string db_path() const { return dir_.Sub("sched.db"); }

  // A tenant with a model "tiny" and a READY training file.
  struct TenantSetup {
    core::Tenant tenant;
    core::FileRecord file;
  };
  TenantSetup MakeTenant(const std::string& name, core::Quota quota = {}) {
    TenantSetup out;
    core::Tenant t;
    t.name = name;
    t.quota = quota;
    auto tenant = store_->CreateTenant(t);
    EXPECT_TRUE(tenant.ok()) << tenant.status();
    out.tenant = *tenant;
    core::Model m;
    m.name = "tiny";
    m.directory = "models/tiny";
    EXPECT_OK(store_->UpsertModel(m));
    core::FileRecord f;
    f.tenant_id = out.tenant.id;
    f.filename = "train.jsonl";
    f.purpose = "fine-tune";
    f.status = core::FileStatus::kReady;
    f.storage_path = "files/" + out.tenant.id + "/x";
    auto file = store_->CreateFile(f);
    EXPECT_TRUE(file.ok()) << file.status();
    out.file = *file;
    return out;
  }

  static core::Job NewJob(const TenantSetup& t,
                          const std::string& request_id = "") {
    core::Job j;
    j.tenant_id = t.tenant.id;
    j.request_id = request_id;
    j.spec = std::string("spec\0bytes", 10);
    j.model = "tiny";
    j.training_file_id = t.file.id;
    j.max_restarts = 2;
    j.priority = 3;
    j.resources.gpus = 1;
    j.labels = {{"team", "nlp"}};
    return j;
  }

  core::Job MustCreate(const core::Job& j) {
    auto r = store_->CreateJob(j);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? r->job : core::Job{};
  }

  core::Worker MustRegisterWorker(const std::string& host = "host-a") {
    core::Worker w;
    w.hostname = host;
    w.capabilities.gpus = 8;
    auto r = store_->RegisterWorker(w, clock_.Now() + absl::Seconds(30));
    EXPECT_TRUE(r.ok()) << r.status();
    return *r;
  }

  ::ftune::testing::TempDir dir_;
  FakeClock clock_;
  std::function<void(const std::vector<JobChange>&)> on_commit_;
  std::function<void(absl::Duration, int)> on_commit_timing_;
  std::unique_ptr<SqliteStore> store_;
};

}  // namespace ftune::store::testing

#endif  // FTUNE_TESTS_SERVER_STORE_STORE_FIXTURE_H_
