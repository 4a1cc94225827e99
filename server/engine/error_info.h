// The structured error detail of the API (ftune.v1.ErrorInfo: field, line,
// quota, current state, resource id) carried on an absl::Status as a
// payload, so the engine can say precisely what was wrong without knowing
// about gRPC. The front end turns it into the trailing metadata entry
// "ftune-error-bin" (server/rpc/status_util.h, the one place that maps
// absl::Status to grpc::Status).
//
// Thread-safe: pure functions.
#ifndef FTUNE_SERVER_ENGINE_ERROR_INFO_H_
#define FTUNE_SERVER_ENGINE_ERROR_INFO_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "ftune/v1/common.pb.h"

namespace ftune::server::engine {

// Payload type URL on absl::Status.
inline constexpr char kErrorInfoPayloadUrl[] =
    "type.googleapis.com/ftune.v1.ErrorInfo";

// Returns `status` with `info` attached (replacing earlier detail). OK
// statuses are returned unchanged.
absl::Status WithErrorInfo(absl::Status status, const v1::ErrorInfo& info);
// Shorthands for the common cases.
absl::Status InvalidField(std::string field, std::string message);
absl::Status FailedPreconditionInState(std::string message,
                                       std::string current_state);
absl::Status QuotaExceeded(std::string message, std::string quota,
                           int64_t limit);
// NOT_FOUND with ErrorInfo.resource_id = `resource_id`: the id (or model
// name) that was not found, or the job whose adapter file or log is
// missing. Quote request values in `message` (common/quote.h).
absl::Status NotFoundResource(std::string message, std::string resource_id);
// `status` with ErrorInfo.resource_id = `resource_id` when it is a NOT_FOUND
// without detail (a store lookup of the id a request named); else as is.
absl::Status AboutResource(absl::Status status, absl::string_view resource_id);

// The detail attached by WithErrorInfo, if any.
std::optional<v1::ErrorInfo> GetErrorInfo(const absl::Status& status);

}  // namespace ftune::server::engine

#endif  // FTUNE_SERVER_ENGINE_ERROR_INFO_H_
