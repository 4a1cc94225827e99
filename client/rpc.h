// RPC plumbing shared by every ftunectl command: the channel (plain or
// TLS/mTLS), the API key sent as "authorization: Bearer <key>", deadlines,
// and the one place a failed call becomes a message and an exit code.
//
// Thread-safe after Open(): a Connection is only read.
#ifndef FTUNE_CLIENT_RPC_H_
#define FTUNE_CLIENT_RPC_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <optional>
#include <ostream>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "client/flags.h"
#include "ftune/v1/common.pb.h"

namespace ftune::client {

class Connection {
 public:
  // Reads the API key file and the TLS files named in `options` and creates
  // the channel (which connects lazily, on the first call). NOT_FOUND /
  // INVALID_ARGUMENT naming the file when one cannot be read or is empty.
  static absl::StatusOr<Connection> Open(const GlobalOptions& options);

  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }
  const std::string& address() const { return address_; }
  absl::Duration timeout() const { return timeout_; }
  bool timeout_set() const { return timeout_set_; }

  // Adds the authorization metadata (if a key is configured) and, when
  // `deadline` is true, the deadline now + timeout().
  void Prepare(grpc::ClientContext* ctx, bool deadline = true) const;

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::string address_;
  std::string api_key_;
  absl::Duration timeout_;
  bool timeout_set_ = false;
};

// The first non-empty line of `path`, trimmed. NOT_FOUND if the file cannot
// be read, INVALID_ARGUMENT if it holds no such line.
absl::StatusOr<std::string> ReadKeyFile(const std::string& path);

// kExitUnavailable for UNAVAILABLE and DEADLINE_EXCEEDED, else kExitError
// (kExitOk for OK).
int ExitCodeFor(grpc::StatusCode code);

// "NOT_FOUND", "UNAUTHENTICATED", ...
std::string StatusCodeName(grpc::StatusCode code);

// The ErrorInfo a server attached to a finished call's trailing metadata
// ("ftune-error-bin"), if any.
std::optional<v1::ErrorInfo> ErrorInfoOf(const grpc::ClientContext& ctx);

// Prints "ftunectl: CODE: message" and, indented below it, the non-empty
// fields of the call's ErrorInfo ("  field: spec.model"); returns
// ExitCodeFor(status.error_code()).
int ReportRpcError(const grpc::Status& status, const grpc::ClientContext& ctx,
                   std::ostream& err);

}  // namespace ftune::client

#endif  // FTUNE_CLIENT_RPC_H_
