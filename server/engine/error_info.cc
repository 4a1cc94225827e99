#include "server/engine/error_info.h"

#include <utility>

#include "absl/strings/cord.h"

namespace ftune::server::engine {

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

}  // namespace ftune::server::engine
