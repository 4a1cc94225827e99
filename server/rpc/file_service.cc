#include "server/rpc/file_service.h"

#include <memory>
#include <utility>

#include "common/status.h"
#include "server/rpc/file_range_writer.h"
#include "server/rpc/status_util.h"

namespace ftune::server::rpc {
namespace {

// ------------------------------------------------------------ upload ----

// Reads the client stream into one FileCatalog::Upload: the first message
// carries the metadata, every later one a chunk.
class UploadReactor final
    : public grpc::ServerReadReactor<v1::UploadFileRequest> {
 public:
  UploadReactor(FileService* service, grpc::CallbackServerContext* ctx,
                v1::File* response)
      : service_(service), ctx_(ctx), response_(response) {
    absl::StatusOr<std::string> tenant = service_->CallerTenant(ctx_);
    if (!tenant.ok()) {
      Fail(tenant.status());
      return;
    }
    tenant_ = *std::move(tenant);
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      // Either the client half-closed (the upload is complete) or the call
      // was cancelled / broken.
      if (ctx_->IsCancelled()) {
        Fail(absl::CancelledError("upload cancelled by the client"));
      } else {
        absl::Status s = Complete();
        if (!s.ok()) {
          Fail(s);
        } else {
          Finish(grpc::Status::OK);
        }
      }
      return;
    }
    absl::Status s = Handle();
    if (!s.ok()) {
      Fail(s);
      return;
    }
    StartRead(&request_);
  }

  void OnDone() override { delete this; }  // upload_'s dtor removes its temp.

 private:
  void Fail(const absl::Status& status) {
    upload_.reset();
    Finish(ToGrpcStatus(status, ctx_));
  }

  absl::Status Handle() {
    if (upload_ == nullptr) {
      if (!request_.has_metadata()) {
        return InvalidField("metadata",
                            "the first UploadFileRequest must carry metadata");
      }
      FTUNE_ASSIGN_OR_RETURN(upload_, service_->catalog()->StartUpload(
                                          tenant_, request_.metadata()));
      return absl::OkStatus();
    }
    if (request_.has_metadata()) {
      return InvalidField("metadata",
                          "metadata may only be sent in the first message");
    }
    return upload_->Add(request_.chunk());
  }

  absl::Status Complete() {
    if (upload_ == nullptr) {
      return InvalidField("metadata", "the upload carried no metadata");
    }
    FTUNE_ASSIGN_OR_RETURN(*response_, upload_->Finish());
    return absl::OkStatus();
  }

  FileService* service_;
  grpc::CallbackServerContext* ctx_;
  v1::File* response_;
  std::string tenant_;
  v1::UploadFileRequest request_;
  std::unique_ptr<FileCatalog::Upload> upload_;  // Set by the metadata.
};

// Runs `fn` for the calling tenant and finishes the call with its status.
template <typename Fn>
grpc::ServerUnaryReactor* TenantUnary(FileService& service,
                                      grpc::CallbackServerContext* ctx, Fn fn) {
  absl::StatusOr<std::string> tenant = service.CallerTenant(ctx);
  absl::Status status = tenant.ok() ? fn(*tenant) : tenant.status();
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  reactor->Finish(ToGrpcStatus(status, ctx));
  return reactor;
}

}  // namespace

FileService::FileService(store::Store* store, Authenticator* auth,
                         FileServiceOptions options)
    : auth_(auth), catalog_(store, std::move(options)) {}

absl::StatusOr<std::string> FileService::CallerTenant(
    grpc::CallbackServerContext* ctx) {
  FTUNE_ASSIGN_OR_RETURN(Principal p, auth_->Authenticate(*ctx));
  if (p.kind != Principal::Kind::kTenant || p.tenant_id.empty()) {
    return absl::PermissionDeniedError("FileService needs a tenant API key");
  }
  return p.tenant_id;
}

grpc::ServerReadReactor<v1::UploadFileRequest>* FileService::UploadFile(
    grpc::CallbackServerContext* ctx, v1::File* response) {
  return new UploadReactor(this, ctx, response);
}

grpc::ServerUnaryReactor* FileService::GetFile(
    grpc::CallbackServerContext* ctx, const v1::GetFileRequest* request,
    v1::File* response) {
  return TenantUnary(*this, ctx, [&](const std::string& tenant) {
    FTUNE_ASSIGN_OR_RETURN(*response,
                           catalog_.GetFile(tenant, request->file_id()));
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* FileService::ListFiles(
    grpc::CallbackServerContext* ctx, const v1::ListFilesRequest* request,
    v1::ListFilesResponse* response) {
  return TenantUnary(*this, ctx, [&](const std::string& tenant) {
    FTUNE_ASSIGN_OR_RETURN(*response, catalog_.ListFiles(tenant, *request));
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* FileService::DeleteFile(
    grpc::CallbackServerContext* ctx, const v1::DeleteFileRequest* request,
    google::protobuf::Empty* /*response*/) {
  return TenantUnary(*this, ctx, [&](const std::string& tenant) {
    return catalog_.DeleteFile(tenant, request->file_id());
  });
}

grpc::ServerWriteReactor<v1::DownloadFileResponse>* FileService::DownloadFile(
    grpc::CallbackServerContext* ctx, const v1::DownloadFileRequest* request) {
  absl::StatusOr<std::string> tenant = CallerTenant(ctx);
  absl::StatusOr<FileRange> range =
      tenant.ok()
          ? catalog_.OpenContent(*tenant, request->file_id(), request->offset())
          : absl::StatusOr<FileRange>(tenant.status());
  return new FileRangeWriter<v1::DownloadFileResponse>(ctx, std::move(range));
}

}  // namespace ftune::server::rpc
