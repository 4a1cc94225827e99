#include "server/rpc/admin_service.h"

#include <algorithm>
#include <set>
#include <tuple>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/ids.h"
#include "common/quote.h"
#include "common/status.h"
#include "proto/convert/trainer_capabilities.h"
#include "server/core/api_key.h"
#include "server/core/placement.h"
#include "server/rpc/auth.h"
#include "server/rpc/convert.h"
#include "server/rpc/pagination.h"
#include "server/rpc/status_util.h"
#include "server/store/store.h"

namespace ftune::server::rpc {
namespace {

absl::Status CheckTenantId(const std::string& id) {
  if (!IsValidId(id, kTenantIdPrefix)) {
    return InvalidField(
        "tenant_id", absl::StrCat("tenant_id: malformed id ", QuoteValue(id)));
  }
  return absl::OkStatus();
}

absl::Status CheckDisplayName(const std::string& field, const std::string& name,
                              size_t min_chars) {
  if (name.size() < min_chars || name.size() > 200) {
    return InvalidField(
        field, absl::StrCat(field, ": must be ", min_chars, "-200 characters"));
  }
  return absl::OkStatus();
}

absl::Status CheckWeight(const std::string& field, double w) {
  if (!(w > 0 && w <= 1000)) {
    return InvalidField(field,
                        absl::StrCat(field, ": must be in (0, 1000], got ", w));
  }
  return absl::OkStatus();
}

absl::StatusOr<core::Quota> QuotaFromProto(const std::string& field,
                                           const v1::Quota& q) {
  const std::pair<const char*, int32_t> fields[] = {
      {"max_queued_jobs", q.max_queued_jobs()},
      {"max_running_jobs", q.max_running_jobs()},
      {"max_gpus", q.max_gpus()}};
  for (const auto& [name, value] : fields) {
    if (value < 0) {
      const std::string f = absl::StrCat(field, ".", name);
      return InvalidField(f, absl::StrCat(f, ": must be >= 0, got ", value));
    }
  }
  core::Quota out;
  out.max_queued_jobs = q.max_queued_jobs();
  out.max_running_jobs = q.max_running_jobs();
  out.max_gpus = q.max_gpus();
  return out;
}

absl::Status CheckWorkerId(const std::string& id) {
  if (id.empty()) return InvalidField("worker_id", "worker_id is required");
  if (!IsValidId(id, kWorkerIdPrefix)) {
    return InvalidField(
        "worker_id", absl::StrCat("worker_id: malformed id ", QuoteValue(id)));
  }
  return absl::OkStatus();
}

// A store call on the worker `id`: NOT_FOUND carries the id.
absl::StatusOr<core::Worker> AboutWorker(absl::StatusOr<core::Worker> w,
                                         const std::string& id) {
  if (w.ok()) return w;
  return AboutResource(w.status(), id);
}

absl::Status TenantNotFound(const std::string& id) {
  return NotFoundResource(absl::StrCat("tenant ", id, " not found"), id);
}

absl::StatusOr<core::Tenant> LoadTenant(store::Store& store,
                                        const std::string& id) {
  FTUNE_RETURN_IF_ERROR(CheckTenantId(id));
  absl::StatusOr<core::Tenant> t = store.GetTenant(id);
  if (absl::IsNotFound(t.status())) return TenantNotFound(id);
  return t;
}

}  // namespace

AdminServiceImpl::AdminServiceImpl(store::Store* store, Authenticator* auth)
    : store_(store), auth_(auth) {}

grpc::ServerUnaryReactor* AdminServiceImpl::Unary(
    grpc::CallbackServerContext* ctx, const std::function<absl::Status()>& fn) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  absl::StatusOr<Principal> caller = RequireAdmin(*auth_, *ctx);
  absl::Status status = caller.ok() ? fn() : caller.status();
  reactor->Finish(ToGrpcStatus(status, ctx));
  return reactor;
}

