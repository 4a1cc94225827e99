#include "server/rpc/status_util.h"

#include <utility>

#include "absl/strings/cord.h"
#include "absl/strings/match.h"
#include "absl/strings/string_view.h"
#include "common/quote.h"

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

namespace {
// Ids are 30-odd bytes and model names at most 64: anything longer is not
// one, and ErrorInfo travels in trailing metadata too.
constexpr size_t kMaxResourceIdBytes = 128;
}  // namespace

absl::Status NotFoundResource(std::string message, std::string resource_id) {
  v1::ErrorInfo info;
  if (resource_id.size() <= kMaxResourceIdBytes) {
    info.set_resource_id(std::move(resource_id));
  }
  return WithErrorInfo(absl::NotFoundError(message), info);
}

absl::Status AboutResource(absl::Status status, absl::string_view resource_id) {
  if (!absl::IsNotFound(status) || GetErrorInfo(status).has_value()) {
    return status;
  }
  return NotFoundResource(std::string(status.message()),
                          std::string(resource_id));
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
