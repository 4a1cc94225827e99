#include "server/rpc/status_util.h"

#include <utility>

#include "common/quote.h"

namespace ftune::server::rpc {

grpc::Status ToGrpcStatus(const absl::Status& status,
                          grpc::ServerContextBase* ctx) {
  if (status.ok()) return grpc::Status::OK;
  if (ctx != nullptr) {
    ctx->AddTrailingMetadata(
        kErrorInfoMetadataKey,
        GetErrorInfo(status).value_or(v1::ErrorInfo()).SerializeAsString());
  }
  return grpc::Status(
      static_cast<grpc::StatusCode>(status.code()),
      TruncateMessage(status.message(), kMaxStatusMessageBytes));
}

absl::Status FromGrpcStatus(const grpc::Status& status,
                            const grpc::ClientContext* ctx) {
  if (status.ok()) return absl::OkStatus();
  absl::Status out(static_cast<absl::StatusCode>(status.error_code()),
                   status.error_message());
  if (ctx != nullptr) {
    const auto& md = ctx->GetServerTrailingMetadata();
    auto it = md.find(kErrorInfoMetadataKey);
    if (it != md.end()) {
      v1::ErrorInfo info;
      if (info.ParseFromArray(it->second.data(),
                              static_cast<int>(it->second.size()))) {
        out = WithErrorInfo(out, info);
      }
    }
  }
  return out;
}

}  // namespace ftune::server::rpc
