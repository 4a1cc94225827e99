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

// The detail attached by WithErrorInfo, if any.
std::optional<v1::ErrorInfo> GetErrorInfo(const absl::Status& status);

// Converts for returning from a service method; when the status carries an
// ErrorInfo and `ctx` is not null it is added to the trailing metadata.
grpc::Status ToGrpcStatus(const absl::Status& status,
                          grpc::ServerContextBase* ctx);

// Client side: converts a received grpc::Status back, re-attaching the
// ErrorInfo found in the trailing metadata of `ctx` (may be null).
absl::Status FromGrpcStatus(const grpc::Status& status,
                            const grpc::ClientContext* ctx);

}  // namespace ftune::server::rpc

#endif  // FTUNE_SERVER_RPC_STATUS_UTIL_H_
