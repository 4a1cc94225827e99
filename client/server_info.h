// Queries any ftune server for its health and its service list, through the
// standard grpc.health.v1 and grpc.reflection.v1alpha services.
//
// Thread-safe: functions share nothing.
#ifndef FTUNE_CLIENT_SERVER_INFO_H_
#define FTUNE_CLIENT_SERVER_INFO_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace grpc {
class Channel;
}  // namespace grpc

namespace ftune::client {

struct ServerInfo {
  // "SERVING", "NOT_SERVING", ... as the health service reports it.
  std::string health;
  // Full names of every service the server registers, sorted.
  std::vector<std::string> services;
};

// UNAVAILABLE if the server cannot be reached within `timeout`; other codes
// as the server returns them.
absl::StatusOr<ServerInfo> GetServerInfo(
    const std::shared_ptr<grpc::Channel>& channel, absl::Duration timeout);

}  // namespace ftune::client

#endif  // FTUNE_CLIENT_SERVER_INFO_H_
