#include "server/scheduler_server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"

namespace ftune::server {
namespace {

// Splits "host:port" (host may be "[::1]"); INVALID_ARGUMENT when malformed.
absl::Status SplitHostPort(const std::string& address, std::string* host,
                           int* port) {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("grpc address \"", address, "\": expected host:port"));
  }
  *host = address.substr(0, colon);
  if (!absl::SimpleAtoi(address.substr(colon + 1), port) || *port < 0 ||
      *port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("grpc address \"", address, "\": port must be 0..65535"));
  }
  return absl::OkStatus();
}

}  // namespace

SchedulerServer::SchedulerServer(SchedulerOptions options)
    : options_(std::move(options)) {}

SchedulerServer::~SchedulerServer() { Shutdown(); }

absl::Status SchedulerServer::Start() {
  std::string host;
  int requested_port = 0;
  if (absl::Status st =
          SplitHostPort(options_.grpc_address, &host, &requested_port);
      !st.ok()) {
    return st;
  }
  // Both are process-wide switches that must be set before the builder.
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();

  grpc::ServerBuilder builder;
  builder.AddListeningPort(options_.grpc_address,
                           grpc::InsecureServerCredentials(), &port_);
  // gRPC sets SO_REUSEPORT by default, which would let a second scheduler
  // silently share our port and split the traffic. One port, one server.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.SetMaxReceiveMessageSize(options_.max_message_bytes);
  builder.SetMaxSendMessageSize(options_.max_message_bytes);
  server_ = builder.BuildAndStart();
  if (server_ == nullptr || port_ == 0) {
    server_.reset();
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", options_.grpc_address,
                     " (address in use, or not a local address?)"));
  }
  server_->GetHealthCheckService()->SetServingStatus(true);
  FTUNE_LOG(INFO) << "gRPC serving on " << address();
  return absl::OkStatus();
}

std::string SchedulerServer::address() const {
  std::string host;
  int ignored;
  if (!SplitHostPort(options_.grpc_address, &host, &ignored).ok()) return "";
  return absl::StrCat(host, ":", port_);
}

void SchedulerServer::Shutdown() {
  if (server_ == nullptr || shut_down_) return;
  shut_down_ = true;
  // Health turns NOT_SERVING first so load balancers stop sending.
  server_->GetHealthCheckService()->SetServingStatus(false);
  server_->Shutdown(std::chrono::system_clock::now() +
                    absl::ToChronoMilliseconds(options_.shutdown_grace));
}

void SchedulerServer::Wait() {
  if (server_ != nullptr) server_->Wait();
}

}  // namespace ftune::server
