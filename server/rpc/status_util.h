// absl::Status <-> grpc::Status, with the structured error detail of the API
// (ftune.v1.ErrorInfo: field, line, quota, current state, resource id).
//
// Code below the RPC layer attaches the detail to an absl::Status as a
// payload (WithErrorInfo); ToGrpcStatus turns it into the trailing metadata
// entry "ftune-error-bin" (a serialized ErrorInfo) that clients read (see
// proto/ftune/v1/common.proto).
#ifndef FTUNE_SERVER_RPC_STATUS_UTIL_H_
#define FTUNE_SERVER_RPC_STATUS_UTIL_H_

#include <optional>
#include <string>

#include <grpcpp/grpcpp.h>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "ftune/v1/common.pb.h"

namespace ftune::server::rpc {

// Metadata key of the serialized ErrorInfo.
inline constexpr char kErrorInfoMetadataKey[] = "ftune-error-bin";
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

// Longest status message sent (bytes): longer ones are cut (TruncateMessage)
// so a default client, which refuses trailing metadata above 8 KiB, can
// always read the status.
inline constexpr size_t kMaxStatusMessageBytes = 2048;

// The detail attached by WithErrorInfo, if any.
std::optional<v1::ErrorInfo> GetErrorInfo(const absl::Status& status);

// Converts for returning from a service method. When `ctx` is not null the
// status's ErrorInfo (an empty one if it carries none) is added to the
// trailing metadata, so every failed call has one (common.proto). The
// message is cut to kMaxStatusMessageBytes.
grpc::Status ToGrpcStatus(const absl::Status& status,
                          grpc::ServerContextBase* ctx);

// Client side: converts a received grpc::Status back, re-attaching the
// ErrorInfo found in the trailing metadata of `ctx` (may be null).
absl::Status FromGrpcStatus(const grpc::Status& status,
                            const grpc::ClientContext* ctx);

}  // namespace ftune::server::rpc

#endif  // FTUNE_SERVER_RPC_STATUS_UTIL_H_
