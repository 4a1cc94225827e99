#include "server/rpc/model_service.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/quote.h"
#include "common/status.h"
#include "server/rpc/auth.h"
#include "server/rpc/convert.h"
#include "server/rpc/pagination.h"
#include "server/rpc/status_util.h"
#include "server/store/store.h"

namespace ftune::server::rpc {

ModelServiceImpl::ModelServiceImpl(store::Store* store, Authenticator* auth)
    : store_(store), auth_(auth) {}

grpc::ServerUnaryReactor* ModelServiceImpl::ListModels(
    grpc::CallbackServerContext* ctx, const v1::ListModelsRequest* request,
    v1::ListModelsResponse* response) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  absl::Status status = [&]() -> absl::Status {
    FTUNE_ASSIGN_OR_RETURN(Principal caller,
                           RequireTenantOrAdmin(*auth_, *ctx));
    FTUNE_ASSIGN_OR_RETURN(int page_size,
                           ResolvePageSize(request->page_size(), 100, 1000));
    FTUNE_ASSIGN_OR_RETURN(std::string after,
                           DecodePageToken(request->page_token(), "models"));
    FTUNE_ASSIGN_OR_RETURN(std::vector<core::Model> all, store_->ListModels());
    // A tenant sees the operator's models and its own fine-tuned ones.
    if (!caller.is_admin()) {
      all.erase(std::remove_if(all.begin(), all.end(),
                               [&](const core::Model& m) {
                                 return !core::ModelVisibleTo(m,
                                                              caller.tenant_id);
                               }),
                all.end());
    }
    std::sort(all.begin(), all.end(),
              [](const auto& a, const auto& b) { return a.name < b.name; });
    FTUNE_ASSIGN_OR_RETURN(
        std::optional<std::string> next,
        KeysetPage(
            all,
            after.empty() ? std::nullopt : std::optional<std::string>(after),
            page_size, [](const core::Model& m) { return m.name; },
            [](const core::Model& m)
                -> absl::StatusOr<std::optional<v1::Model>> {
              return ModelToProto(m);
            },
            response->mutable_models()));
    if (next) response->set_next_page_token(EncodePageToken("models", *next));
    return absl::OkStatus();
  }();
  reactor->Finish(ToGrpcStatus(status, ctx));
  return reactor;
}

grpc::ServerUnaryReactor* ModelServiceImpl::GetModel(
    grpc::CallbackServerContext* ctx, const v1::GetModelRequest* request,
    v1::Model* response) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  absl::Status status = [&]() -> absl::Status {
    FTUNE_ASSIGN_OR_RETURN(Principal caller,
                           RequireTenantOrAdmin(*auth_, *ctx));
    if (request->name().empty()) {
      return InvalidField("name", "name: is required");
    }
    absl::StatusOr<core::Model> model = store_->GetModel(request->name());
    // Another tenant's fine-tuned model answers like a missing name.
    if (model.ok() && !caller.is_admin() &&
        !core::ModelVisibleTo(*model, caller.tenant_id)) {
      model = absl::NotFoundError("not visible");
    }
    if (absl::IsNotFound(model.status())) {
      return NotFoundResource(
          absl::StrCat("no model named ", QuoteValue(request->name())),
          request->name());
    }
    FTUNE_RETURN_IF_ERROR(model.status());
    *response = ModelToProto(*model);
    return absl::OkStatus();
  }();
  reactor->Finish(ToGrpcStatus(status, ctx));
  return reactor;
}

}  // namespace ftune::server::rpc
