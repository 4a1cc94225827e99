// AdminService commands: tenants, keys, quotas, workers. They need the
// admin key (--api-key-file / $FTUNE_API_KEY).
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/commands_internal.h"
#include "ftune/v1/admin.grpc.pb.h"

namespace ftune::client {
namespace {

std::unique_ptr<v1::AdminService::Stub> Stub(const CommandContext& c) {
  return v1::AdminService::NewStub(c.conn.channel());
}

std::string Limit(int32_t limit) {
  return limit == 0 ? "unlimited" : absl::StrCat(limit);
}

std::string QuotaSummary(const v1::Quota& q) {
  return absl::StrCat("queued ", Limit(q.max_queued_jobs()), ", running ",
                      Limit(q.max_running_jobs()), ", gpus ",
                      Limit(q.max_gpus()));
}

void PrintTenant(const CommandContext& c, const v1::Tenant& t) {
  if (c.output.structured()) return c.output.Message(t);
  c.output.Fields({{"id", t.id()},
                   {"name", t.display_name()},
                   {"weight", FormatNumber(t.fair_share_weight())},
                   {"quota", QuotaSummary(t.quota())},
                   {"created", FormatTime(t.create_time())}});
}

void PrintQuota(const CommandContext& c, const v1::QuotaStatus& q) {
  if (c.output.structured()) return c.output.Message(q);
  c.output.Fields(
      {{"tenant", q.tenant_id()},
       {"max_queued_jobs",
        absl::StrCat(Limit(q.quota().max_queued_jobs()), " (in use ",
                     q.usage().queued_jobs(), ")")},
       {"max_running_jobs",
        absl::StrCat(Limit(q.quota().max_running_jobs()), " (in use ",
                     q.usage().running_jobs(), ")")},
       {"max_gpus", absl::StrCat(Limit(q.quota().max_gpus()), " (in use ",
                                 q.usage().gpus(), ")")}});
}

std::string WorkerState(v1::WorkerState state) {
  return EnumName(v1::WorkerState_descriptor(), state, "WORKER_STATE_");
}

void PrintWorker(const CommandContext& c, const v1::Worker& w) {
  if (c.output.structured()) return c.output.Message(w);
  c.output.out() << w.id() << ": " << WorkerState(w.state()) << "\n";
}

// Reads --max-queued-jobs etc. into `quota`; false if none was given.
bool QuotaFlags(const CommandContext& c, v1::Quota* quota) {
  bool any = false;
  if (auto v = c.flags().GetInt("max-queued-jobs")) {
    quota->set_max_queued_jobs(static_cast<int32_t>(*v));
    any = true;
  }
  if (auto v = c.flags().GetInt("max-running-jobs")) {
    quota->set_max_running_jobs(static_cast<int32_t>(*v));
    any = true;
  }
  if (auto v = c.flags().GetInt("max-gpus")) {
    quota->set_max_gpus(static_cast<int32_t>(*v));
    any = true;
  }
  return any;
}

}  // namespace

int TenantsCreate(const CommandContext& c) {
  v1::CreateTenantRequest req;
  req.set_display_name(c.arg(0));
  if (auto w = c.flags().GetDouble("weight")) req.set_fair_share_weight(*w);
  QuotaFlags(c, req.mutable_quota());
  v1::Tenant tenant;
  int rc = Unary(c, [&](grpc::ClientContext* ctx) {
    return Stub(c)->CreateTenant(ctx, req, &tenant);
  });
  if (rc != kExitOk) return rc;
  if (c.output.structured()) {
    c.output.Message(tenant);
  } else {
    c.output.out() << tenant.id() << "\n";
  }
  return kExitOk;
}

int TenantsList(const CommandContext& c) {
  auto stub = Stub(c);
  v1::ListTenantsResponse all;
  int rc = ListPages(
      c, v1::ListTenantsRequest(),
      [&](grpc::ClientContext* ctx, const v1::ListTenantsRequest& req,
          v1::ListTenantsResponse* resp) {
        return stub->ListTenants(ctx, req, resp);
      },
      &all);
  if (rc != kExitOk) return rc;
  if (c.output.structured()) {
    c.output.Message(all);
    return kExitOk;
  }
  Table table({"ID", "NAME", "WEIGHT", "QUOTA", "CREATED"});
  for (const v1::Tenant& t : all.tenants()) {
    table.Add({t.id(), t.display_name(), FormatNumber(t.fair_share_weight()),
               QuotaSummary(t.quota()), FormatTime(t.create_time())});
  }
  table.Print(c.output.out());
  return kExitOk;
}

int TenantsGet(const CommandContext& c) {
  v1::GetTenantRequest req;
  req.set_tenant_id(c.arg(0));
  v1::Tenant tenant;
  int rc = Unary(c, [&](grpc::ClientContext* ctx) {
    return Stub(c)->GetTenant(ctx, req, &tenant);
  });
  if (rc == kExitOk) PrintTenant(c, tenant);
  return rc;
}

int TenantsUpdate(const CommandContext& c) {
  v1::UpdateTenantRequest req;
  req.set_tenant_id(c.arg(0));
  auto weight = c.flags().GetDouble("weight");
  if (!weight.has_value())
    return UsageFailure(c, "nothing to change: give --weight");
  req.set_fair_share_weight(*weight);
  v1::Tenant tenant;
  int rc = Unary(c, [&](grpc::ClientContext* ctx) {
    return Stub(c)->UpdateTenant(ctx, req, &tenant);
  });
  if (rc == kExitOk) PrintTenant(c, tenant);
  return rc;
}

int KeysCreate(const CommandContext& c) {
  if (!c.flags().Has("tenant")) {
    return UsageFailure(c, "\"keys create\" needs --tenant TENANT_ID");
  }
  v1::CreateApiKeyRequest req;
  req.set_tenant_id(c.flags().Get("tenant"));
  req.set_display_name(c.flags().Get("description"));
  v1::CreateApiKeyResponse resp;
  int rc = Unary(c, [&](grpc::ClientContext* ctx) {
    return Stub(c)->CreateApiKey(ctx, req, &resp);
  });
  if (rc != kExitOk) return rc;
  if (c.output.structured()) {
    c.output.Message(resp);
    return kExitOk;
  }
  c.output.Fields({{"key", resp.api_key().id()},
                   {"tenant", resp.api_key().tenant_id()},
                   {"secret", resp.secret()}});
  c.output.err() << "(the secret is shown only this once; store it now)\n";
  return kExitOk;
}

int KeysList(const CommandContext& c) {
  auto stub = Stub(c);
  std::vector<std::string> tenants;
  if (c.flags().Has("tenant")) {
    tenants.push_back(c.flags().Get("tenant"));
  } else {
    // Every tenant's keys: walk all tenants first.
    v1::ListTenantsRequest req;
    for (;;) {
      v1::ListTenantsResponse page;
      int rc = Unary(c, [&](grpc::ClientContext* ctx) {
        return stub->ListTenants(ctx, req, &page);
      });
      if (rc != kExitOk) return rc;
      for (const auto& t : page.tenants()) tenants.push_back(t.id());
      if (page.next_page_token().empty()) break;
      req.set_page_token(page.next_page_token());
    }
  }
  v1::ListApiKeysResponse all;
  for (const std::string& tenant : tenants) {
    v1::ListApiKeysRequest req;
    req.set_tenant_id(tenant);
    req.set_include_revoked(c.flags().GetBool("include-revoked"));
    int rc = ListPages(
        c, req,
        [&](grpc::ClientContext* ctx, const v1::ListApiKeysRequest& r,
            v1::ListApiKeysResponse* resp) {
          return stub->ListApiKeys(ctx, r, resp);
        },
        &all);
    if (rc != kExitOk) return rc;
  }
  if (c.output.structured()) {
    c.output.Message(all);
    return kExitOk;
  }
  Table table({"ID", "TENANT", "DESCRIPTION", "PREFIX", "CREATED", "REVOKED"});
  for (const v1::ApiKey& k : all.api_keys()) {
    table.Add({k.id(), k.tenant_id(), k.display_name(), k.prefix(),
               FormatTime(k.create_time()), FormatTime(k.revoke_time())});
  }
  table.Print(c.output.out());
  return kExitOk;
}

int KeysRevoke(const CommandContext& c) {
  v1::RevokeApiKeyRequest req;
  req.set_key_id(c.arg(0));
  v1::ApiKey key;
  int rc = Unary(c, [&](grpc::ClientContext* ctx) {
    return Stub(c)->RevokeApiKey(ctx, req, &key);
  });
  if (rc != kExitOk) return rc;
  if (c.output.structured()) {
    c.output.Message(key);
  } else {
    c.output.out() << key.id() << ": revoked at "
                   << FormatTime(key.revoke_time()) << "\n";
  }
  return kExitOk;
}

int QuotasGet(const CommandContext& c) {
  v1::GetQuotaRequest req;
  req.set_tenant_id(c.arg(0));
  v1::QuotaStatus quota;
  int rc = Unary(c, [&](grpc::ClientContext* ctx) {
    return Stub(c)->GetQuota(ctx, req, &quota);
  });
  if (rc == kExitOk) PrintQuota(c, quota);
  return rc;
}

int QuotasSet(const CommandContext& c) {
  v1::Quota wanted;
  if (!QuotaFlags(c, &wanted)) {
    return UsageFailure(c,
                        "nothing to change: give --max-queued-jobs, "
                        "--max-running-jobs and/or --max-gpus");
  }
  auto stub = Stub(c);
  // SetQuota replaces all three limits; keep the ones not given.
  v1::GetQuotaRequest get;
  get.set_tenant_id(c.arg(0));
  v1::QuotaStatus current;
  int rc = Unary(c, [&](grpc::ClientContext* ctx) {
    return stub->GetQuota(ctx, get, &current);
  });
  if (rc != kExitOk) return rc;
  v1::SetQuotaRequest req;
  req.set_tenant_id(c.arg(0));
  *req.mutable_quota() = current.quota();
  QuotaFlags(c, req.mutable_quota());
  v1::QuotaStatus updated;
  rc = Unary(c, [&](grpc::ClientContext* ctx) {
    return stub->SetQuota(ctx, req, &updated);
  });
  if (rc == kExitOk) PrintQuota(c, updated);
  return rc;
}

int WorkersList(const CommandContext& c) {
  v1::ListWorkersRequest req;
  for (const std::string& s : c.flags().GetAll("state")) {
    int state = ParseEnum(v1::WorkerState_descriptor(), "WORKER_STATE_", s);
    if (state < 0) {
      return UsageFailure(
          c, absl::StrCat(
                 "--state: unknown worker state \"", s, "\"; one of ",
                 EnumChoices(v1::WorkerState_descriptor(), "WORKER_STATE_")));
    }
    req.add_states(static_cast<v1::WorkerState>(state));
  }
  auto stub = Stub(c);
  v1::ListWorkersResponse all;
  int rc = ListPages(
      c, req,
      [&](grpc::ClientContext* ctx, const v1::ListWorkersRequest& r,
          v1::ListWorkersResponse* resp) {
        return stub->ListWorkers(ctx, r, resp);
      },
      &all);
  if (rc != kExitOk) return rc;
  if (c.output.structured()) {
    c.output.Message(all);
    return kExitOk;
  }
  Table table({"ID", "HOST", "STATE", "GPUS FREE", "CPU FREE", "ATTEMPTS",
               "LAST HEARTBEAT"});
  for (const v1::Worker& w : all.workers()) {
    std::vector<std::string> attempts;
    for (const auto& a : w.running_attempts()) {
      attempts.push_back(absl::StrCat(a.job_id(), "#", a.attempt()));
    }
    table.Add(
        {w.id(), w.capabilities().hostname(), WorkerState(w.state()),
         absl::StrCat(w.free_gpu_indices_size(), "/",
                      w.capabilities().gpus_size()),
         absl::StrCat(w.free_cpu_slots(), "/", w.capabilities().cpu_slots()),
         attempts.empty() ? "-" : absl::StrJoin(attempts, ","),
         FormatTime(w.last_heartbeat_time())});
  }
  table.Print(c.output.out());
  return kExitOk;
}

int WorkersDrain(const CommandContext& c) {
  v1::DrainWorkerRequest req;
  req.set_worker_id(c.arg(0));
  v1::Worker worker;
  int rc = Unary(c, [&](grpc::ClientContext* ctx) {
    return Stub(c)->DrainWorker(ctx, req, &worker);
  });
  if (rc == kExitOk) PrintWorker(c, worker);
  return rc;
}

int WorkersUndrain(const CommandContext& c) {
  v1::UndrainWorkerRequest req;
  req.set_worker_id(c.arg(0));
  v1::Worker worker;
  int rc = Unary(c, [&](grpc::ClientContext* ctx) {
    return Stub(c)->UndrainWorker(ctx, req, &worker);
  });
  if (rc == kExitOk) PrintWorker(c, worker);
  return rc;
}

}  // namespace ftune::client
