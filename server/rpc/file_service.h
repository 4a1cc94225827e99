// FileService (proto/ftune/v1/file.proto): tenants upload, list, download and
// delete JSONL datasets.
//
// Storage: an upload is streamed to a temp file "files/<tenant>/.upload-*"
// under the storage root while its sha256 is computed and every line is
// validated (common/dataset.h). Only a fully valid upload is fsynced,
// renamed to "files/<tenant>/<file id>" (DESIGN.md layout), its directory
// fsynced, and then recorded in the Store as READY. Any failure, client
// cancel or disconnect removes the temp file. A crash between the rename and
// the Store commit leaves an unreferenced file that no API can reach; stray
// temp files from a crash are removed when the service is constructed.
//
// Thread-safety: thread-safe; gRPC calls the methods concurrently. Blocking
// file I/O runs on gRPC's callback threads (one chunk at a time).
#ifndef FTUNE_SERVER_RPC_FILE_SERVICE_H_
#define FTUNE_SERVER_RPC_FILE_SERVICE_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "ftune/v1/file.grpc.pb.h"
#include "server/rpc/principal.h"
#include "server/store/store.h"

namespace ftune::server::rpc {

struct FileServiceOptions {
  // Shared storage root (DESIGN.md); files live in <root>/files/<tenant>/.
  std::string storage_root;
  // Largest accepted file (ErrorInfo.quota "max_file_size_bytes").
  int64_t max_file_size_bytes = int64_t{1} << 30;
  // Largest accepted UploadFileRequest.chunk ("max_chunk_size_bytes").
  int64_t max_chunk_size_bytes = int64_t{1} << 20;
  // Chunk size of DownloadFile responses (at most 1 MiB by the contract).
  int64_t download_chunk_bytes = int64_t{1} << 20;
  // Longest accepted dataset line, in bytes.
  int64_t max_line_bytes = int64_t{8} << 20;
};

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

  const FileServiceOptions& options() const { return options_; }
  store::Store* store() const { return store_; }

  // The tenant of a tenant caller: UNAUTHENTICATED from the authenticator,
  // PERMISSION_DENIED for admin/worker credentials.
  absl::StatusOr<std::string> CallerTenant(grpc::CallbackServerContext* ctx);

 private:
  absl::StatusOr<v1::ListFilesResponse> DoListFiles(
      const std::string& tenant, const v1::ListFilesRequest& request);
  absl::Status DoDeleteFile(const std::string& tenant,
                            const std::string& file_id);

  store::Store* store_;
  Authenticator* auth_;
  FileServiceOptions options_;
};

}  // namespace ftune::server::rpc

#endif  // FTUNE_SERVER_RPC_FILE_SERVICE_H_
