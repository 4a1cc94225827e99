// FileCatalog: a tenant's JSONL datasets (upload, get, list, delete, read
// back) without transport: the one place their rules live. The gRPC
// FileService (server/rpc/file_service.h) and the OpenAI-compatible HTTP
// API (server/http/) both translate their requests into these calls.
//
// Storage: an upload is streamed to a temp file "files/<tenant>/.upload-*"
// under the storage root while its sha256 is computed and every line is
// validated (common/dataset.h). Only a fully valid upload is fsynced,
// renamed to "files/<tenant>/<file id>" (DESIGN.md layout), its directory
// fsynced, and then recorded in the Store as READY. Any failure, or an
// Upload destroyed before Finish(), removes the temp file. A crash between
// the rename and the Store commit leaves an unreferenced file that no API
// can reach; stray temp files from a crash are removed when the catalog is
// constructed.
//
// Errors carry ftune.v1.ErrorInfo (server/engine/error_info.h):
// INVALID_ARGUMENT naming the field (or the first bad dataset line),
// RESOURCE_EXHAUSTED with the quota for a file over max_file_size_bytes,
// NOT_FOUND with the id for a missing or another tenant's file (the same
// answer), FAILED_PRECONDITION naming a live job that still uses a file
// being deleted. Storage failures are typed, never INTERNAL: DATA_LOSS
// for a file in the way of the tenant's directory, RESOURCE_EXHAUSTED for a
// full disk, UNAVAILABLE for a failing write or fsync (StorageError).
//
// Thread-safety: FileCatalog is thread-safe; one Upload is used by one
// thread at a time.
#ifndef FTUNE_SERVER_RPC_FILE_CATALOG_H_
#define FTUNE_SERVER_RPC_FILE_CATALOG_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "ftune/v1/file.pb.h"
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
  // Fault injection for tests: called instead of fsync(2) on an upload's
  // temp file and directory; returns 0, or -1 with errno set. Empty (the
  // default): fsync(2).
  std::function<int(int fd)> fsync_for_testing;
};

// What to send: bytes [offset, end) of `fd`, in chunks of `chunk_bytes`.
struct FileRange {
  int fd = -1;  // Owned by whoever sends it: close it when done.
  int64_t offset = 0;
  int64_t end = 0;
  int64_t chunk_bytes = int64_t{1} << 20;
};

class FileCatalog {
 public:
  // One upload in progress. Destroying it before Finish() succeeded
  // removes what was written.
  class Upload {
   public:
    virtual ~Upload() = default;
    // Appends the next bytes (1 byte to max_chunk_size_bytes).
    virtual absl::Status Add(absl::string_view chunk) = 0;
    // Checks the size, sha256 and dataset, publishes the file and records
    // it; returns it as stored.
    virtual absl::StatusOr<v1::File> Finish() = 0;
  };

  // `store` is not owned and must outlive the catalog.
  FileCatalog(store::Store* store, FileServiceOptions options);

  const FileServiceOptions& options() const { return options_; }

  // Validates `metadata` (filename, purpose, expected size and sha256) and
  // opens the temp file.
  absl::StatusOr<std::unique_ptr<Upload>> StartUpload(
      const std::string& tenant, const v1::UploadFileMetadata& metadata);

  absl::StatusOr<v1::File> GetFile(const std::string& tenant,
                                   const std::string& file_id);
  absl::StatusOr<v1::ListFilesResponse> ListFiles(
      const std::string& tenant, const v1::ListFilesRequest& request);
  absl::Status DeleteFile(const std::string& tenant,
                          const std::string& file_id);
  // The file's bytes from `offset` on (OUT_OF_RANGE past the end).
  absl::StatusOr<FileRange> OpenContent(const std::string& tenant,
                                        const std::string& file_id,
                                        int64_t offset);

 private:
  store::Store* const store_;
  const FileServiceOptions options_;
};

}  // namespace ftune::server::rpc

#endif  // FTUNE_SERVER_RPC_FILE_CATALOG_H_
