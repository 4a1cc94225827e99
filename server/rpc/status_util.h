// absl::Status <-> grpc::Status, with the structured error detail of the API
// (ftune.v1.ErrorInfo: field, line, quota, current state, resource id).
// The one place where an absl::Status becomes a grpc::Status.
//
// Code below the RPC layer attaches the detail to an absl::Status as a
// payload (WithErrorInfo, server/engine/error_info.h); ToGrpcStatus turns it
// into the trailing metadata entry "ftune-error-bin" (a serialized
// ErrorInfo) that clients read (see proto/ftune/v1/common.proto).
#ifndef FTUNE_SERVER_RPC_STATUS_UTIL_H_
#define FTUNE_SERVER_RPC_STATUS_UTIL_H_

#include <optional>
#include <string>

#include <grpcpp/grpcpp.h>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "ftune/v1/common.pb.h"
#include "server/engine/error_info.h"

namespace ftune::server::rpc {

// Metadata key of the serialized ErrorInfo.
inline constexpr char kErrorInfoMetadataKey[] = "ftune-error-bin";
// The ErrorInfo helpers live with the engine (server/engine/error_info.h);
// the front ends keep calling them by their short names.
using engine::AboutResource;
using engine::FailedPreconditionInState;
using engine::GetErrorInfo;
using engine::InvalidField;
using engine::kErrorInfoPayloadUrl;
using engine::NotFoundResource;
using engine::QuotaExceeded;
using engine::WithErrorInfo;

// Longest status message sent (bytes): longer ones are cut (TruncateMessage)
// so a default client, which refuses trailing metadata above 8 KiB, can
// always read the status.
inline constexpr size_t kMaxStatusMessageBytes = 2048;

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
