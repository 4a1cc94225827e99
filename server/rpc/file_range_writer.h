// A server-streaming reactor that sends a byte range of an open file as
// chunks: FileService.DownloadFile and JobService.DownloadAdapterFile.
//
// The response type needs `set_offset(int64)` and `mutable_chunk()`
// (DownloadFileResponse, DownloadAdapterFileResponse). Reads happen on the
// gRPC callback thread, one pread per chunk, with one write in flight.
#ifndef FTUNE_SERVER_RPC_FILE_RANGE_WRITER_H_
#define FTUNE_SERVER_RPC_FILE_RANGE_WRITER_H_

#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "common/confined_path.h"
#include "server/rpc/file_catalog.h"
#include "server/rpc/status_util.h"

namespace ftune::server::rpc {

template <typename Response>
class FileRangeWriter final : public grpc::ServerWriteReactor<Response> {
 public:
  // Starts the stream, or finishes the call at once with `range`'s error
  // (mapped with its ErrorInfo by ToGrpcStatus). Deletes itself when done.
  FileRangeWriter(grpc::CallbackServerContext* ctx,
                  absl::StatusOr<FileRange> range)
      : ctx_(ctx) {
    if (!range.ok()) {
      this->Finish(ToGrpcStatus(range.status(), ctx_));
      return;
    }
    range_ = *std::move(range);
    range_.chunk_bytes = std::clamp<int64_t>(range_.chunk_bytes, 1, 1 << 20);
    Next();
  }

  void OnWriteDone(bool ok) override {
    if (!ok) {
      this->Finish(ToGrpcStatus(absl::CancelledError("download cancelled"),
                                /*ctx=*/nullptr));
      return;
    }
    Next();
  }

  void OnDone() override {
    if (range_.fd >= 0) ::close(range_.fd);
    delete this;
  }

 private:
  void Next() {
    if (range_.offset >= range_.end) {
      this->Finish(grpc::Status::OK);
      return;
    }
    const int64_t want =
        std::min(range_.end - range_.offset, range_.chunk_bytes);
    std::string* chunk = response_.mutable_chunk();
    chunk->resize(static_cast<size_t>(want));
    ssize_t n;
    do {
      n = ::pread(range_.fd, chunk->data(), static_cast<size_t>(want),
                  range_.offset);
    } while (n < 0 && errno == EINTR);
    if (n <= 0) {
      absl::Status s =
          n < 0 ? StorageError("cannot read", "the file", errno)
                : absl::DataLossError("file is shorter than its record");
      this->Finish(ToGrpcStatus(s, ctx_));
      return;
    }
    chunk->resize(static_cast<size_t>(n));
    response_.set_offset(range_.offset);
    range_.offset += n;
    this->StartWrite(&response_);
  }

  grpc::CallbackServerContext* ctx_;
  FileRange range_;
  Response response_;
};

}  // namespace ftune::server::rpc

#endif  // FTUNE_SERVER_RPC_FILE_RANGE_WRITER_H_
