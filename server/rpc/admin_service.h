// AdminService (proto/ftune/v1/admin.proto) on the gRPC callback API:
// tenants, their API keys and quotas, and the worker registry (list,
// drain, undrain). Every call needs the admin credential
// (server/rpc/auth.h).
//
// Thread-safety: called concurrently by gRPC; immutable after construction.
#ifndef FTUNE_SERVER_RPC_ADMIN_SERVICE_H_
#define FTUNE_SERVER_RPC_ADMIN_SERVICE_H_

#include <functional>

#include "absl/status/status.h"
#include "ftune/v1/admin.grpc.pb.h"
#include "server/core/types.h"
#include "server/rpc/principal.h"

namespace ftune::store {
class Store;
}  // namespace ftune::store

namespace ftune::server::rpc {

class AdminServiceImpl final : public v1::AdminService::CallbackService {
 public:
  // `store` and `auth` are not owned and must outlive the service.
  AdminServiceImpl(store::Store* store, Authenticator* auth);

  grpc::ServerUnaryReactor* CreateTenant(grpc::CallbackServerContext* ctx,
                                         const v1::CreateTenantRequest* request,
                                         v1::Tenant* response) override;
  grpc::ServerUnaryReactor* GetTenant(grpc::CallbackServerContext* ctx,
                                      const v1::GetTenantRequest* request,
                                      v1::Tenant* response) override;
  grpc::ServerUnaryReactor* ListTenants(
      grpc::CallbackServerContext* ctx, const v1::ListTenantsRequest* request,
      v1::ListTenantsResponse* response) override;
  grpc::ServerUnaryReactor* UpdateTenant(grpc::CallbackServerContext* ctx,
                                         const v1::UpdateTenantRequest* request,
                                         v1::Tenant* response) override;
  grpc::ServerUnaryReactor* CreateApiKey(
      grpc::CallbackServerContext* ctx, const v1::CreateApiKeyRequest* request,
      v1::CreateApiKeyResponse* response) override;
  grpc::ServerUnaryReactor* ListApiKeys(
      grpc::CallbackServerContext* ctx, const v1::ListApiKeysRequest* request,
      v1::ListApiKeysResponse* response) override;
  grpc::ServerUnaryReactor* RevokeApiKey(grpc::CallbackServerContext* ctx,
                                         const v1::RevokeApiKeyRequest* request,
                                         v1::ApiKey* response) override;
  grpc::ServerUnaryReactor* GetQuota(grpc::CallbackServerContext* ctx,
                                     const v1::GetQuotaRequest* request,
                                     v1::QuotaStatus* response) override;
  grpc::ServerUnaryReactor* SetQuota(grpc::CallbackServerContext* ctx,
                                     const v1::SetQuotaRequest* request,
                                     v1::QuotaStatus* response) override;
  grpc::ServerUnaryReactor* ListWorkers(
      grpc::CallbackServerContext* ctx, const v1::ListWorkersRequest* request,
      v1::ListWorkersResponse* response) override;
  grpc::ServerUnaryReactor* DrainWorker(grpc::CallbackServerContext* ctx,
                                        const v1::DrainWorkerRequest* request,
                                        v1::Worker* response) override;
  grpc::ServerUnaryReactor* UndrainWorker(
      grpc::CallbackServerContext* ctx, const v1::UndrainWorkerRequest* request,
      v1::Worker* response) override;

 private:
  absl::Status FillWorker(const core::Worker& worker, v1::Worker* out);
  grpc::ServerUnaryReactor* Unary(grpc::CallbackServerContext* ctx,
                                  const std::function<absl::Status()>& fn);
  absl::Status FillQuotaStatus(const std::string& tenant_id,
                               v1::QuotaStatus* out);

  store::Store* store_;
  Authenticator* auth_;
};

}  // namespace ftune::server::rpc

#endif  // FTUNE_SERVER_RPC_ADMIN_SERVICE_H_
