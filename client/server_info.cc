#include "client/server_info.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpc/reflection/v1alpha/reflection.grpc.pb.h"

namespace ftune::client {
namespace {

absl::Status FromGrpc(const grpc::Status& s, absl::string_view what) {
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                      absl::StrCat(what, ": ", s.error_message()));
}

std::chrono::system_clock::time_point Deadline(absl::Duration timeout) {
  return std::chrono::system_clock::now() + absl::ToChronoMilliseconds(timeout);
}

}  // namespace

absl::StatusOr<ServerInfo> GetServerInfo(
    const std::shared_ptr<grpc::Channel>& channel, absl::Duration timeout) {
  ServerInfo info;
  {
    auto stub = grpc::health::v1::Health::NewStub(channel);
    grpc::ClientContext ctx;
    ctx.set_deadline(Deadline(timeout));
    ctx.set_wait_for_ready(true);  // Ride out the server's start-up.
    grpc::health::v1::HealthCheckRequest req;
    grpc::health::v1::HealthCheckResponse resp;
    grpc::Status s = stub->Check(&ctx, req, &resp);
    if (!s.ok()) return FromGrpc(s, "health check");
    info.health = grpc::health::v1::HealthCheckResponse::ServingStatus_Name(
        resp.status());
  }
  {
    auto stub = grpc::reflection::v1alpha::ServerReflection::NewStub(channel);
    grpc::ClientContext ctx;
    ctx.set_deadline(Deadline(timeout));
    auto stream = stub->ServerReflectionInfo(&ctx);
    grpc::reflection::v1alpha::ServerReflectionRequest req;
    req.set_list_services("*");
    grpc::reflection::v1alpha::ServerReflectionResponse resp;
    if (stream->Write(req) && stream->WritesDone() && stream->Read(&resp)) {
      for (const auto& service : resp.list_services_response().service()) {
        info.services.push_back(service.name());
      }
    }
    grpc::Status s = stream->Finish();
    if (!s.ok()) return FromGrpc(s, "reflection");
    if (resp.has_error_response()) {
      return absl::InternalError(
          absl::StrCat("reflection: ", resp.error_response().error_message()));
    }
  }
  std::sort(info.services.begin(), info.services.end());
  return info;
}

}  // namespace ftune::client
