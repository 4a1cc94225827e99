// ModelService (proto/ftune/v1/model.proto): the base models registered
// from the scheduler's config file, for tenants (and admins).
//
// Thread-safety: called concurrently by gRPC; immutable after construction.
#ifndef FTUNE_SERVER_RPC_MODEL_SERVICE_H_
#define FTUNE_SERVER_RPC_MODEL_SERVICE_H_

#include "ftune/v1/model.grpc.pb.h"
#include "server/rpc/principal.h"

namespace ftune::store {
class Store;
}  // namespace ftune::store

namespace ftune::server::rpc {

class ModelServiceImpl final : public v1::ModelService::CallbackService {
 public:
  // `store` and `auth` are not owned and must outlive the service.
  ModelServiceImpl(store::Store* store, Authenticator* auth);

  grpc::ServerUnaryReactor* ListModels(
      grpc::CallbackServerContext* ctx, const v1::ListModelsRequest* request,
      v1::ListModelsResponse* response) override;
  grpc::ServerUnaryReactor* GetModel(grpc::CallbackServerContext* ctx,
                                     const v1::GetModelRequest* request,
                                     v1::Model* response) override;

 private:
  store::Store* store_;
  Authenticator* auth_;
};

}  // namespace ftune::server::rpc

#endif  // FTUNE_SERVER_RPC_MODEL_SERVICE_H_