grpc::ServerUnaryReactor* AdminServiceImpl::CreateTenant(
    grpc::CallbackServerContext* ctx, const v1::CreateTenantRequest* request,
    v1::Tenant* response) {
  return Unary(ctx, [&]() -> absl::Status {
    FTUNE_RETURN_IF_ERROR(
        CheckDisplayName("display_name", request->display_name(), 1));
    core::Tenant t;
    t.name = request->display_name();
    t.weight =
        request->fair_share_weight() == 0 ? 1.0 : request->fair_share_weight();
    FTUNE_RETURN_IF_ERROR(CheckWeight("fair_share_weight", t.weight));
    FTUNE_ASSIGN_OR_RETURN(t.quota, QuotaFromProto("quota", request->quota()));
    absl::StatusOr<core::Tenant> created = store_->CreateTenant(t);
    if (absl::IsAlreadyExists(created.status())) {
      return WithErrorInfo(created.status(), [] {
        v1::ErrorInfo info;
        info.set_field("display_name");
        return info;
      }());
    }
    FTUNE_RETURN_IF_ERROR(created.status());
    *response = TenantToProto(*created);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* AdminServiceImpl::GetTenant(
    grpc::CallbackServerContext* ctx, const v1::GetTenantRequest* request,
    v1::Tenant* response) {
  return Unary(ctx, [&]() -> absl::Status {
    FTUNE_ASSIGN_OR_RETURN(core::Tenant t,
                           LoadTenant(*store_, request->tenant_id()));
    *response = TenantToProto(t);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* AdminServiceImpl::ListTenants(
    grpc::CallbackServerContext* ctx, const v1::ListTenantsRequest* request,
    v1::ListTenantsResponse* response) {
  return Unary(ctx, [&]() -> absl::Status {
    FTUNE_ASSIGN_OR_RETURN(int page_size,
                           ResolvePageSize(request->page_size(), 100, 1000));
    FTUNE_ASSIGN_OR_RETURN(std::vector<core::Tenant> all,
                           store_->ListTenants());
    std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) {
      return std::tie(a.create_time, a.id) < std::tie(b.create_time, b.id);
    });
    std::string next;
    FTUNE_RETURN_IF_ERROR(
        OffsetPage(all, page_size, request->page_token(), "tenants", &next,
                   [&](const core::Tenant& t) {
                     *response->add_tenants() = TenantToProto(t);
                   }));
    response->set_next_page_token(next);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* AdminServiceImpl::UpdateTenant(
    grpc::CallbackServerContext* ctx, const v1::UpdateTenantRequest* request,
    v1::Tenant* response) {
  return Unary(ctx, [&]() -> absl::Status {
    FTUNE_ASSIGN_OR_RETURN(core::Tenant t,
                           LoadTenant(*store_, request->tenant_id()));
    if (request->has_display_name() && request->display_name() != t.name) {
      FTUNE_RETURN_IF_ERROR(
          CheckDisplayName("display_name", request->display_name(), 1));
      return WithErrorInfo(
          absl::UnimplementedError(
              "display_name: renaming a tenant is not supported yet"),
          [] {
            v1::ErrorInfo info;
            info.set_field("display_name");
            return info;
          }());
    }
    if (request->has_fair_share_weight()) {
      FTUNE_RETURN_IF_ERROR(
          CheckWeight("fair_share_weight", request->fair_share_weight()));
      FTUNE_ASSIGN_OR_RETURN(
          t, store_->SetTenantWeight(t.id, request->fair_share_weight()));
    }
    *response = TenantToProto(t);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* AdminServiceImpl::CreateApiKey(
    grpc::CallbackServerContext* ctx, const v1::CreateApiKeyRequest* request,
    v1::CreateApiKeyResponse* response) {
  return Unary(ctx, [&]() -> absl::Status {
    FTUNE_ASSIGN_OR_RETURN(core::Tenant t,
                           LoadTenant(*store_, request->tenant_id()));
    FTUNE_RETURN_IF_ERROR(
        CheckDisplayName("display_name", request->display_name(), 0));
    if (request->has_expire_time()) {
      return InvalidField("expire_time",
                          "expire_time: expiring keys are not supported yet; "
                          "revoke the key instead");
    }
    const core::GeneratedApiKey secret = core::GenerateApiKey();
    core::ApiKey key;
    key.role = core::ApiKeyRole::kTenant;
    key.tenant_id = t.id;
    key.prefix = secret.prefix;
    key.hash = secret.hash;
    key.description = request->display_name();
    FTUNE_ASSIGN_OR_RETURN(core::ApiKey stored, store_->CreateApiKey(key));
    *response->mutable_api_key() = ApiKeyToProto(stored);
    response->set_secret(secret.key);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* AdminServiceImpl::ListApiKeys(
    grpc::CallbackServerContext* ctx, const v1::ListApiKeysRequest* request,
    v1::ListApiKeysResponse* response) {
  return Unary(ctx, [&]() -> absl::Status {
    FTUNE_ASSIGN_OR_RETURN(int page_size,
                           ResolvePageSize(request->page_size(), 100, 1000));
    FTUNE_ASSIGN_OR_RETURN(core::Tenant t,
                           LoadTenant(*store_, request->tenant_id()));
    FTUNE_ASSIGN_OR_RETURN(std::vector<core::ApiKey> all,
                           store_->ListApiKeys(t.id));
    std::vector<core::ApiKey> keys;
    for (core::ApiKey& k : all) {
      if (k.role != core::ApiKeyRole::kTenant || k.tenant_id != t.id) continue;
      if (k.revoked && !request->include_revoked()) continue;
      keys.push_back(std::move(k));
    }
    std::sort(keys.begin(), keys.end(), [](const auto& a, const auto& b) {
      return std::tie(a.create_time, a.id) < std::tie(b.create_time, b.id);
    });
    std::string next;
    FTUNE_RETURN_IF_ERROR(
        OffsetPage(keys, page_size, request->page_token(),
                   absl::StrCat("keys;", t.id, ";", request->include_revoked()),
                   &next, [&](const core::ApiKey& k) {
                     *response->add_api_keys() = ApiKeyToProto(k);
                   }));
    response->set_next_page_token(next);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* AdminServiceImpl::RevokeApiKey(
    grpc::CallbackServerContext* ctx, const v1::RevokeApiKeyRequest* request,
    v1::ApiKey* response) {
  return Unary(ctx, [&]() -> absl::Status {
    if (!IsValidId(request->key_id(), kApiKeyIdPrefix)) {
      return InvalidField(
          "key_id",
          absl::StrCat("key_id: malformed id ", QuoteValue(request->key_id())));
    }
    absl::StatusOr<core::ApiKey> key = store_->RevokeApiKey(request->key_id());
    if (absl::IsNotFound(key.status())) {
      return NotFoundResource(
          absl::StrCat("API key ", request->key_id(), " not found"),
          request->key_id());
    }
    FTUNE_RETURN_IF_ERROR(key.status());
    // Before answering: once the admin sees "revoked", no call with the key
    // is accepted any more.
    auth_->ApiKeyRevoked();
    *response = ApiKeyToProto(*key);
    return absl::OkStatus();
  });
}

absl::Status AdminServiceImpl::FillQuotaStatus(const std::string& tenant_id,
                                               v1::QuotaStatus* out) {
  FTUNE_ASSIGN_OR_RETURN(core::Tenant t, LoadTenant(*store_, tenant_id));
  out->set_tenant_id(t.id);
  *out->mutable_quota() = QuotaToProto(t.quota);
  store::JobFilter filter;
  filter.states = {core::JobState::kQueued, core::JobState::kPaused,
                   core::JobState::kRunning, core::JobState::kCancelling};
  std::string token;
  v1::QuotaUsage* usage = out->mutable_usage();
  do {
    FTUNE_ASSIGN_OR_RETURN(
        store::Page<core::Job> page,
        store_->ListJobs(t.id, filter, store::kMaxPageSize, token));
    for (const core::Job& j : page.items) {
      // A pending pause still holds its worker: it counts as running.
      const bool running =
          j.state == core::JobState::kRunning ||
          j.state == core::JobState::kCancelling ||
          (j.state == core::JobState::kPaused && !j.worker_id.empty());
      if (running) {
        usage->set_running_jobs(usage->running_jobs() + 1);
        usage->set_gpus(usage->gpus() + j.resources.gpus);
      } else {
        usage->set_queued_jobs(usage->queued_jobs() + 1);
      }
    }
    token = page.next_page_token;
  } while (!token.empty());
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* AdminServiceImpl::GetQuota(
    grpc::CallbackServerContext* ctx, const v1::GetQuotaRequest* request,
    v1::QuotaStatus* response) {
  return Unary(ctx, [&]() -> absl::Status {
    return FillQuotaStatus(request->tenant_id(), response);
  });
}

grpc::ServerUnaryReactor* AdminServiceImpl::SetQuota(
    grpc::CallbackServerContext* ctx, const v1::SetQuotaRequest* request,
    v1::QuotaStatus* response) {
  return Unary(ctx, [&]() -> absl::Status {
    FTUNE_RETURN_IF_ERROR(LoadTenant(*store_, request->tenant_id()).status());
    FTUNE_ASSIGN_OR_RETURN(core::Quota q,
                           QuotaFromProto("quota", request->quota()));
    FTUNE_RETURN_IF_ERROR(store_->SetQuota(request->tenant_id(), q).status());
    return FillQuotaStatus(request->tenant_id(), response);
  });
}

// ------------------------------------------------------------- workers ----

absl::Status AdminServiceImpl::FillWorker(const core::Worker& w,
                                          v1::Worker* out) {
  out->set_id(w.id);
  v1::WorkerCapabilities* c = out->mutable_capabilities();
  c->set_hostname(w.hostname);
  c->set_cpu_slots(w.capabilities.cpu_slots);
  c->set_memory_bytes(w.capabilities.memory_bytes);
  c->mutable_labels()->insert(w.capabilities.labels.begin(),
                              w.capabilities.labels.end());
  c->set_software_version(w.capabilities.version);
  if (w.capabilities.trainer) {
    *c->mutable_trainer() = TrainerCapabilitiesToProto(*w.capabilities.trainer);
  }
  std::vector<int32_t> gpus = w.capabilities.gpu_indices;
  if (gpus.empty()) {
    for (int32_t i = 0; i < w.capabilities.gpus; ++i) gpus.push_back(i);
  }
  for (int32_t g : gpus) {
    v1::GpuDevice* d = c->add_gpus();
    d->set_index(g);
    d->set_name(w.capabilities.gpu_type);
    d->set_memory_bytes(w.capabilities.gpu_memory_bytes);
  }
  FTUNE_ASSIGN_OR_RETURN(std::vector<store::HeldAttempt> held,
                         store_->ListHeldAttempts(w.id));
  std::set<int32_t> used;
  int32_t cpu_jobs = 0;
  for (const store::HeldAttempt& h : held) {
    v1::AttemptRef* a = out->add_running_attempts();
    a->set_job_id(h.job.id);
    a->set_attempt(static_cast<int32_t>(h.job.attempt));
    used.insert(h.resources.gpu_indices.begin(), h.resources.gpu_indices.end());
    cpu_jobs += core::CpuSlotsOf(h.job.resources);
  }
  for (int32_t g : gpus) {
    if (used.count(g) == 0) out->add_free_gpu_indices(g);
  }
  out->set_free_cpu_slots(std::max(0, w.capabilities.cpu_slots - cpu_jobs));
  switch (w.state) {
    case core::WorkerState::kActive:
      out->set_state(v1::WORKER_STATE_ACTIVE);
      break;
    case core::WorkerState::kDraining:
      out->set_state(held.empty() ? v1::WORKER_STATE_DRAINED
                                  : v1::WORKER_STATE_DRAINING);
      break;
    case core::WorkerState::kLost:
      out->set_state(v1::WORKER_STATE_LOST);
      break;
  }
  SetTimestamp(w.register_time, out->mutable_register_time());
  SetTimestamp(w.last_heartbeat, out->mutable_last_heartbeat_time());
  SetTimestamp(w.lease_expiry, out->mutable_lease_expire_time());
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* AdminServiceImpl::ListWorkers(
    grpc::CallbackServerContext* ctx, const v1::ListWorkersRequest* request,
    v1::ListWorkersResponse* response) {
  return Unary(ctx, [&]() -> absl::Status {
    FTUNE_ASSIGN_OR_RETURN(int page_size,
                           ResolvePageSize(request->page_size(), 100, 1000));
    // Unknown states are refused, as ListJobs does (not silently matching
    // nothing); the page token is bound to the filter.
    std::set<int> states;
    for (int i = 0; i < request->states_size(); ++i) {
      const int s = request->states(i);
      if (s == v1::WORKER_STATE_UNSPECIFIED || !v1::WorkerState_IsValid(s)) {
        const std::string field = absl::StrCat("states[", i, "]");
        return InvalidField(field,
                            absl::StrCat(field, ": not a worker state: ", s));
      }
      states.insert(s);
    }
    std::string binding = "workers;states=";
    for (int s : states) absl::StrAppend(&binding, s, ",");
    FTUNE_ASSIGN_OR_RETURN(std::string after,
                           DecodePageToken(request->page_token(), binding));
    FTUNE_ASSIGN_OR_RETURN(std::vector<core::Worker> workers,
                           store_->ListWorkers());  // Ordered by id.
    FTUNE_ASSIGN_OR_RETURN(
        std::optional<std::string> next,
        KeysetPage(
            workers,
            after.empty() ? std::nullopt : std::optional<std::string>(after),
            page_size, [](const core::Worker& w) { return w.id; },
            [&](const core::Worker& w)
                -> absl::StatusOr<std::optional<v1::Worker>> {
              v1::Worker out;
              FTUNE_RETURN_IF_ERROR(FillWorker(w, &out));
              if (!states.empty() && states.count(out.state()) == 0) {
                return std::nullopt;
              }
              return out;
            },
            response->mutable_workers()));
    if (next) response->set_next_page_token(EncodePageToken(binding, *next));
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* AdminServiceImpl::DrainWorker(
    grpc::CallbackServerContext* ctx, const v1::DrainWorkerRequest* request,
    v1::Worker* response) {
  return Unary(ctx, [&]() -> absl::Status {
    FTUNE_RETURN_IF_ERROR(CheckWorkerId(request->worker_id()));
    FTUNE_ASSIGN_OR_RETURN(
        core::Worker w, AboutWorker(store_->DrainWorker(request->worker_id()),
                                    request->worker_id()));
    if (w.state == core::WorkerState::kLost) {
      return FailedPreconditionInState(
          absl::StrCat("worker ", w.id, " is LOST; nothing to drain"),
          "WORKER_STATE_LOST");
    }
    return FillWorker(w, response);
  });
}

grpc::ServerUnaryReactor* AdminServiceImpl::UndrainWorker(
    grpc::CallbackServerContext* ctx, const v1::UndrainWorkerRequest* request,
    v1::Worker* response) {
  return Unary(ctx, [&]() -> absl::Status {
    FTUNE_RETURN_IF_ERROR(CheckWorkerId(request->worker_id()));
    FTUNE_ASSIGN_OR_RETURN(
        core::Worker w, AboutWorker(store_->UndrainWorker(request->worker_id()),
                                    request->worker_id()));
    return FillWorker(w, response);
  });
}

}  // namespace ftune::server::rpc
