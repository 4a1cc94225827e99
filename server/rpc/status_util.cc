#include "server/rpc/status_util.h"

#include <utility>

#include "absl/strings/cord.h"
#include "absl/strings/match.h"
#include "absl/strings/string_view.h"

namespace ftune::server::rpc {

absl::Status WithErrorInfo(absl::Status status, const v1::ErrorInfo& info) {
  if (status.ok()) return status;
  status.SetPayload(kErrorInfoPayloadUrl, absl::Cord(info.SerializeAsString()));
  return status;
}

absl::Status InvalidField(std::string field, std::string message) {
  v1::ErrorInfo info;
  info.set_field(std::move(field));
  return WithErrorInfo(absl::InvalidArgumentError(message), info);
}

absl::Status FailedPreconditionInState(std::string message,
                                       std::string current_state) {
  v1::ErrorInfo info;
  info.set_current_state(std::move(current_state));
  return WithErrorInfo(absl::FailedPreconditionError(message), info);
}

absl::Status QuotaExceeded(std::string message, std::string quota,
                           int64_t limit) {
  v1::ErrorInfo info;
  info.set_quota(std::move(quota));
  info.set_limit(limit);
  return WithErrorInfo(absl::ResourceExhaustedError(message), info);
}

std::optional<v1::ErrorInfo> GetErrorInfo(const absl::Status& status) {
  auto payload = status.GetPayload(kErrorInfoPayloadUrl);
  if (!payload.has_value()) return std::nullopt;
  v1::ErrorInfo info;
  if (!info.ParseFromString(std::string(*payload))) return std::nullopt;
  return info;
}

grpc::Status ToGrpcStatus(const absl::Status& status,
                          grpc::ServerContextBase* ctx) {
  if (status.ok()) return grpc::Status::OK;
  if (ctx != nullptr) {
    if (auto info = GetErrorInfo(status)) {
      ctx->AddTrailingMetadata(kErrorInfoMetadataKey,
                               info->SerializeAsString());
    }
  }
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                      std::string(status.message()));
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
