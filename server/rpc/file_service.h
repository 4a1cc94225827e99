// FileService (proto/ftune/v1/file.proto): tenants upload, list, download and
// delete JSONL datasets. A thin gRPC front end over FileCatalog
// (server/rpc/file_catalog.h), which holds the storage and validation
// rules and which the HTTP API shares.
//
// Thread-safety: thread-safe; gRPC calls the methods concurrently. Blocking
// file I/O runs on gRPC's callback threads (one chunk at a time).
#ifndef FTUNE_SERVER_RPC_FILE_SERVICE_H_
#define FTUNE_SERVER_RPC_FILE_SERVICE_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "ftune/v1/file.grpc.pb.h"
#include "server/rpc/file_catalog.h"
#include "server/rpc/principal.h"
#include "server/store/store.h"

namespace ftune::server::rpc {

class FileService final : public v1::FileService::CallbackService {
 public:
  // `store` and `auth` must outlive the service.
  FileService(store::Store* store, Authenticator* auth,
              FileServiceOptions options);

  grpc::ServerReadReactor<v1::UploadFileRequest>* UploadFile(
      grpc::CallbackServerContext* ctx, v1::File* response) override;
  grpc::ServerUnaryReactor* GetFile(grpc::CallbackServerContext* ctx,
                                    const v1::GetFileRequest* request,
                                    v1::File* response) override;
  grpc::ServerUnaryReactor* ListFiles(grpc::CallbackServerContext* ctx,
                                      const v1::ListFilesRequest* request,
                                      v1::ListFilesResponse* response) override;
  grpc::ServerUnaryReactor* DeleteFile(
      grpc::CallbackServerContext* ctx, const v1::DeleteFileRequest* request,
      google::protobuf::Empty* response) override;
  grpc::ServerWriteReactor<v1::DownloadFileResponse>* DownloadFile(
      grpc::CallbackServerContext* ctx,
      const v1::DownloadFileRequest* request) override;

  const FileServiceOptions& options() const { return catalog_.options(); }
  // The rules behind the service, for the other front ends.
  FileCatalog* catalog() { return &catalog_; }

  // The tenant of a tenant caller: UNAUTHENTICATED from the authenticator,
  // PERMISSION_DENIED for admin/worker credentials.
  absl::StatusOr<std::string> CallerTenant(grpc::CallbackServerContext* ctx);

 private:
  Authenticator* auth_;
  FileCatalog catalog_;
};

}  // namespace ftune::server::rpc

#endif  // FTUNE_SERVER_RPC_FILE_SERVICE_H_
